//go:build e2e

package e2e

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clickedge/clickedge/internal/brokertest"
)

// The postback stage: a registration node (roles: [postback]) against a
// private broker. Signed, token and allow-listed advertisers; every refusal
// class; duplicates and status moves; no redirects served; and kill -9
// under 32 concurrent senders with lost = 0: every action answered 200
// (registered, updated, or duplicate of one registered earlier) arrives on
// the actions exchange.

const (
	pbSecret = "e2e-signing-secret-0123456789"
	pbToken  = "e2e-token-0123456789abcdef"
)

const pbAdvertisers = `
- id: signed
  secret: ` + pbSecret + `
- id: tok
  token: ` + pbToken + `
- id: local-only
  token: ` + pbToken + `
  allow: [127.0.0.0/8]
- id: walled
  token: ` + pbToken + `
  allow: [192.0.2.0/24]
- id: brief
  secret: ` + pbSecret + `
  window: 1h
`

// pbNode is a registration node's files and its current process.
type pbNode struct {
	t       *testing.T
	dir     string
	cfgPath string
	logPath string
	proc    *edgeProc
}

func newPBNode(t *testing.T, amqpURL string) *pbNode {
	dir := t.TempDir()
	n := &pbNode{t: t, dir: dir, logPath: filepath.Join(dir, "node.log")}
	if d := os.Getenv("E2E_LOGDIR"); d != "" {
		os.MkdirAll(d, 0o755)
		n.logPath = filepath.Join(d, strings.ReplaceAll(t.Name(), "/", "_")+".log")
		os.Remove(n.logPath)
	}
	if err := os.WriteFile(filepath.Join(dir, "advertisers.yaml"), []byte(pbAdvertisers), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`node:
  id: e2e-pb
  region: %s
  roles: [postback]
http:
  listen: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
data_dir: %q
catalog:
  file: no-catalog-on-a-registration-node.yaml
outbox:
  durability: sync
forwarder:
  amqp_urls: [%q]
  window: %d
  heartbeat: 2s
  dial_timeout: 2s
  reconnect_min: 100ms
  reconnect_max: 2s
  shutdown_timeout: 5s
postback:
  advertisers: advertisers.yaml
`, edgeRegion, filepath.Join(dir, "data"), amqpURL, windowSize)
	n.cfgPath = filepath.Join(dir, "clickedge.yaml")
	if err := os.WriteFile(n.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() && n.proc != nil {
			t.Logf("registration node log (%s), last lines:\n%s", n.logPath, n.proc.logTail(40))
		}
	})
	return n
}

func (n *pbNode) start() *edgeProc {
	n.proc = startEdge(n.t, n.cfgPath, n.logPath)
	return n.proc
}

var pbClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 64},
}

// pbAnswer is a postback's answer; Status 0 means no answer.
type pbAnswer struct {
	Status int
	Result string `json:"result"`
	ID     string `json:"action_id"`
	Error  string `json:"error"`
	Field  string `json:"field"`
}

func send(method, u, body string) pbAnswer {
	var resp *http.Response
	var err error
	if method == http.MethodPost {
		resp, err = pbClient.Post(u, "application/x-www-form-urlencoded", strings.NewReader(body))
	} else {
		req, _ := http.NewRequest(method, u, nil)
		resp, err = pbClient.Do(req)
	}
	if err != nil {
		return pbAnswer{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := pbAnswer{Status: resp.StatusCode}
	if json.Unmarshal(b, &a) != nil {
		a.Error = "not JSON: " + string(b)
	}
	return a
}

func nowTS() string { return strconv.FormatInt(time.Now().Unix(), 10) }

// The suite signs as an advertiser would, from the contract (DESIGN.md,
// docs/postbacks.md), not with clickedge's code: the node must accept
// exactly that.

// rfc3986 escapes everything but ALPHA / DIGIT / "-" / "." / "_" / "~",
// with upper-case hex.
func rfc3986(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// canonical is every parameter but sig, sorted by key then value,
// key=value escaped, joined with '&'.
func canonical(params map[string]string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		if k != "sig" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = rfc3986(k) + "=" + rfc3986(params[k])
	}
	return strings.Join(parts, "&")
}

func hmacHex(secret, msg string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// signedQuery signs the parameters for "signed" (or the adv in kv), with
// ts now unless kv gives one, and returns a query in form encoding.
func signedQuery(kv ...string) string {
	params := map[string]string{"adv": "signed", "ts": nowTS()}
	for i := 0; i+1 < len(kv); i += 2 {
		params[kv[i]] = kv[i+1]
	}
	v := url.Values{}
	for k, val := range params {
		v.Set(k, val)
	}
	v.Set("sig", hmacHex(pbSecret, canonical(params)))
	return v.Encode()
}

// newClickID makes a UUIDv7 (RFC 9562) for time t, 32 lowercase hex
// digits, as an edge does.
func newClickID(t time.Time) string {
	var id [16]byte
	rand.Read(id[:])
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(t.UnixMilli()))
	copy(id[:6], ms[2:])
	id[6] = 0x70 | id[6]&0x0f
	id[8] = 0x80 | id[8]&0x3f
	return hex.EncodeToString(id[:])
}

// actionID is the contract's: the first 16 bytes of SHA-256(adv "\n"
// order_id "\n" action "\n" status), in hex.
func actionID(adv, order, action, status string) string {
	sum := sha256.Sum256([]byte(adv + "\n" + order + "\n" + action + "\n" + status))
	return hex.EncodeToString(sum[:16])
}

func freshClick() string { return newClickID(time.Now().Add(-time.Minute)) }

// The suite's signer agrees with the contract's worked example.
func TestPostbackSignerWorkedExample(t *testing.T) {
	params := map[string]string{"adv": "acme", "click_id": "0192f4a1b2c37d8e9f0a1b2c3d4e5f60", "order_id": "A 1/2",
		"action": "sale", "status": "approved", "amount": "12.50", "currency": "EUR", "ts": "1764547200"}
	c := canonical(params)
	if want := "action=sale&adv=acme&amount=12.50&click_id=0192f4a1b2c37d8e9f0a1b2c3d4e5f60&currency=EUR&order_id=A%201%2F2&status=approved&ts=1764547200"; c != want {
		t.Fatalf("canonical = %q, want %q", c, want)
	}
	if sig := hmacHex("s3cret", c); sig != "317040b6a348adeb6d9c4c00c0f888a597015d570ba36ac2f746f8b82fe2889a" {
		t.Fatalf("sig = %s", sig)
	}
}

func TestPostback(t *testing.T) {
	node := brokertest.StartNode(t, nil)
	queue := brokertest.TempQueue(t, node.URL(), "actions", "action.#")
	central := brokertest.Consume(t, node.URL(), queue)
	n := newPBNode(t, node.URL())
	p := n.start()
	base := "http://" + p.HTTP + "/postback"

	// delivered are the action ids answered 200; all must arrive.
	var mu sync.Mutex
	delivered := map[string]bool{}
	expect := func(a pbAnswer) {
		if a.Status == 200 {
			mu.Lock()
			delivered[a.ID] = true
			mu.Unlock()
		}
	}

	t.Run("NoRedirects", func(t *testing.T) {
		for _, path := range []string{"/r/demo", "/c/demo", "/r/tv-sale"} {
			resp, err := pbClient.Get("http://" + p.HTTP + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 404 {
				t.Errorf("GET %s on a registration node = %d, want 404", path, resp.StatusCode)
			}
		}
		resp, err := pbClient.Get("http://" + p.Admin + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("/readyz = %d without a catalog file, want 200", resp.StatusCode)
		}
	})

	t.Run("Accepted", func(t *testing.T) {
		cid := freshClick()
		tokenQ := func(adv, order string) string {
			return url.Values{"adv": {adv}, "token": {pbToken}, "click_id": {cid}, "order_id": {order}}.Encode()
		}
		cases := []struct {
			name, method, query, body string
		}{
			{"signed GET", "GET", signedQuery("click_id", cid, "order_id", "S 1/2", "amount", "12.50", "currency", "EUR"), ""},
			{"signed POST", "POST", "", signedQuery("click_id", cid, "order_id", "S-2")},
			{"token", "GET", tokenQ("tok", "T-1"), ""},
			{"allow-listed", "GET", tokenQ("local-only", "L-1"), ""},
		}
		for _, c := range cases {
			u := base
			if c.query != "" {
				u += "?" + c.query
			}
			a := send(c.method, u, c.body)
			if a.Status != 200 || a.Result != "registered" {
				t.Errorf("%s: %d %q %q, want 200 registered", c.name, a.Status, a.Result, a.Error)
			}
			expect(a)
		}
	})

	t.Run("Refusals", func(t *testing.T) {
		cid := freshClick()
		old := strconv.FormatInt(time.Now().Add(-10*time.Minute).Unix(), 10)
		cases := []struct {
			name, method, query string
			status              int
			field               string
		}{
			{"missing order_id", "GET", signedQuery("click_id", cid), 400, "order_id"},
			{"bad click_id", "GET", signedQuery("click_id", "nope", "order_id", "R1"), 400, "click_id"},
			{"three decimals", "GET", signedQuery("click_id", cid, "order_id", "R1", "amount", "1.001", "currency", "EUR"), 400, "amount"},
			{"method", "PUT", signedQuery("click_id", cid, "order_id", "R1"), 405, ""},
			{"unknown advertiser", "GET", "adv=nobody&token=x", 401, "adv"},
			{"bad signature", "GET", strings.Replace(signedQuery("click_id", cid, "order_id", "R1"), "R1", "R2", 1), 401, "sig"},
			{"old ts", "GET", signedQuery("click_id", cid, "order_id", "R1", "ts", old), 401, "ts"},
			{"bad token", "GET", "adv=tok&token=wrong&order_id=R1&click_id=" + cid, 401, "token"},
			{"not allow-listed", "GET", "adv=walled&token=" + pbToken + "&order_id=R1&click_id=" + cid, 403, ""},
			{"click from the future", "GET", signedQuery("click_id", newClickID(time.Now().Add(10*time.Minute)), "order_id", "R1"), 422, "click_id"},
			{"click outside the window", "GET", signedQuery("adv", "brief", "click_id", newClickID(time.Now().Add(-2*time.Hour)), "order_id", "R1"), 422, "click_id"},
		}
		for _, c := range cases {
			a := send(c.method, base+"?"+c.query, "")
			if a.Status != c.status || a.Field != c.field || a.Error == "" {
				t.Errorf("%s: %d field %q %q, want %d field %q with an error", c.name, a.Status, a.Field, a.Error, c.status, c.field)
			}
		}
	})

	t.Run("DuplicatesAndMoves", func(t *testing.T) {
		cid := freshClick()
		steps := []struct {
			order, status, result string
			code                  int
		}{
			{"M1", "pending", "registered", 200},
			{"M1", "pending", "duplicate", 200},
			{"M1", "approved", "updated", 200},
			{"M1", "approved", "duplicate", 200},
			{"M1", "declined", "", 409},
			{"M2", "declined", "registered", 200},
			{"M2", "pending", "", 409},
		}
		for i, s := range steps {
			a := send("GET", base+"?"+signedQuery("click_id", cid, "order_id", s.order, "status", s.status), "")
			if a.Status != s.code || a.Result != s.result {
				t.Fatalf("step %d (%s %s): %d %q %q, want %d %q", i, s.order, s.status, a.Status, a.Result, a.Error, s.code, s.result)
			}
			if want := actionID("signed", s.order, "sale", s.status); a.Status == 200 && a.ID != want {
				t.Fatalf("step %d: action_id %s, want %s", i, a.ID, want)
			}
			expect(a)
		}
	})

	t.Run("Kill9Under32Senders", func(t *testing.T) {
		cycles := 3
		var stop atomic.Bool
		var answered, unanswered, refused atomic.Int64
		var wg sync.WaitGroup
		var cur atomic.Pointer[string]
		setBase := func(s string) { cur.Store(&s) }
		setBase(base)
		for s := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cid := freshClick()
				for i := 0; !stop.Load(); i++ {
					order := fmt.Sprintf("K%d-%d", s, i)
					// Each order is sent until it gets an answer, and moves
					// pending -> approved on every other one, so that
					// updates and duplicates cross the kills too.
					statuses := []string{"approved"}
					if i%2 == 1 {
						statuses = []string{"pending", "approved"}
					}
					for _, st := range statuses {
						for !stop.Load() {
							var q string
							if s%4 == 0 {
								q = url.Values{"adv": {"tok"}, "token": {pbToken}, "click_id": {cid}, "order_id": {order}, "status": {st}}.Encode()
							} else {
								q = signedQuery("click_id", cid, "order_id", order, "status", st)
							}
							a := send("GET", *cur.Load()+"?"+q, "")
							if a.Status == 200 {
								answered.Add(1)
								expect(a)
								break
							}
							if a.Status == 0 {
								unanswered.Add(1)
							} else {
								refused.Add(1)
								if a.Status != 503 {
									t.Errorf("%s %s: %d %q", order, st, a.Status, a.Error)
									return
								}
							}
							time.Sleep(20 * time.Millisecond) // the node is restarting
						}
					}
				}
			}()
		}
		for c := range cycles {
			time.Sleep(2 * time.Second)
			before := answered.Load()
			p.kill()
			t.Logf("cycle %d: kill -9 after %d answers", c+1, before)
			p = n.start()
			setBase("http://" + p.HTTP + "/postback")
		}
		time.Sleep(2 * time.Second)
		stop.Store(true)
		wg.Wait()
		t.Logf("%d answered 200, %d unanswered (node down), %d refused 503", answered.Load(), unanswered.Load(), refused.Load())
	})

	// Everything answered 200 arrives; nothing else does.
	mu.Lock()
	want := make([]string, 0, len(delivered))
	for id := range delivered {
		want = append(want, id)
	}
	mu.Unlock()
	deadline := time.Now().Add(deliverTimeout)
	var lost []string
	for {
		lost = lost[:0]
		for _, id := range want {
			if central.Seen(id) == 0 {
				lost = append(lost, id)
			}
		}
		if len(lost) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// One message's body, field by field (the rest by message id).
	signedOne := actionID("signed", "S 1/2", "sale", "approved")
	for _, m := range central.Messages() {
		if m.MessageID != signedOne {
			continue
		}
		var body map[string]any
		if err := json.Unmarshal(m.Body, &body); err != nil {
			t.Fatalf("body of %s: %v", m.MessageID, err)
		}
		for k, want := range map[string]any{"v": 1.0, "action_id": signedOne, "adv": "signed", "action": "sale", "order_id": "S 1/2",
			"status": "approved", "amount": "12.50", "currency": "EUR", "region": edgeRegion, "node": "e2e-pb"} {
			if body[k] != want {
				t.Errorf("body[%q] = %v, want %v (body %s)", k, body[k], want, m.Body)
			}
		}
		for _, k := range []string{"click_id", "click_ts", "ts"} {
			if s, _ := body[k].(string); s == "" {
				t.Errorf("body[%q] missing: %s", k, m.Body)
			}
		}
		if m.Headers["region"] != edgeRegion || m.Headers["node"] != "e2e-pb" {
			t.Errorf("headers %v", m.Headers)
		}
		break
	}
	unexpected := 0
	for _, m := range central.Messages() {
		if !delivered[m.MessageID] {
			unexpected++
		}
		if m.Exchange != "actions" || m.RoutingKey != "action."+edgeRegion || m.ContentType != "application/json" || m.DeliveryMode != 2 {
			t.Errorf("message %s: exchange %q routing key %q content type %q delivery mode %d", m.MessageID, m.Exchange, m.RoutingKey, m.ContentType, m.DeliveryMode)
			break
		}
	}
	t.Logf("postbacks: %d action ids answered 200, %d deliveries (%d duplicates), lost %d, unexpected %d",
		len(want), central.Count(), central.Duplicates(), len(lost), unexpected)
	if len(lost) != 0 {
		t.Errorf("lost = %d, want 0 (e.g. %v)", len(lost), lost[:min(5, len(lost))])
	}
	// A postback whose answer was lost in a kill may have been committed:
	// it arrives although no 200 was seen, and its retry after the restart
	// answered duplicate, so it is in delivered. Anything else is a bug.
	if unexpected != 0 {
		t.Errorf("unexpected = %d deliveries of actions never answered 200, want 0", unexpected)
	}
	// Through the binary: lost actions have their own counter, at 0 here
	// (every action answered 200 was committed first).
	m, err := p.metrics()
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := m["clickedge_postbacks_dropped_total"]; !ok || v != 0 {
		t.Errorf("clickedge_postbacks_dropped_total = %v (exported %v), want 0", v, ok)
	}
}
