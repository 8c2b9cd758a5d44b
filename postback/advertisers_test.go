package postback

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseAdvertisers(t *testing.T) {
	a, err := ParseAdvertisers("a.yaml", []byte(testAdvertisers))
	if err != nil {
		t.Fatal(err)
	}
	if a.Len() != 4 || a.Lookup("signed") == nil || a.Lookup("nobody") != nil {
		t.Fatalf("Len %d, Lookup(signed) %v", a.Len(), a.Lookup("signed"))
	}
	if w := a.Lookup("brief").Window; w != time.Hour {
		t.Fatalf("brief's window = %s, want 1h", w)
	}
	if w := a.Lookup("tok").Window; w != DefaultWindow {
		t.Fatalf("default window = %s, want %s", w, DefaultWindow)
	}
	if a.MaxWindow() != DefaultWindow {
		t.Fatalf("MaxWindow = %s", a.MaxWindow())
	}
	if b, _ := ParseAdvertisers("b", []byte("- {id: x, token: 0123456789abcdefXX, window: 45d}")); b.MaxWindow() != 45*24*time.Hour {
		t.Fatalf("MaxWindow with a 45d window = %s", b.MaxWindow())
	}
	if e, err := ParseAdvertisers("e", []byte("[]")); err != nil || e.Len() != 0 {
		t.Fatalf("an empty list: %v, %v", e, err)
	}
}

// A bad file is refused whole, each problem with the file, the entry and
// the key.
func TestParseAdvertisersRefuses(t *testing.T) {
	const s16 = "0123456789abcdef"
	tests := []struct{ yaml, want string }{
		{"- {secret: " + s16 + "}", "f.yaml: entry 1: id: missing"},
		{"- {id: 'a b', secret: " + s16 + "}", `entry 1 (id "a b"): id: must match`},
		{"- {id: a, secret: " + s16 + "}\n- {id: a, token: " + s16 + "}", `entry 2 (id "a"): id: given twice`},
		{"- {id: a}", `entry 1 (id "a"): secret: an advertiser needs a secret`},
		{"- {id: a, secret: " + s16 + ", token: " + s16 + "}", "token: give a secret or a token, not both"},
		{"- {id: a, token: '" + s16 + " x'}", "token: must not contain whitespace"},
		{"- {id: a, token: " + s16 + ", allow: [10.0.0.0/33]}", "allow[0]: invalid CIDR"},
		{"- {id: a, token: " + s16 + ", window: forever}", "window: want a duration"},
		{"- {id: a, token: " + s16 + ", window: 0s}", "window: must be between"},
		{"- {id: a, token: " + s16 + ", colour: red}", "f.yaml:"},
		{"links: []", "f.yaml:"},
		{"- {id: ok, token: " + s16 + "}\n- {id: b, secret: x, allow: [bogus]}", `entry 2 (id "b"): allow[0]`},
	}
	for _, tt := range tests {
		_, err := ParseAdvertisers("f.yaml", []byte(tt.yaml))
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseAdvertisers(%q) = %v, want an ErrInvalid containing %q", tt.yaml, err, tt.want)
		}
	}
}

func TestLoadAdvertisers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "advertisers.yaml")
	if _, err := LoadAdvertisers(path); err == nil || errors.Is(err, ErrInvalid) {
		t.Fatalf("LoadAdvertisers(missing) = %v, want a read error", err)
	}
	os.WriteFile(path, []byte(testAdvertisers), 0o600)
	a, err := LoadAdvertisers(path)
	if err != nil || a.Name() != path || a.Len() != 4 {
		t.Fatalf("LoadAdvertisers = %v, %v", a, err)
	}
}

// A short secret or token is accepted (a file that worked keeps working)
// but reported as weak, so that serve warns about it.
func TestAdvertisersWeakSecrets(t *testing.T) {
	set, err := ParseAdvertisers("f.yaml", []byte("- {id: acme, secret: s3cret}\n- {id: ok, secret: 0123456789abcdef}\n- {id: tok, token: short}\n"))
	if err != nil {
		t.Fatalf("ParseAdvertisers: %v", err)
	}
	if got := set.Weak(); len(got) != 2 || got[0] != "acme" || got[1] != "tok" {
		t.Fatalf("Weak() = %v, want [acme tok]", got)
	}
	if set.Lookup("acme") == nil || string(set.Lookup("acme").Secret) != "s3cret" {
		t.Fatalf("acme not loaded with its secret")
	}
}
