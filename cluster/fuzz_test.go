package cluster

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A hand-off batch from the network never crashes the decoder, and what
// it accepts survives a round trip unchanged.
func FuzzHandoffRecord(f *testing.F) {
	f.Add(`{"exchange":"clicks","routing_key":"click.eu","message_id":"x","time":5,"headers":[{"k":"a","s":"b"},{"k":"n","i":1},{"k":"b","b":true}],"body":"e30="}`)
	f.Add(`{"exchange":"clicks","message_id":"x","headers":[{"k":"a"}]}`)
	f.Add(`{}`)
	f.Fuzz(func(t *testing.T, s string) {
		var w wireRecord
		if json.Unmarshal([]byte(s), &w) != nil {
			return
		}
		r, err := fromWire(&w)
		if err != nil {
			return
		}
		back := toWire(r)
		r2, err := fromWire(&back)
		if err != nil {
			t.Fatalf("round trip of an accepted record fails: %v", err)
		}
		if r2.MessageID != r.MessageID || !bytes.Equal(r2.Body, r.Body) || len(r2.Headers) != len(r.Headers) {
			t.Fatalf("round trip changed the record: %+v -> %+v", r, r2)
		}
		for i := range r.Headers {
			if r.Headers[i] != r2.Headers[i] {
				t.Fatalf("header %d: %#v -> %#v", i, r.Headers[i], r2.Headers[i])
			}
		}
	})
}

// Keyring files are outside input: no crash, and accepted keys are valid.
func FuzzParseKeyring(f *testing.F) {
	f.Add(`["AAAAAAAAAAAAAAAAAAAAAA=="]`)
	f.Add(`[""]`)
	f.Add(`[1]`)
	f.Fuzz(func(t *testing.T, s string) {
		keys, err := ParseKeyring([]byte(s))
		if err != nil {
			return
		}
		for _, k := range keys {
			if n := len(k); n != 16 && n != 24 && n != 32 {
				t.Fatalf("accepted a %d-byte key", n)
			}
		}
	})
}

// The signature header is outside input: verify never crashes and never
// accepts what was not signed with the keyring.
func FuzzVerify(f *testing.F) {
	f.Add("t=1,n=a,s=00")
	f.Add("t=,n=,s=")
	f.Add(",,,=")
	kr, err := LoadKeyringBytes([]byte(`["AAAAAAAAAAAAAAAAAAAAAA=="]`))
	if err != nil {
		f.Fatal(err)
	}
	c := &Cluster{cfg: Config{MaxSkew: time.Minute, Now: time.Now, Keyring: kr}}
	f.Fuzz(func(t *testing.T, h string) {
		r := httptest.NewRequest("POST", "/cluster/v1/keys", strings.NewReader(""))
		r.Header.Set(authHeader, h)
		if _, err := c.verify(r, nil); err == nil {
			t.Fatalf("accepted header %q", h)
		}
	})
}

func TestLogWriterLevels(t *testing.T) {
	var buf bytes.Buffer
	w := logWriter{slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, line := range []string{
		"[DEBUG] memberlist: Stream connection from=1.2.3.4\n",
		"[WARN] memberlist: Refuting a suspect message\n",
		"[ERR] memberlist: Decrypt packet failed\n",
		"[INFO] memberlist: Marking c as failed\n",
		"no level at all\n",
	} {
		w.Write([]byte(line))
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m struct{ Level, Msg string }
		json.Unmarshal([]byte(l), &m)
		got = append(got, m.Level+" "+m.Msg)
	}
	want := []string{"DEBUG Stream connection from=1.2.3.4", "WARN Refuting a suspect message",
		"ERROR Decrypt packet failed", "INFO Marking c as failed", "INFO no level at all"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("levels:\n got %q\nwant %q", got, want)
	}
}
