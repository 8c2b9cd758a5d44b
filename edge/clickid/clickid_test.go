package clickid

import (
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestFormat(t *testing.T) {
	for range 1000 {
		id := New()
		s := id.String()
		if !hex32.MatchString(s) {
			t.Fatalf("New().String() = %q, want 32 lowercase hex digits", s)
		}
		if got := string(id.AppendHex([]byte("x="))); got != "x="+s {
			t.Fatalf("AppendHex(\"x=\") = %q, want %q", got, "x="+s)
		}
	}
}

func TestVersionVariant(t *testing.T) {
	for range 1000 {
		id := New()
		if v := id[6] >> 4; v != 7 {
			t.Fatalf("version = %d, want 7 (id %s)", v, id)
		}
		if v := id[8] >> 6; v != 2 {
			t.Fatalf("variant bits = %02b, want 10 (id %s)", v, id)
		}
		if !id.Valid() {
			t.Fatalf("%s.Valid() = false", id)
		}
		s := id.String()
		if s[12] != '7' || !strings.ContainsRune("89ab", rune(s[16])) {
			t.Fatalf("%s: want digit 13 = 7 and digit 17 in [89ab]", s)
		}
	}
}

func TestTimeRoundTrip(t *testing.T) {
	tests := []time.Time{
		time.Date(2026, 11, 27, 5, 10, 0, 123_456_789, time.UTC),
		time.Date(2026, 11, 27, 5, 10, 0, 0, time.UTC),
		time.Date(2026, 11, 27, 5, 10, 0, 999_999_999, time.UTC),
		time.Unix(0, 0),
		time.Unix(1<<37, 1), // year 6325, beyond int64 nanoseconds, within 48 bits of ms
		time.Now(),
	}
	const res = time.Millisecond/4096 + 2 // 244.14 ns, rounded down twice
	for _, at := range tests {
		id := NewAt(at)
		got := id.Time()
		if d := at.Sub(got); d < 0 || d > res {
			t.Errorf("NewAt(%v).Time() = %v, want within [-%v, 0] of it (diff %v)", at, got, res, d)
		}
		if got.Location() != time.UTC {
			t.Errorf("Time().Location() = %v, want UTC", got.Location())
		}
		if ms := got.UnixMilli(); ms != at.UnixMilli() {
			t.Errorf("NewAt(%v).Time().UnixMilli() = %d, want %d", at, ms, at.UnixMilli())
		}
	}
}

func TestOrdering(t *testing.T) {
	// Method 3: ids for later times sort later, down to 1/4096 ms.
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	prev := NewAt(base).String()
	for i := 1; i < 5000; i++ {
		cur := NewAt(base.Add(time.Duration(i) * 250 * time.Nanosecond)).String()
		if cur <= prev {
			t.Fatalf("id at +%dx250ns = %s, not after %s", i, cur, prev)
		}
		prev = cur
	}
}

func TestUnique(t *testing.T) {
	const (
		workers = 4
		per     = 250_000
	)
	if testing.Short() {
		t.Skip("1M ids")
	}
	out := make([][]ID, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids := make([]ID, per)
			for i := range ids {
				ids[i] = New()
			}
			out[w] = ids
		}()
	}
	wg.Wait()
	seen := make(map[ID]struct{}, workers*per)
	for _, ids := range out {
		for _, id := range ids {
			if _, dup := seen[id]; dup {
				t.Fatalf("duplicate id %s", id)
			}
			seen[id] = struct{}{}
		}
	}
	if len(seen) != workers*per {
		t.Fatalf("got %d distinct ids, want %d", len(seen), workers*per)
	}
}

func TestParse(t *testing.T) {
	valid := "019a2b3c4d5e7f01" + "8123456789abcdef"
	want := ID{0x01, 0x9a, 0x2b, 0x3c, 0x4d, 0x5e, 0x7f, 0x01, 0x81, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	tests := []struct {
		in    string
		want  ID
		valid bool
	}{
		{valid, want, true},
		{"019a2b3c-4d5e-7f01-8123-456789abcdef", want, true},
		{"019A2B3C-4D5E-7F01-8123-456789ABCDEF", want, true},
		{"019A2B3C4D5E7F018123456789ABCDEF", ID{}, false}, // upper case only in the dashed form
		{"", ID{}, false},
		{valid[:31], ID{}, false},
		{valid + "0", ID{}, false},
		{" " + valid[1:], ID{}, false},
		{valid[:31] + "g", ID{}, false},
		{valid[:31] + "\x00", ID{}, false},
		{"019a2b3c4d5e4f018123456789abcdef", ID{}, false}, // version 4
		{"019a2b3c4d5e7f01c123456789abcdef", ID{}, false}, // variant 110
		{"019a2b3c4d5e7f010123456789abcdef", ID{}, false}, // variant 0
		{"00000000000000000000000000000000", ID{}, false},
		{"019a2b3c_4d5e-7f01-8123-456789abcdef", ID{}, false},
		{"019a2b3c-4d5e-7f01-8123-456789abcdeg", ID{}, false},
		{"019a2b3c-4d5e-7f0-18123-456789abcdef", ID{}, false},
		{"019a2b3c4d5e7f01-8123-456789abcdef", ID{}, false},
		{"{019a2b3c-4d5e-7f01-8123-456789abcde}", ID{}, false},
		{strings.Repeat("a", 1000), ID{}, false},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if tt.valid {
			if err != nil || got != tt.want {
				t.Errorf("Parse(%q) = %x, %v; want %x, nil", tt.in, got, err, tt.want)
			}
			continue
		}
		if !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) = %x, %v; want an error wrapping ErrSyntax", tt.in, got, err)
		}
		if got != (ID{}) {
			t.Errorf("Parse(%q) returned %x with an error, want the zero ID", tt.in, got)
		}
		if err != nil && len(err.Error()) > 200 {
			t.Errorf("Parse(%q) error is %d bytes long; want the input cut short", tt.in[:20], len(err.Error()))
		}
	}
}

func TestParseRoundTrip(t *testing.T) {
	for range 1000 {
		id := New()
		got, err := Parse(id.String())
		if err != nil || got != id {
			t.Fatalf("Parse(%s) = %s, %v; want %s, nil", id, got, err, id)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("019a2b3c4d5e7f018123456789abcdef")
	f.Add("019a2b3c-4d5e-7f01-8123-456789abcdef")
	f.Add("019A2B3C-4D5E-7F01-8123-456789ABCDEF")
	f.Add("")
	f.Add("zz")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrSyntax", s, err)
			}
			return
		}
		if !id.Valid() {
			t.Fatalf("Parse(%q) = %s, which is not a valid UUIDv7", s, id)
		}
		// The canonical form of what was accepted parses to the same id,
		// and the 32-digit form is the input itself, or its dashed form
		// with the dashes removed and lowercased.
		str := id.String()
		again, err := Parse(str)
		if err != nil || again != id {
			t.Fatalf("Parse(%q) = %s, %v; want %s", str, again, err, id)
		}
		if want := strings.ToLower(strings.ReplaceAll(s, "-", "")); str != want {
			t.Fatalf("Parse(%q).String() = %q, want %q", s, str, want)
		}
	})
}

var sink []byte

func BenchmarkNewAppendHex(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, Len)
	for b.Loop() {
		buf = New().AppendHex(buf[:0])
	}
	sink = buf
}

func BenchmarkNewAppendHexParallel(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 0, Len)
		for pb.Next() {
			buf = New().AppendHex(buf[:0])
		}
	})
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	s := New().String()
	for b.Loop() {
		if _, err := Parse(s); err != nil {
			b.Fatal(err)
		}
	}
}
