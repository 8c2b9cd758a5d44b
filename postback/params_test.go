package postback

import (
	"strings"
	"testing"
)

// The worked example of DESIGN.md ("Postbacks"): advertisers and other
// implementations check their signer against these three values.
func TestWorkedExample(t *testing.T) {
	ps := Params{
		{"adv", "acme"},
		{"click_id", "0192f4a1b2c37d8e9f0a1b2c3d4e5f60"},
		{"order_id", "A 1/2"},
		{"action", "sale"},
		{"status", "approved"},
		{"amount", "12.50"},
		{"currency", "EUR"},
		{"ts", "1764547200"},
	}
	const (
		wantCanonical = "action=sale&adv=acme&amount=12.50&click_id=0192f4a1b2c37d8e9f0a1b2c3d4e5f60&currency=EUR&order_id=A%201%2F2&status=approved&ts=1764547200"
		wantSig       = "317040b6a348adeb6d9c4c00c0f888a597015d570ba36ac2f746f8b82fe2889a"
		wantActionID  = "ca94b29afba0c8e1cc8fc4f9b60a0b12"
	)
	if got := Canonical(ps); got != wantCanonical {
		t.Fatalf("Canonical = %q, want %q", got, wantCanonical)
	}
	if got := Sign([]byte("s3cret"), wantCanonical); got != wantSig {
		t.Fatalf("Sign = %s, want %s", got, wantSig)
	}
	if got := ActionID("acme", "A 1/2", "sale", Approved); got != wantActionID {
		t.Fatalf("ActionID = %s, want %s", got, wantActionID)
	}
	// The sig parameter is not signed, and the order parameters arrive in
	// does not matter; a query with '+' for the space signs the same.
	parsed, err := ParseQuery(nil, "sig=x&ts=1764547200&currency=EUR&amount=12.50&status=approved&action=sale&order_id=A+1%2f2&click_id=0192f4a1b2c37d8e9f0a1b2c3d4e5f60&adv=acme")
	if err != nil {
		t.Fatal(err)
	}
	if got := Canonical(parsed); got != wantCanonical {
		t.Fatalf("Canonical(parsed) = %q, want %q", got, wantCanonical)
	}
	if !checkSig([]byte("s3cret"), wantCanonical, strings.ToUpper(wantSig)) {
		t.Fatal("checkSig refused the upper-case form of a good signature")
	}
	if checkSig([]byte("s3cret"), wantCanonical, wantSig[:63]+"0") {
		t.Fatal("checkSig accepted a wrong signature")
	}
}

func TestCanonicalOrderAndEscaping(t *testing.T) {
	tests := []struct {
		name string
		ps   Params
		want string
	}{
		{"empty", nil, ""},
		{"sig left out", Params{{"sig", "abc"}, {"a", "1"}}, "a=1"},
		{"byte order, upper before lower", Params{{"b", "1"}, {"B", "2"}, {"a", "3"}}, "B=2&a=3&b=1"},
		{"same key sorted by value", Params{{"k", "b"}, {"k", "a"}}, "k=a&k=b"},
		{"unreserved kept", Params{{"k", "AZaz09-._~"}}, "k=AZaz09-._~"},
		{"reserved escaped upper-case", Params{{"k", "a b+c/d?e&f=g%h"}}, "k=a%20b%2Bc%2Fd%3Fe%26f%3Dg%25h"},
		{"utf-8 bytes", Params{{"k", "é"}}, "k=%C3%A9"},
		{"key escaped", Params{{"a b", ""}}, "a%20b="},
	}
	for _, tt := range tests {
		if got := Canonical(tt.ps); got != tt.want {
			t.Errorf("%s: Canonical(%v) = %q, want %q", tt.name, tt.ps, got, tt.want)
		}
	}
}

func TestParseQuery(t *testing.T) {
	tests := []struct {
		raw       string
		want      string // Canonical of the result
		wantField string // "" and no error wanted when want is set
		bad       bool
	}{
		{raw: "", want: ""},
		{raw: "a=1&&b=2&", want: "a=1&b=2"},
		{raw: "flag", want: "flag="},
		{raw: "a=x%2fy%2Fz+w", want: "a=x%2Fy%2Fz%20w"},
		{raw: "a==b", want: "a=%3Db"},
		{raw: "a=1&a=2", bad: true, wantField: "a"},
		{raw: "a=%zz", bad: true, wantField: "a"},
		{raw: "a=%4", bad: true, wantField: "a"},
		{raw: "%zz=1", bad: true, wantField: "%zz"},
		{raw: "=1", bad: true, wantField: ""},
		{raw: strings.Repeat("k", MaxKeyBytes+1) + "=1", bad: true, wantField: strings.Repeat("k", MaxKeyBytes)},
		{raw: "k=" + strings.Repeat("v", MaxValueBytes+1), bad: true, wantField: "k"},
	}
	for _, tt := range tests {
		ps, err := ParseQuery(nil, tt.raw)
		if tt.bad {
			fe, ok := err.(*FieldError)
			if !ok || fe.Field != tt.wantField {
				t.Errorf("ParseQuery(%.40q) = %v, want a FieldError on %q", tt.raw, err, tt.wantField)
			}
			continue
		}
		if err != nil || Canonical(ps) != tt.want {
			t.Errorf("ParseQuery(%q) = %v (canonical %q), %v; want canonical %q", tt.raw, ps, Canonical(ps), err, tt.want)
		}
	}
	var many strings.Builder
	for i := range MaxParams + 1 {
		many.WriteString("&p" + strings.Repeat("x", i%3) + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "=1")
	}
	if _, err := ParseQuery(nil, many.String()); err == nil {
		t.Errorf("ParseQuery with %d parameters = nil error, want a refusal", MaxParams+1)
	}
}
