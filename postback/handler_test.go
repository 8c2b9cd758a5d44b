package postback

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/edge/clickid"
	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/outboxtest"
)

const (
	testSecret = "0123456789abcdef-signed"
	testToken  = "0123456789abcdef-token"
)

const testAdvertisers = `
- id: signed
  secret: ` + testSecret + `
- id: tok
  token: ` + testToken + `
- id: walled
  token: ` + testToken + `
  allow: [10.9.0.0/16, 2001:db8::1]
- id: brief
  secret: ` + testSecret + `
  window: 1h
`

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type env struct {
	t     testing.TB
	h     *Handler
	o     *outbox.Outbox
	store Store
}

func newEnv(t testing.TB, store func(*outbox.Outbox) Store) *env {
	t.Helper()
	// The outbox judges index expiry by its clock: the same as the handler's.
	o := outboxtest.Open(t, &outbox.Options{Now: func() time.Time { return testNow }})
	e := &env{t: t, o: o, store: o}
	if store != nil {
		e.store = store(o)
	}
	cfg := DefaultConfig()
	cfg.Region, cfg.Node, cfg.Store = "eu", "pb-1", e.store
	cfg.Now = func() time.Time { return testNow }
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	advs, err := ParseAdvertisers("advertisers.yaml", []byte(testAdvertisers))
	if err != nil {
		t.Fatal(err)
	}
	h.SetAdvertisers(advs)
	e.h = h
	return e
}

// clickAt returns a click id made at testNow + d.
func clickAt(d time.Duration) string { return clickid.NewAt(testNow.Add(d)).String() }

// signed returns the query of a postback from "signed", signed at testNow,
// with kv overriding or adding parameters ("key", "" drops key).
func signed(kv ...string) string {
	ps := Params{{"adv", "signed"}, {"click_id", clickAt(-time.Hour)}, {"order_id", "O-1"}, {"ts", strconv.FormatInt(testNow.Unix(), 10)}}
	ps = set(ps, kv...)
	return SignedQuery([]byte(testSecret), ps)
}

func set(ps Params, kv ...string) Params {
	for i := 0; i+1 < len(kv); i += 2 {
		k, v := kv[i], kv[i+1]
		found := false
		for j := range ps {
			if ps[j].Key == k {
				ps[j].Value, found = v, true
			}
		}
		if !found {
			ps = append(ps, Param{k, v})
		}
		if v == "\x00drop" {
			out := ps[:0]
			for _, p := range ps {
				if p.Key != k {
					out = append(out, p)
				}
			}
			ps = out
		}
	}
	return ps
}

// plain returns an unsigned query.
func plain(kv ...string) string {
	var ps Params
	ps = set(ps, kv...)
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(p.Key) + "=" + url.QueryEscape(p.Value))
	}
	return b.String()
}

type call struct {
	method, query, body, ctype string
	header                     map[string]string
	remote                     string
}

type reply struct {
	Status int
	Result string `json:"result"`
	ID     string `json:"action_id"`
	Error  string `json:"error"`
	Field  string `json:"field"`
	Header http.Header
}

var fronts = []string{"net/http", "fasthttp"}

func (e *env) do(front string, c call) reply {
	e.t.Helper()
	if c.method == "" {
		c.method = http.MethodGet
	}
	if c.remote == "" {
		c.remote = "192.0.2.7:4000"
	}
	var r reply
	var raw []byte
	switch front {
	case "net/http":
		// Built by hand, not parsed: the fuzzer's queries may hold bytes
		// no request line would.
		req := &http.Request{Method: c.method, URL: &url.URL{Path: "/postback", RawQuery: c.query}, Header: http.Header{},
			Body: io.NopCloser(strings.NewReader(c.body)), RemoteAddr: c.remote}
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		for k, v := range c.header {
			req.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, req)
		r.Status, raw, r.Header = w.Code, w.Body.Bytes(), w.Header()
	case "fasthttp":
		var req fasthttp.Request
		req.Header.SetMethod(c.method)
		req.SetRequestURI("/postback?" + c.query)
		if c.body != "" {
			req.SetBodyString(c.body)
		}
		if c.ctype != "" {
			req.Header.SetContentType(c.ctype)
		}
		for k, v := range c.header {
			req.Header.Set(k, v)
		}
		addr, err := net.ResolveTCPAddr("tcp", c.remote)
		if err != nil {
			e.t.Fatal(err)
		}
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, addr, nil)
		e.h.ServeFast(&ctx)
		r.Status, raw = ctx.Response.StatusCode(), ctx.Response.Body()
		r.Header = http.Header{}
		ctx.Response.Header.VisitAll(func(k, v []byte) { r.Header.Add(string(k), string(v)) })
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		e.t.Fatalf("%s: answer %d is not JSON: %q", front, r.Status, raw)
	}
	if (r.Result == "") == (r.Error == "") {
		e.t.Fatalf("%s: answer %q has neither or both of result and error", front, raw)
	}
	return r
}

// Every refusal class, through both front-ends: the status, the field
// named, the reason counted, and nothing stored.
func TestRefusals(t *testing.T) {
	tests := []struct {
		name   string
		c      call
		status int
		field  string
		reason reason
	}{
		{"method", call{method: "PUT", query: signed()}, 405, "", reasonBadRequest},
		{"malformed escape", call{query: "adv=signed&order_id=%zz"}, 400, "order_id", reasonBadRequest},
		{"duplicate parameter", call{query: signed() + "&adv=signed"}, 400, "adv", reasonBadRequest},
		{"missing adv", call{query: plain("click_id", clickAt(0))}, 400, "adv", reasonBadRequest},
		{"post not a form", call{method: "POST", body: signed(), ctype: "application/json"}, 400, "", reasonBadRequest},
		{"too long", call{query: signed("x", strings.Repeat("y", MaxValueBytes)) + "&z=" + strings.Repeat("q", MaxQueryBytes)}, 400, "", reasonBadRequest},
		{"missing click_id", call{query: signed("click_id", "\x00drop")}, 400, "click_id", reasonBadRequest},
		{"click_id not hex", call{query: signed("click_id", strings.Repeat("z", 32))}, 400, "click_id", reasonBadRequest},
		{"click_id upper case", call{query: signed("click_id", strings.ToUpper(clickAt(0)))}, 400, "click_id", reasonBadRequest},
		{"click_id with dashes", call{query: signed("click_id", "0192f4a1-b2c3-7d8e-9f0a-1b2c3d4e5f60")}, 400, "click_id", reasonBadRequest},
		{"click_id not v7", call{query: signed("click_id", "0192f4a1b2c34d8e9f0a1b2c3d4e5f60")}, 400, "click_id", reasonBadRequest},
		{"missing order_id", call{query: signed("order_id", "\x00drop")}, 400, "order_id", reasonBadRequest},
		{"order_id too long", call{query: signed("order_id", strings.Repeat("o", MaxOrderBytes+1))}, 400, "order_id", reasonBadRequest},
		{"order_id control", call{query: signed("order_id", "a\tb")}, 400, "order_id", reasonBadRequest},
		{"order_id bad utf-8", call{query: signed("order_id", "a\xffb")}, 400, "order_id", reasonBadRequest},
		{"action", call{query: signed("action", "Sale")}, 400, "action", reasonBadRequest},
		{"status", call{query: signed("status", "paid")}, 400, "status", reasonBadRequest},
		{"amount 3 decimals", call{query: signed("amount", "1.005", "currency", "EUR")}, 400, "amount", reasonBadRequest},
		{"amount negative", call{query: signed("amount", "-1", "currency", "EUR")}, 400, "amount", reasonBadRequest},
		{"amount without currency", call{query: signed("amount", "1.00")}, 400, "currency", reasonBadRequest},
		{"currency without amount", call{query: signed("currency", "EUR")}, 400, "amount", reasonBadRequest},
		{"currency lower case", call{query: signed("amount", "1", "currency", "eur")}, 400, "currency", reasonBadRequest},
		{"unknown advertiser", call{query: plain("adv", "nobody", "token", testToken)}, 401, "adv", reasonUnauthorized},
		{"missing sig", call{query: plain("adv", "signed", "ts", "1")}, 401, "sig", reasonUnauthorized},
		{"sig without ts", call{query: strings.Replace(signed(), "&ts=", "&xts=", 1)}, 401, "ts", reasonUnauthorized},
		{"bad sig", call{query: signed("order_id", "O-1") + "0"}, 401, "sig", reasonUnauthorized},
		{"tampered value", call{query: strings.Replace(signed(), "O-1", "O-2", 1)}, 401, "sig", reasonUnauthorized},
		{"other secret", call{query: SignedQuery([]byte("another-secret-of-16"), Params{{"adv", "signed"}, {"ts", strconv.FormatInt(testNow.Unix(), 10)}})}, 401, "sig", reasonUnauthorized},
		{"ts too old", call{query: signed("ts", strconv.FormatInt(testNow.Unix()-301, 10))}, 401, "ts", reasonUnauthorized},
		{"ts ahead", call{query: signed("ts", strconv.FormatInt(testNow.Unix()+301, 10))}, 401, "ts", reasonUnauthorized},
		{"ts not a number", call{query: signed("ts", "soon")}, 401, "ts", reasonUnauthorized},
		{"missing token", call{query: plain("adv", "tok", "click_id", clickAt(0), "order_id", "1")}, 401, "token", reasonUnauthorized},
		{"bad token", call{query: plain("adv", "tok", "token", testToken+"x", "click_id", clickAt(0), "order_id", "1")}, 401, "token", reasonUnauthorized},
		{"bad bearer", call{query: plain("adv", "tok", "click_id", clickAt(0), "order_id", "1"), header: map[string]string{"Authorization": "Bearer nope"}}, 401, "token", reasonUnauthorized},
		{"not in allow", call{query: plain("adv", "walled", "token", testToken, "click_id", clickAt(0), "order_id", "1")}, 403, "", reasonForbidden},
		{"forwarded by an untrusted peer", call{query: plain("adv", "walled", "token", testToken, "click_id", clickAt(0), "order_id", "1"),
			header: map[string]string{"X-Forwarded-For": "10.9.0.1"}}, 403, "", reasonForbidden},
		{"click from the future", call{query: signed("click_id", clickAt(6*time.Minute))}, 422, "click_id", reasonOutOfWindow},
		{"click older than the window", call{query: signed("click_id", clickAt(-721*time.Hour))}, 422, "click_id", reasonOutOfWindow},
		{"click older than a short window", call{query: signed("adv", "brief", "click_id", clickAt(-61*time.Minute))}, 422, "click_id", reasonOutOfWindow},
	}
	for _, front := range fronts {
		e := newEnv(t, nil)
		for _, tt := range tests {
			before := testutil.ToFloat64(e.h.m.byReason[tt.reason])
			r := e.do(front, tt.c)
			if r.Status != tt.status || r.Field != tt.field {
				t.Errorf("%s: %s: answer %d field %q (%s), want %d field %q", front, tt.name, r.Status, r.Field, r.Error, tt.status, tt.field)
			}
			if got := testutil.ToFloat64(e.h.m.byReason[tt.reason]) - before; got != 1 {
				t.Errorf("%s: %s: refused{reason=%s} grew by %v, want 1", front, tt.name, reasonNames[tt.reason], got)
			}
			if tt.status == 405 && r.Header.Get("Allow") != "GET, POST" {
				t.Errorf("%s: %s: Allow = %q, want \"GET, POST\"", front, tt.name, r.Header.Get("Allow"))
			}
		}
		if recs := outboxtest.ReadAll(t, e.o); len(recs) != 0 {
			t.Fatalf("%s: %d records stored by refused postbacks", front, len(recs))
		}
		if got := testutil.ToFloat64(e.h.m.byResult[resultRefused]); got != float64(len(tests)) {
			t.Errorf("%s: postbacks_total{result=refused} = %v, want %d", front, got, len(tests))
		}
	}
}

// Registered, duplicate, updated and conflict, and what reaches the outbox.
func TestStatusMoves(t *testing.T) {
	for _, front := range fronts {
		e := newEnv(t, nil)
		cid := clickAt(-time.Hour)
		steps := []struct {
			order, status string
			want          int
			result        string
		}{
			{"O1", "pending", 200, "registered"},
			{"O1", "pending", 200, "duplicate"},
			{"O1", "approved", 200, "updated"},
			{"O1", "approved", 200, "duplicate"},
			{"O1", "pending", 200, "duplicate"}, // registered before: a late retry
			{"O1", "declined", 409, ""},
			{"O2", "approved", 200, "registered"},
			{"O2", "pending", 409, ""},
			{"O2", "declined", 409, ""},
			{"O3", "declined", 200, "registered"},
			{"O3", "approved", 409, ""},
		}
		for i, s := range steps {
			r := e.do(front, call{query: signed("click_id", cid, "order_id", s.order, "status", s.status, "amount", "10", "currency", "USD")})
			if r.Status != s.want || r.Result != s.result {
				t.Fatalf("%s: step %d (%s %s): answer %d %q (%s), want %d %q", front, i, s.order, s.status, r.Status, r.Result, r.Error, s.want, s.result)
			}
			if s.want == 200 && r.ID != ActionID("signed", s.order, "sale", mustStatus(s.status)) {
				t.Fatalf("%s: step %d: action_id %s is not ActionID's", front, i, r.ID)
			}
			if s.want == 409 && r.Field != "status" {
				t.Fatalf("%s: step %d: 409 names field %q, want status", front, i, r.Field)
			}
		}
		recs := outboxtest.ReadAll(t, e.o)
		var got []string
		for _, rec := range recs {
			var m message
			if err := json.Unmarshal(rec.Body, &m); err != nil {
				t.Fatal(err)
			}
			got = append(got, m.OrderID+" "+m.Status)
			want := message{V: 1, ActionID: rec.MessageID, ClickID: cid, ClickTS: formatTS(testNow.Add(-time.Hour)),
				Adv: "signed", Action: "sale", OrderID: m.OrderID, Status: m.Status, Amount: "10", Currency: "USD",
				TS: "2026-03-01T12:00:00.000Z", Region: "eu", Node: "pb-1"}
			if m != want || rec.MessageID != ActionID("signed", m.OrderID, "sale", mustStatus(m.Status)) {
				t.Fatalf("%s: message %+v, want %+v with message id its action id", front, m, want)
			}
			if rec.Exchange != "actions" || rec.RoutingKey != "action.eu" || rec.Header("region") != "eu" ||
				rec.Header("node") != "pb-1" || rec.Header("schema") != int64(1) {
				t.Fatalf("%s: record %s %s headers %v", front, rec.Exchange, rec.RoutingKey, rec.Headers)
			}
		}
		if s := strings.Join(got, ", "); s != "O1 pending, O1 approved, O2 approved, O3 declined" {
			t.Fatalf("%s: records %s", front, s)
		}
		if n := testutil.ToFloat64(e.h.m.byResult[resultUpdated]); n != 1 {
			t.Fatalf("%s: postbacks_total{result=updated} = %v, want 1", front, n)
		}
	}
}

func mustStatus(s string) Status {
	st, _ := ParseStatus(s)
	return st
}

// Token, bearer, allowlist (direct and behind a trusted proxy), POST form,
// aliases and defaults.
func TestAccepted(t *testing.T) {
	for _, front := range fronts {
		e := newEnv(t, nil)
		cid := clickAt(-time.Minute)
		tests := []struct {
			name string
			c    call
		}{
			{"token parameter", call{query: plain("adv", "tok", "token", testToken, "click_id", cid, "order_id", "t1")}},
			{"bearer", call{query: plain("adv", "tok", "click_id", cid, "order_id", "t2"), header: map[string]string{"Authorization": "Bearer " + testToken}}},
			{"allowed address", call{remote: "10.9.3.4:555", query: plain("adv", "walled", "token", testToken, "click_id", cid, "order_id", "t3")}},
			{"allowed ipv6 host", call{remote: "[2001:db8::1]:555", query: plain("adv", "walled", "token", testToken, "click_id", cid, "order_id", "t4")}},
			{"allowed behind a trusted proxy", call{remote: "127.0.0.1:555", header: map[string]string{"X-Forwarded-For": "10.9.0.1"},
				query: plain("adv", "walled", "token", testToken, "click_id", cid, "order_id", "t5")}},
			{"post form", call{method: "POST", ctype: "application/x-www-form-urlencoded", body: signed("click_id", cid, "order_id", "t6")}},
			{"aliases", call{query: plain("adv", "tok", "token", testToken, "cid", cid, "tid", "t7")}},
			{"subid alias and extra params", call{query: signed("subid", cid, "click_id", "\x00drop", "order_id", "t8", "utm_source", "x y")}},
			{"ts at the edge of the skew", call{query: signed("order_id", "t9", "ts", strconv.FormatInt(testNow.Unix()-300, 10))}},
			{"click 4 minutes ahead", call{query: signed("order_id", "t10", "click_id", clickAt(4*time.Minute))}},
		}
		for _, tt := range tests {
			r := e.do(front, tt.c)
			if r.Status != 200 || r.Result != "registered" {
				t.Errorf("%s: %s: answer %d %q %q (field %q), want 200 registered", front, tt.name, r.Status, r.Result, r.Error, r.Field)
			}
		}
		recs := outboxtest.ReadAll(t, e.o)
		if len(recs) != len(tests) {
			t.Fatalf("%s: %d records for %d registrations", front, len(recs), len(tests))
		}
		var m message
		json.Unmarshal(recs[0].Body, &m)
		if m.Action != "sale" || m.Status != "approved" || m.Amount != "" {
			t.Fatalf("%s: defaults: %+v", front, m)
		}
	}
}

// brokenStore fails appends, as a full or failing disk does.
type brokenStore struct{ Store }

func (brokenStore) AppendIndexed(*outbox.Record, outbox.IndexUpdate) error {
	return fmt.Errorf("%w: injected", outbox.ErrWrite)
}

func TestUnavailable(t *testing.T) {
	e := newEnv(t, func(o *outbox.Outbox) Store { return brokenStore{o} })
	for _, front := range fronts {
		r := e.do(front, call{query: signed()})
		if r.Status != 503 || r.Header.Get("Retry-After") == "" {
			t.Fatalf("%s: answer %d (Retry-After %q) when the outbox fails, want 503 with Retry-After", front, r.Status, r.Header.Get("Retry-After"))
		}
	}
	if got := testutil.ToFloat64(e.h.m.byReason[reasonUnavailable]); got != 2 {
		t.Fatalf("refused{reason=unavailable} = %v, want 2", got)
	}
}

// The outbox reports lost records of every kind (outbox.Options.OnLost):
// the handler counts its actions (its exchange, from this node or a peer)
// in clickedge_postbacks_dropped_total, not clicks nor the links feed, and
// not as a result of clickedge_postbacks_total.
func TestCountLost(t *testing.T) {
	e := newEnv(t, nil)
	hdr := []outbox.Header{{Key: "region", Value: "eu"}, {Key: "node", Value: "pb-1"}}
	peer := []outbox.Header{{Key: "region", Value: "eu"}, {Key: "node", Value: "pb-2"}}
	e.h.CountLost(&outbox.Record{Exchange: "actions", RoutingKey: "action.eu", Headers: hdr}, 3)
	e.h.CountLost(&outbox.Record{Exchange: "actions", RoutingKey: "action.eu", Headers: peer}, 2)
	e.h.CountLost(&outbox.Record{Exchange: "clicks", RoutingKey: "click.eu", Headers: hdr}, 100)
	e.h.CountLost(&outbox.Record{Exchange: "links", RoutingKey: "links", Headers: hdr}, 100)
	e.h.CountLost(&outbox.Record{}, 100)
	if got := testutil.ToFloat64(e.h.m.dropped); got != 5 {
		t.Fatalf("clickedge_postbacks_dropped_total = %v, want the 5 actions", got)
	}
	for r := range numResults {
		if got := testutil.ToFloat64(e.h.m.byResult[r]); got != 0 {
			t.Fatalf("clickedge_postbacks_total{result=%q} = %v, want 0: a lost action is not a result", resultNames[r], got)
		}
	}
}

// racyStore changes the entry between the handler's read and its append,
// once: the handler reads again and answers from the new state.
type racyStore struct {
	Store
	once sync.Once
	o    *outbox.Outbox
}

func (s *racyStore) AppendIndexed(r *outbox.Record, u outbox.IndexUpdate) error {
	s.once.Do(func() {
		other := *r
		if err := s.o.AppendIndexed(&other, u); err != nil {
			panic(err)
		}
	})
	return s.o.AppendIndexed(r, u)
}

func TestRaceWithAnotherWriter(t *testing.T) {
	e := newEnv(t, func(o *outbox.Outbox) Store { return &racyStore{Store: o, o: o} })
	r := e.do("net/http", call{query: signed()})
	if r.Status != 200 || r.Result != "duplicate" {
		t.Fatalf("answer %d %q after a racing registration, want 200 duplicate", r.Status, r.Result)
	}
	if n := len(outboxtest.ReadAll(t, e.o)); n != 1 {
		t.Fatalf("%d records, want 1", n)
	}
}

// 32 senders post the same conversions at once: one registration and one
// record each, every other answer a duplicate.
func TestConcurrentDuplicates(t *testing.T) {
	e := newEnv(t, nil)
	const orders, senders = 20, 32
	var mu sync.Mutex
	results := map[string]int{}
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range orders {
				r := e.do(fronts[s%2], call{query: signed("order_id", fmt.Sprint("C", i))})
				mu.Lock()
				results[r.Result]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if results["registered"] != orders || results["duplicate"] != orders*(senders-1) {
		t.Fatalf("results %v, want %d registered and %d duplicate", results, orders, orders*(senders-1))
	}
	if n := len(outboxtest.ReadAll(t, e.o)); n != orders {
		t.Fatalf("%d records, want %d", n, orders)
	}
}

func TestNoAdvertisersIs401(t *testing.T) {
	e := newEnv(t, nil)
	e.h.SetAdvertisers(nil)
	if r := e.do("net/http", call{query: signed()}); r.Status != 401 {
		t.Fatalf("answer %d with no advertisers loaded, want 401", r.Status)
	}
}

func TestNewRequires(t *testing.T) {
	if _, err := New(&Config{Region: "eu", Node: "n"}); err == nil {
		t.Error("New without a Store succeeded")
	}
	if _, err := New(&Config{Store: brokenStore{}, Node: "n"}); err == nil {
		t.Error("New without a Region succeeded")
	}
	var fe *FieldError
	if !errors.As(error(&FieldError{Field: "a"}), &fe) {
		t.Error("FieldError is not an error")
	}
}
