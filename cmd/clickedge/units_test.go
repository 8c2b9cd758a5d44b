package main

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in      string
		want    ByteSize
		wantErr string
	}{
		{in: "0", want: 0},
		{in: "1024", want: 1024},
		{in: " 1024 ", want: 1024},
		{in: "1B", want: 1},
		{in: "1KB", want: 1000},
		{in: "500MB", want: 500_000_000},
		{in: "500 MB", want: 500_000_000},
		{in: "2GB", want: 2_000_000_000},
		{in: "3TB", want: 3_000_000_000_000},
		{in: "16KiB", want: 16 << 10},
		{in: "32MiB", want: 32 << 20},
		{in: "8GiB", want: 8 << 30},
		{in: "8gib", want: 8 << 30},
		{in: "1TiB", want: 1 << 40},
		{in: "1.5GiB", want: 3 << 29},
		{in: "0.5KB", want: 500},
		{in: "8388607TiB", want: 8388607 << 40},
		{in: "", wantErr: "invalid size"},
		{in: "MB", wantErr: "invalid size"},
		{in: "-1", wantErr: "invalid size"},
		{in: "1.", wantErr: "invalid size"},
		{in: ".5KB", wantErr: "invalid size"},
		{in: "1.2.3KB", wantErr: "invalid size"},
		{in: "1e3", wantErr: `unknown unit "e3"`},
		{in: "8G", wantErr: `unknown unit "G"`},
		{in: "8 gigs", wantErr: `unknown unit "gigs"`},
		{in: "1.5B", wantErr: "not a whole number of bytes"},
		{in: "8388608TiB", wantErr: "too large"},
		{in: "99999999999999999999", wantErr: "too large"},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseByteSize(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestByteSizeString(t *testing.T) {
	tests := []struct {
		in   ByteSize
		want string
	}{
		{0, "0"},
		{1, "1B"},
		{1000, "1KB"},
		{1024, "1KiB"},
		{1536, "1536B"}, // not a whole number of any unit
		{16 << 10, "16KiB"},
		{32 << 20, "32MiB"},
		{500_000_000, "500MB"},
		{8 << 30, "8GiB"},
		{1023, "1023B"},
		{math.MaxInt64, "9223372036854775807B"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
		back, err := ParseByteSize(tt.in.String())
		if err != nil || back != tt.in {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in.String(), back, err, int64(tt.in))
		}
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    Duration
		str     string
		wantErr string
	}{
		{in: "0", want: 0, str: "0s"},
		{in: "5s", want: Duration(5 * time.Second), str: "5s"},
		{in: "100ms", want: Duration(100 * time.Millisecond), str: "100ms"},
		{in: "120s", want: Duration(2 * time.Minute), str: "2m"},
		{in: "24h", want: Duration(24 * time.Hour), str: "24h"},
		{in: "1h30m", want: Duration(90 * time.Minute), str: "1h30m"},
		{in: "1h0m5s", want: Duration(time.Hour + 5*time.Second), str: "1h0m5s"},
		{in: "90s", want: Duration(90 * time.Second), str: "1m30s"},
		{in: "-5s", want: Duration(-5 * time.Second), str: "-5s"},
		{in: "5", wantErr: "want a number with a unit"},
		{in: "five seconds", wantErr: "invalid duration"},
		{in: "", wantErr: "invalid duration"},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseDuration(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if s := got.String(); s != tt.str {
			t.Errorf("Duration(%q).String() = %q, want %q", tt.in, s, tt.str)
		}
		if back, err := ParseDuration(got.String()); err != nil || back != got {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", got.String(), back, err, got)
		}
	}
}

// The types also decode on their own, outside Config (other tools' YAML).
func TestUnitsUnmarshalYAML(t *testing.T) {
	type doc struct {
		D Duration `yaml:"d"`
		B ByteSize `yaml:"b"`
	}
	tests := []struct {
		src     string
		want    doc
		wantErr string
	}{
		{src: "d: 5s\nb: 8GiB\n", want: doc{Duration(5 * time.Second), 8 << 30}},
		{src: "d: 0\nb: 1024\n", want: doc{0, 1024}},
		{src: "d: '0'\nb: '1024'\n", want: doc{0, 1024}},
		{src: "d: 5\n", wantErr: "missing unit"},
		{src: "d: 1.5\n", wantErr: "missing unit"},
		{src: "d: [1]\n", wantErr: "expected a string"},
		{src: "b: -1\n", wantErr: "must not be negative"},
		{src: "b: 1.5\n", wantErr: "expected an integer or a string"},
		{src: "b: 8 gigs\n", wantErr: "unknown unit"},
	}
	for _, tt := range tests {
		var got doc
		err := yaml.Unmarshal([]byte(tt.src), &got)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Unmarshal(%q) = %+v, %v; want error containing %q", tt.src, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Unmarshal(%q) = %+v, %v; want %+v", tt.src, got, err, tt.want)
		}
	}
}
