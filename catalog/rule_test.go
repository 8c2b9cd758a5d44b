package catalog

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

var ruleParams = []string{"subid", "x", "y", "net"}

func compileRule(t testing.TB, when string) *Rule {
	t.Helper()
	r := &Rule{Name: "r"}
	if err := r.compileWhen(when, ruleParams); err != nil {
		t.Fatalf("compileWhen(%q): %v", when, err)
	}
	return r
}

func TestWhen(t *testing.T) {
	de := Facts{Country: "DE", Device: "mobile", City: "Berlin", Lang: "de", Hour: 23, Weekday: 6,
		Subdivision: "DE-BE", OS: "Android", Browser: "Chrome", EdgeRegion: "eu-central",
		IP: netip.MustParseAddr("10.1.2.3"), Params: Params{{"x", "y"}, {"subid", "aff"}, {"net", "192.168.1.7"}}}
	bot := Facts{Device: "bot", Bot: true, IP: netip.MustParseAddr("::ffff:192.168.0.1")}
	v6 := Facts{IP: netip.MustParseAddr("2001:db8::5")}
	tests := []struct {
		when string
		f    Facts
		want bool
		fast bool // the closure compiler handles it
	}{
		{`country == "DE" && device == "mobile"`, de, true, true},
		{`country == "DE" && device == "desktop"`, de, false, true},
		{`"DE" == country`, de, true, true},
		{`country != "DE" || city == "Berlin"`, de, true, true},
		{`country in ["AT", "CH", "DE"]`, de, true, true},
		{`country in ["A","B","C","D","E","F","G","H","I","DE"]`, de, true, true},
		{`country not in ["AT", "CH"]`, de, true, true},
		{`not (country in ["DE"])`, de, false, true},
		{`!bot`, de, true, true},
		{`bot`, bot, true, true},
		{`bot == true and device == "bot"`, bot, true, true},
		{`hour >= 22`, de, true, true},
		{`hour < 6 or hour > 21`, de, true, true},
		{`22 <= hour`, de, true, true},
		{`hour in 22..23`, de, true, true},
		{`hour in 1..5`, de, false, true},
		{`weekday in [0, 6]`, de, true, true},
		{`weekday == 6`, de, true, true},
		{`hour == weekday`, de, false, true},
		{`hour > -1`, de, true, true},
		{`1 < hour < 24`, de, true, true},
		{`params["x"] == "y"`, de, true, true},
		{`params.x == "y"`, de, true, true},
		{`params["y"] == ""`, de, true, true},
		{`"x" in params`, de, true, true},
		{`"y" in params`, de, false, true},
		{`params[params.x] == ""`, de, true, true},
		{`$env.country == "DE"`, de, true, true},
		{`lang startsWith "d"`, de, true, true},
		{`city contains "erl"`, de, true, true},
		{`os endsWith "oid"`, de, true, true},
		{`city matches "^B.*n$"`, de, true, true},
		{`subdivision == "DE-BE" && edge_region == "eu-central" && browser == "Chrome"`, de, true, true},
		{`country < "FR"`, de, true, true},
		{`cidr("10.0.0.0/8")`, de, true, true},
		{`cidr("192.168.0.0/16")`, de, false, true},
		{`cidr("192.168.0.0/16")`, bot, true, true}, // IPv4-mapped counts as IPv4
		{`cidr(ip, "10.0.0.0/8")`, de, true, true},
		{`cidr(params.net, "192.168.0.0/16")`, de, true, true},
		{`cidr(params.x, "192.168.0.0/16")`, de, false, true},
		{`cidr("2001:db8::/32")`, v6, true, true},
		{`cidr("10.0.0.0/8")`, Facts{}, false, true},
		{`ip == "10.1.2.3"`, de, true, true},
		{`ip == "192.168.0.1"`, bot, true, true},
		{`ip == ""`, Facts{}, true, true},
		{`country == "DE" ? hour > 20 : false`, de, true, true},
		{`true`, de, true, true},
		{`false || bot`, de, false, true},

		// On the VM.
		{`lower(city) == "berlin"`, de, true, false},
		{`hour % 2 == 1`, de, true, false},
		{`hour > 21.5`, de, true, false},
		{`len(params) == 3`, de, true, false},
		{`(params.x ?? "") == "y"`, de, true, false},
		{`any(["AT", "DE"], # == country)`, de, true, false},
		{`let c = country; c == "DE" && cidr("10.0.0.0/8")`, de, true, false},
		{`hour % (weekday - 6) == 0`, de, false, false}, // run-time error: no match
		{`cidr("10.0.0.0/8") && upper(lang) == "DE"`, de, true, false},
		{`params["x"] == nil`, de, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.when, func(t *testing.T) {
			r := compileRule(t, tt.when)
			if got := r.fast != nil; got != tt.fast {
				t.Errorf("closure compiled = %v, want %v", got, tt.fast)
			}
			if got := r.matches(&tt.f); got != tt.want {
				t.Errorf("matches = %v, want %v", got, tt.want)
			}
			if got := r.runVM(&tt.f); got != tt.want {
				t.Errorf("VM = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWhenRefuses(t *testing.T) {
	tests := []struct{ when, want string }{
		{`cuntry == "DE"`, "unknown name cuntry (1:1)"},
		{`country == "DE" &&`, "unexpected token EOF"},
		{`country`, "expected bool, but got string"},
		{`hour + 1`, "expected bool, but got int"},
		{`params["nope"] == "x"`, `params["nope"]: the link does not record parameter "nope" (1:7)`},
		{`params.nope == "x"`, `the link does not record parameter "nope"`},
		{`"nope" in params`, `the link does not record parameter "nope"`},
		{`cidr("10.0.0.0/33")`, `cidr: bad prefix "10.0.0.0/33" (1:6)`},
		{`cidr("10.0.0.1")`, `cidr: bad prefix`},
		{`cidr(city)`, "cidr: the prefix must be a string literal"},
		{`cidr(ip, city)`, "cidr: the prefix must be a string literal"},
		{`cidr()`, "not enough arguments"},
		{`cidr(1)`, "cidr"},
		{"country == \"DE\" &&\n  cuntry == \"x\"", "unknown name cuntry (2:3)"},
	}
	for _, tt := range tests {
		r := &Rule{}
		err := r.compileWhen(tt.when, ruleParams)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("compileWhen(%q) error = %v, want it to contain %q", tt.when, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("compileWhen(%q) error %q spans lines, want one", tt.when, err)
		}
	}
}

// TestMatcherDifferential generates expressions from the shapes the closure
// compiler knows (and a few it does not) and checks the closures against the
// expr VM on random facts.
func TestMatcherDifferential(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	g := exprGen{rng: rng}
	compiled, fast := 0, 0
	for range 3000 {
		src := g.boolExpr(3)
		r := &Rule{}
		if err := r.compileWhen(src, ruleParams); err != nil {
			if testing.Verbose() && rng.IntN(20) == 0 {
				t.Logf("%s: %v", src, err)
			}
			continue
		}
		compiled++
		if r.fast == nil {
			continue
		}
		fast++
		for range 20 {
			f := randomFacts(rng)
			if got, want := r.fast(&f), r.runVM(&f); got != want {
				t.Fatalf("%s: closures = %v, VM = %v for %+v", src, got, want, f)
			}
		}
	}
	t.Logf("compiled %d of 3000, %d on closures", compiled, fast)
	if compiled < 2900 || fast < compiled*7/10 {
		t.Fatalf("compiled %d of 3000 expressions, %d on closures: the generator has drifted", compiled, fast)
	}
}

type exprGen struct{ rng *rand.Rand }

func (g exprGen) pick(s ...string) string { return s[g.rng.IntN(len(s))] }

func (g exprGen) str() string {
	return g.pick(`country`, `device`, `city`, `lang`, `os`, `browser`, `subdivision`, `edge_region`, `ip`,
		`params["x"]`, `params.y`, `params.subid`, `$env.country`, `"DE"`, `"mobile"`, `""`, `"10.0.0.1"`, `"x1"`, `"x"`)
}

func (g exprGen) int() string {
	return g.pick(`hour`, `weekday`, `0`, `6`, `12`, `22`, `-1`, `$env.hour`)
}

// key is a params key: recorded constants or a variable.
func (g exprGen) key() string {
	return g.pick(`"x"`, `"y"`, `"subid"`, `"net"`, `country`, `params.x`)
}

func (g exprGen) boolExpr(depth int) string {
	if depth == 0 || g.rng.IntN(3) == 0 {
		return "(" + g.leaf() + ")"
	}
	switch g.rng.IntN(5) {
	case 0:
		return "(" + g.boolExpr(depth-1) + g.pick(" && ", " and ") + g.boolExpr(depth-1) + ")"
	case 1:
		return "(" + g.boolExpr(depth-1) + g.pick(" || ", " or ") + g.boolExpr(depth-1) + ")"
	case 2:
		return g.pick("!", "not ") + g.boolExpr(depth-1)
	case 3:
		return "(" + g.boolExpr(depth-1) + " ? " + g.boolExpr(depth-1) + " : " + g.boolExpr(depth-1) + ")"
	default:
		return "(" + g.boolExpr(depth-1) + g.pick(" == ", " != ") + g.boolExpr(depth-1) + ")"
	}
}

func (g exprGen) leaf() string {
	switch g.rng.IntN(13) {
	case 0:
		return g.str() + g.pick(" == ", " != ", " < ", " >= ") + g.str()
	case 1:
		return g.int() + g.pick(" == ", " != ", " < ", " <= ", " > ", " >= ") + g.int()
	case 2:
		return g.str() + g.pick(" in ", " not in ") + `["DE", "AT", "mobile", "", "x1"]`
	case 3:
		return g.int() + g.pick(" in ", " not in ") + g.pick(`[0, 6]`, `[22, 23, 1]`, `0..6`, `9..17`, `5..1`)
	case 4:
		return g.key() + g.pick(" in ", " not in ") + `params`
	case 5:
		return g.str() + g.pick(" contains ", " startsWith ", " endsWith ") + g.str()
	case 6:
		return g.str() + ` matches "^(DE|m)"`
	case 7:
		return g.pick(`cidr("10.0.0.0/8")`, `cidr("2001:db8::/32")`, `cidr(ip, "192.168.0.0/16")`, `cidr(params.x, "10.0.0.0/8")`)
	case 8:
		return g.pick(`bot`, `true`, `false`, `!bot`, `$env.bot`)
	case 9:
		return g.pick(`lower(city) == "berlin"`, `hour % 7 == 1`, `len(country) == 2`) // VM only
	case 10:
		return g.pick(`bot == `, `bot != `) + g.pick(`true`, `false`, `bot`)
	case 11:
		return `params[` + g.key() + `] == ` + g.str()
	default:
		return g.int() + ` < ` + g.int() + ` < ` + g.int()
	}
}

func randomFacts(rng *rand.Rand) Facts {
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	addrs := []netip.Addr{{}, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("192.168.3.4"),
		netip.MustParseAddr("::ffff:10.9.9.9"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("fe80::1%eth0")}
	f := Facts{
		Country:     pick("", "DE", "AT", "x1"),
		Subdivision: pick("", "DE-BE"),
		City:        pick("", "Berlin", "berlin"),
		Device:      pick("mobile", "desktop", "bot", ""),
		OS:          pick("", "Android"),
		Browser:     pick("", "Chrome"),
		Lang:        pick("", "de", "DE"),
		Bot:         rng.IntN(2) == 0,
		Hour:        rng.IntN(24),
		Weekday:     rng.IntN(7),
		IP:          addrs[rng.IntN(len(addrs))],
		EdgeRegion:  pick("", "eu-central"),
	}
	for _, name := range []string{"x", "y", "subid", "x", "net"} {
		if rng.IntN(2) == 0 {
			f.Params = append(f.Params, Param{name, pick("", "DE", "mobile", "x1", "10.0.0.1", fmt.Sprint(rng.IntN(3)))})
		}
	}
	return f
}

func TestRouteAllocs(t *testing.T) {
	whens := []string{
		`country == "DE" && device == "mobile"`,
		`country in ["AT", "CH", "DE"] && !bot`,
		`hour >= 22 || weekday in [0, 6]`,
		`params["x"] == "y" || "subid" in params`,
		`cidr("10.0.0.0/8") || cidr(params.net, "192.168.0.0/16")`,
		`city matches "^Ber" && lang startsWith "de"`,
	}
	f := &Facts{Country: "AT", Device: "mobile", City: "Berlin", Lang: "de", IP: netip.MustParseAddr("10.1.2.3"),
		Params: Params{{"x", "z"}, {"net", "192.168.0.9"}}}
	for _, when := range whens {
		r := compileRule(t, when)
		r.URL = mustTemplate(t, "https://s.example/")
		l := &Link{Rules: []*Rule{r}}
		if allocs := testing.AllocsPerRun(100, func() { l.Route(f, 1) }); allocs != 0 {
			t.Errorf("Route with %q: %v allocs, want 0", when, allocs)
		}
	}
}
