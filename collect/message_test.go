package collect

import (
	"encoding/hex"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/clickedge/clickedge/edge"
	"github.com/clickedge/clickedge/edge/clickid"
	"github.com/clickedge/clickedge/edge/edgetest"
)

// clickFixture is a click body as the edge writes it (TestClickJSON in
// edge pins the same bytes).
const clickFixture = `{"v":1,"click_id":"019a2b3c4d5e7f018123456789abcdef","ts":"2026-11-27T05:10:00.123Z","link":"tv-sale",` +
	`"url":"https://shop.example/tv?cid=019a2b3c4d5e7f018123456789abcdef&sub=a","rule":"de-mobile","region":"eu","node":"eu-1",` +
	`"country":"DE","subdivision":"DE-BE","city":"Berlin","device":"mobile","os":"iOS","browser":"Safari","lang":"de",` +
	`"bot":false,"preview":false,"params":{"subid":"a"},"catalog":"0123456789ab","truncated":["subid1"],"paused":true}`

func TestParseClickFixture(t *testing.T) {
	c, p := ParseClick([]byte(clickFixture))
	if p != nil {
		t.Fatalf("ParseClick = poison %v, want a row", p)
	}
	wantID, _ := hex.DecodeString("019a2b3c4d5e7f018123456789abcdef")
	if string(c.ID[:]) != string(wantID) {
		t.Errorf("ID = %x, want %x", c.ID, wantID)
	}
	// 0x019a2b3c4d5e ms since the epoch.
	if want := time.UnixMilli(0x019a2b3c4d5e).UTC(); !c.ClickTS.Equal(want) {
		t.Errorf("ClickTS = %v, want %v (the id's millisecond)", c.ClickTS, want)
	}
	if want := time.Date(2026, 11, 27, 5, 10, 0, 123e6, time.UTC); !c.TS.Equal(want) {
		t.Errorf("TS = %v, want %v", c.TS, want)
	}
	got := []string{c.Link, c.Rule, c.Region, c.Node, c.Country, c.Subdivision, c.City, c.Device, c.OS, c.Browser, c.Lang, c.Catalog}
	want := []string{"tv-sale", "de-mobile", "eu", "eu-1", "DE", "DE-BE", "Berlin", "mobile", "iOS", "Safari", "de", "0123456789ab"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("fields = %v, want %v", got, want)
	}
	if string(c.Params) != `{"subid":"a"}` || !c.Paused || c.Bot || len(c.Truncated) != 1 || c.Truncated[0] != "subid1" {
		t.Errorf("params %s paused %v bot %v truncated %v", c.Params, c.Paused, c.Bot, c.Truncated)
	}
}

// The body the real edge records for a request parses into the row that
// request should make: the collector and the edge agree on schema 1.
func TestParseClickFromEdge(t *testing.T) {
	ec := edge.DefaultConfig()
	ec.Region, ec.Node = "eu-central", "eu-1"
	rec := new(edgetest.Recorder)
	ec.Recorder = rec
	srv, err := edge.New(ec)
	if err != nil {
		t.Fatalf("edge.New: %v", err)
	}
	srv.SetCatalog(edgetest.Catalog(t, "links:\n  - code: tv\n    url: \"https://shop.example/?cid={click_id}\"\n"))
	r := httptest.NewRequest("GET", "/r/tv?subid=a%00b&subid1=%FF", nil)
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, r)
	if w.Code != 302 || len(rec.Appended()) != 1 {
		t.Fatalf("edge answered %d with %d records, want 302 and 1", w.Code, len(rec.Appended()))
	}
	body := rec.Appended()[0].Body
	c, p := ParseClick(body)
	if p != nil {
		t.Fatalf("ParseClick(%s) = poison %v", body, p)
	}
	id, err := clickid.Parse(rec.Appended()[0].MessageID)
	if err != nil || id != c.ID {
		t.Fatalf("ID = %x, want the message id %s (%v)", c.ID, rec.Appended()[0].MessageID, err)
	}
	if c.Link != "tv" || c.Region != "eu-central" || c.Node != "eu-1" || !strings.Contains(c.URL, rec.Appended()[0].MessageID) {
		t.Errorf("row link %q region %q node %q url %q", c.Link, c.Region, c.Node, c.URL)
	}
	var params map[string]string
	if err := json.Unmarshal(c.Params, &params); err != nil {
		t.Fatalf("params %s: %v", c.Params, err)
	}
	// NUL cannot be stored in PostgreSQL text or jsonb: it becomes U+FFFD.
	if params["subid"] != "a\uFFFDb" || strings.Contains(string(c.Params), `\u0000`) {
		t.Errorf("params = %s, want subid a\uFFFDb and no NUL", c.Params)
	}
	if d := c.TS.Sub(c.ClickTS); d < 0 || d > time.Millisecond {
		t.Errorf("ts %v is %v from the id's time %v", c.TS, d, c.ClickTS)
	}
}

func TestParseClickPoison(t *testing.T) {
	valid := func(edit func(m map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal([]byte(clickFixture), &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	tests := []struct {
		name, body string
		want       Reason
	}{
		{"empty", ``, ReasonNotJSON},
		{"text", `hello`, ReasonNotJSON},
		{"array", `[1,2]`, ReasonNotJSON},
		{"truncated", clickFixture[:40], ReasonNotJSON},
		{"trailing garbage", clickFixture + "x", ReasonNotJSON},
		{"no v", valid(func(m map[string]any) { delete(m, "v") }), ReasonUnknownVersion},
		{"v 2", valid(func(m map[string]any) { m["v"] = 2 }), ReasonUnknownVersion},
		{"v string", valid(func(m map[string]any) { m["v"] = "1" }), ReasonUnknownVersion},
		{"v null", valid(func(m map[string]any) { m["v"] = nil }), ReasonUnknownVersion},
		{"no id", valid(func(m map[string]any) { delete(m, "click_id") }), ReasonMissingID},
		{"empty id", valid(func(m map[string]any) { m["click_id"] = "" }), ReasonMissingID},
		{"id upper", valid(func(m map[string]any) { m["click_id"] = "019A2B3C4D5E7F018123456789ABCDEF" }), ReasonMalformedID},
		{"id dashed", valid(func(m map[string]any) { m["click_id"] = "019a2b3c-4d5e-7f01-8123-456789abcdef" }), ReasonMalformedID},
		{"id v4", valid(func(m map[string]any) { m["click_id"] = "019a2b3c4d5e4f018123456789abcdef" }), ReasonMalformedID},
		{"id short", valid(func(m map[string]any) { m["click_id"] = "019a2b" }), ReasonMalformedID},
		{"id number", valid(func(m map[string]any) { m["click_id"] = 12 }), ReasonBadField},
		{"no ts", valid(func(m map[string]any) { delete(m, "ts") }), ReasonBadField},
		{"bad ts", valid(func(m map[string]any) { m["ts"] = "yesterday" }), ReasonBadField},
		{"params not strings", valid(func(m map[string]any) { m["params"] = map[string]any{"a": 1} }), ReasonBadField},
		{"link number", valid(func(m map[string]any) { m["link"] = 5 }), ReasonBadField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, p := ParseClick([]byte(tt.body))
			if p == nil {
				t.Fatalf("ParseClick(%.80s) = row %+v, want poison %s", tt.body, c, tt.want)
			}
			if p.Reason != tt.want || p.Detail == "" {
				t.Fatalf("ParseClick(%.80s) = %s (%s), want %s with a detail", tt.body, p.Reason, p.Detail, tt.want)
			}
		})
	}
}

// The worked example of DESIGN "Postbacks".
const designActionID = "ca94b29afba0c8e1cc8fc4f9b60a0b12"

func TestActionIDWorkedExample(t *testing.T) {
	id := ActionID("acme", "A 1/2", "sale", "approved")
	if got := hex.EncodeToString(id[:]); got != designActionID {
		t.Fatalf("ActionID = %s, want %s (DESIGN's worked example)", got, designActionID)
	}
}

func actionBodyFor(status string) map[string]any {
	id := ActionID("acme", "A 1/2", "sale", status)
	return map[string]any{
		"v": 1, "action_id": hex.EncodeToString(id[:]), "click_id": "0192f4a1b2c37d8e9f0a1b2c3d4e5f60",
		"click_ts": "2024-11-01T12:00:00.123Z", "adv": "acme", "action": "sale", "order_id": "A 1/2",
		"status": status, "amount": "12.50", "currency": "EUR", "ts": "2026-12-01T00:00:00.000Z",
		"region": "eu-central", "node": "pb-1",
	}
}

func TestParseAction(t *testing.T) {
	b, _ := json.Marshal(actionBodyFor("approved"))
	a, p := ParseAction(b)
	if p != nil {
		t.Fatalf("ParseAction = poison %v", p)
	}
	if hex.EncodeToString(a.ID[:]) != designActionID || a.Amount != "12.50" || a.Currency != "EUR" ||
		a.Status != "approved" || a.OrderID != "A 1/2" || a.Node != "pb-1" {
		t.Errorf("row = %+v", a)
	}
	if want := time.UnixMilli(0x0192f4a1b2c3).UTC(); !a.ClickTS.Equal(want) {
		t.Errorf("ClickTS = %v, want the click id's %v", a.ClickTS, want)
	}

	m := actionBodyFor("pending")
	delete(m, "amount")
	m["currency"] = nil
	b, _ = json.Marshal(m)
	if a, p = ParseAction(b); p != nil || a.Amount != "" || a.Currency != "" {
		t.Fatalf("ParseAction without amount = %+v, %v; want a row with no amount", a, p)
	}
}

func TestParseActionPoison(t *testing.T) {
	body := func(edit func(m map[string]any)) string {
		m := actionBodyFor("approved")
		edit(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	tests := []struct {
		name, body string
		want       Reason
	}{
		{"not json", `{"v":1,`, ReasonNotJSON},
		{"v 0", body(func(m map[string]any) { m["v"] = 0 }), ReasonUnknownVersion},
		{"no action_id", body(func(m map[string]any) { delete(m, "action_id") }), ReasonMissingID},
		{"action_id upper", body(func(m map[string]any) { m["action_id"] = strings.ToUpper(designActionID) }), ReasonMalformedID},
		{"action_id short", body(func(m map[string]any) { m["action_id"] = "ca94" }), ReasonMalformedID},
		{"action_id of other fields", body(func(m map[string]any) { m["status"] = "pending" }), ReasonMalformedID},
		{"no click_id", body(func(m map[string]any) { delete(m, "click_id") }), ReasonMissingID},
		{"bad click_id", body(func(m map[string]any) { m["click_id"] = "zz" }), ReasonMalformedID},
		{"bad status", body(func(m map[string]any) { m["status"] = "paid" }), ReasonBadField},
		{"no adv", body(func(m map[string]any) { m["adv"] = "" }), ReasonBadField},
		{"bad action", body(func(m map[string]any) { m["action"] = "Sale!" }), ReasonBadField},
		{"bad amount", body(func(m map[string]any) { m["amount"] = "12,50" }), ReasonBadField},
		{"amount number", body(func(m map[string]any) { m["amount"] = 12.5 }), ReasonBadField},
		{"bad currency", body(func(m map[string]any) { m["currency"] = "eur" }), ReasonBadField},
		{"bad ts", body(func(m map[string]any) { m["ts"] = "1764547200" }), ReasonBadField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, p := ParseAction([]byte(tt.body))
			if p == nil {
				t.Fatalf("ParseAction(%.80s) = row %+v, want poison %s", tt.body, a, tt.want)
			}
			if p.Reason != tt.want {
				t.Fatalf("ParseAction(%.80s) = %s (%s), want %s", tt.body, p.Reason, p.Detail, tt.want)
			}
		})
	}
}

// Whatever the body, parsing returns a row or a reason, never panics, and a
// row holds nothing PostgreSQL would refuse: no NUL, valid UTF-8, a params
// object of strings.
func FuzzParse(f *testing.F) {
	f.Add([]byte(clickFixture))
	b, _ := json.Marshal(actionBodyFor("declined"))
	f.Add(b)
	f.Add([]byte(`{"v":1,"click_id":"019a2b3c4d5e7f018123456789abcdef","ts":"2026-11-27T05:10:00Z","params":{"a\u0000":"\u0000\ud800"}}`))
	f.Add([]byte(`{"v":1e0}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if c, p := ParseClick(body); (c == nil) == (p == nil) {
			t.Fatalf("ParseClick: row %v and poison %v", c, p)
		} else if c != nil {
			for _, s := range []string{c.Link, c.URL, c.Rule, c.Region, c.Node, c.Country, c.City, c.Device, c.OS, c.Browser, c.Lang, c.Catalog, string(c.Params)} {
				if strings.IndexByte(s, 0) >= 0 || !utf8Valid(s) || strings.Contains(s, `\u0000`) {
					t.Fatalf("ParseClick kept %q: not storable", s)
				}
			}
			var m map[string]string
			if err := json.Unmarshal(c.Params, &m); err != nil {
				t.Fatalf("params %s: %v", c.Params, err)
			}
		}
		if a, p := ParseAction(body); (a == nil) == (p == nil) {
			t.Fatalf("ParseAction: row %v and poison %v", a, p)
		} else if a != nil {
			for _, s := range []string{a.Adv, a.OrderID, a.Region, a.Node} {
				if strings.IndexByte(s, 0) >= 0 || !utf8Valid(s) {
					t.Fatalf("ParseAction kept %q: not storable", s)
				}
			}
		}
	})
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

func BenchmarkParseClick(b *testing.B) {
	_, body := clickBodyAt(time.Now(), "tv-sale", "eu")
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, p := ParseClick(body); p != nil {
			b.Fatal(p)
		}
	}
}
