//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/clickedge/clickedge/internal/brokertest"
	"github.com/clickedge/clickedge/internal/pgtest"
)

// collectProc is one run of `clickedge collect`.
type collectProc struct {
	cmd     *exec.Cmd
	Metrics string // metrics listener, host:port
	readyCh chan struct{}
	exited  chan struct{}
	code    int

	mu   sync.Mutex
	tail []string
}

// startCollect runs `clickedge collect -config cfgPath` and waits until it
// listens; stderr is appended to logPath. SIGKILLed when the test ends.
func startCollect(t testing.TB, cfgPath, logPath string) *collectProc {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(edgeBinary(), "collect", "-config", cfgPath)
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &collectProc{cmd: cmd, readyCh: make(chan struct{}), exited: make(chan struct{})}
	fmt.Fprintf(logf, "=== %s clickedge collect -config %s\n", time.Now().UTC().Format(time.RFC3339Nano), cfgPath)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start collect: %v", err)
	}
	go func() {
		defer close(c.exited)
		defer logf.Close()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		ready := false
		for sc.Scan() {
			line := sc.Text()
			logf.WriteString(line + "\n")
			c.mu.Lock()
			c.tail = append(c.tail, line)
			if len(c.tail) > 200 {
				c.tail = append(c.tail[:0], c.tail[100:]...)
			}
			c.mu.Unlock()
			var l struct {
				Msg     string `json:"msg"`
				Metrics string `json:"metrics"`
			}
			if !ready && json.Unmarshal([]byte(line), &l) == nil && l.Msg == "clickedge collect running" {
				c.Metrics, ready = l.Metrics, true
				close(c.readyCh)
			}
		}
		io.Copy(io.Discard, stderr)
		cmd.Wait()
		c.code = cmd.ProcessState.ExitCode()
	}()
	t.Cleanup(c.kill)
	select {
	case <-c.readyCh:
	case <-c.exited:
		t.Fatalf("collect exited with %d before running; its log:\n%s", c.code, c.logTail(40))
	case <-time.After(startTimeout):
		t.Fatalf("collect not running after %v; its log:\n%s", startTimeout, c.logTail(40))
	}
	return c
}

func (c *collectProc) logTail(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.tail[max(0, len(c.tail)-n):], "\n")
}

func (c *collectProc) kill() {
	select {
	case <-c.exited:
		return
	default:
	}
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
}

func (c *collectProc) metrics() (map[string]float64, error) {
	resp, err := metricsClient.Get("http://" + c.Metrics + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return parseMetrics(resp.Body)
}

// collectWorld is the collector stage's world: a private broker, a private
// PostgreSQL, an edge publishing to the broker and `clickedge collect`.
type collectWorld struct {
	t       *testing.T
	dir     string
	node    *brokertest.Node
	pg      *pgtest.Cluster
	dbURL   string
	cfgPath string
	logPath string
	col     *collectProc
}

func (w *collectWorld) startCollect() {
	w.t.Helper()
	w.col = startCollect(w.t, w.cfgPath, w.logPath)
}

func (w *collectWorld) count(sql string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, w.dbURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int64
	err = conn.QueryRow(ctx, sql).Scan(&n)
	return n, err
}

// waitRows waits for exactly clicks and actions rows, one per id.
func (w *collectWorld) waitRows(clicks, actions int64, timeout time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err1 := w.count("SELECT count(*) FROM clicks")
		a, err2 := w.count("SELECT count(*) FROM actions")
		if err1 == nil && err2 == nil {
			if c > clicks || a > actions {
				w.t.Fatalf("%d clicks and %d actions in PostgreSQL, more than the %d and %d sent", c, a, clicks, actions)
			}
			if c == clicks && a == actions {
				break
			}
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("after %v: %d clicks, %d actions (%v %v), want %d and %d; collector log:\n%s",
				timeout, c, a, err1, err2, clicks, actions, w.col.logTail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for sql, want := range map[string]int64{
		"SELECT count(DISTINCT click_id) FROM clicks":   clicks,
		"SELECT count(DISTINCT action_id) FROM actions": actions,
	} {
		if got, err := w.count(sql); err != nil || got != want {
			w.t.Fatalf("%s = %d (%v), want %d", sql, got, err, want)
		}
	}
}

// clickIDs GETs /r/tv-sale n times on the edge and returns the answered
// click ids.
func clickIDs(t testing.TB, httpAddr string, n int) []string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	ids := make([]string, 0, n)
	for range n {
		resp, err := client.Get("http://" + httpAddr + "/r/" + demoLink + "?subid=collect")
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		resp.Body.Close()
		id, ok := clickIDFromLocation(resp)
		if !ok {
			t.Fatalf("GET /r/%s: %d without a click id", demoLink, resp.StatusCode)
		}
		ids = append(ids, id.String())
	}
	return ids
}

// actionMessage is a postback's message as DESIGN "Postbacks" specifies
// it, built here without the postback code.
func actionMessage(clickID, adv, orderID, action, status string) (id string, body []byte) {
	h := sha256.Sum256([]byte(adv + "\n" + orderID + "\n" + action + "\n" + status))
	id = hex.EncodeToString(h[:16])
	var raw [16]byte
	hex.Decode(raw[:], []byte(clickID))
	ms := int64(raw[0])<<40 | int64(raw[1])<<32 | int64(raw[2])<<24 | int64(raw[3])<<16 | int64(raw[4])<<8 | int64(raw[5])
	body, _ = json.Marshal(map[string]any{
		"v": 1, "action_id": id, "click_id": clickID,
		"click_ts": time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z"),
		"adv":      adv, "action": action, "order_id": orderID, "status": status,
		"amount": "10.00", "currency": "EUR", "ts": time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
		"region": edgeRegion, "node": "e2e-postback",
	})
	return id, body
}

// publish sends messages to exchange with confirms.
func publish(t testing.TB, url, exchange, key string, msgs map[string][]byte, extra ...[]byte) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	var dcs []*amqp.DeferredConfirmation
	send := func(id string, body []byte) {
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), exchange, key, true, false, amqp.Publishing{
			ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: id, Body: body,
			Headers: amqp.Table{"region": edgeRegion, "node": "e2e-postback", "schema": int32(1)},
		})
		if err != nil {
			t.Fatal(err)
		}
		dcs = append(dcs, dc)
	}
	for id, body := range msgs {
		send(id, body)
	}
	for _, body := range extra {
		send("poison", body)
	}
	for _, dc := range dcs {
		if ok, err := dc.WaitContext(context.Background()); !ok || err != nil {
			t.Fatalf("publish not confirmed: %v %v", ok, err)
		}
	}
}

// TestCollector is the collector stage: clicks through a real edge and
// postback messages in, exact rows out; the edge's outbox replayed twice,
// a kill -9 of the collector and a PostgreSQL crash under load, none of
// which adds or loses a row; poison dead-lettered with its reason.
func TestCollector(t *testing.T) {
	w := &collectWorld{t: t, dir: t.TempDir()}
	w.logPath = filepath.Join(w.dir, "collect.log")
	if d := os.Getenv("E2E_LOGDIR"); d != "" {
		os.MkdirAll(d, 0o755)
		w.logPath = filepath.Join(d, "TestCollector.collect.log")
		os.Remove(w.logPath)
	}
	w.node = brokertest.StartNode(t, nil)
	w.pg = pgtest.Start(t, nil)
	w.dbURL = w.pg.CreateDatabase("clickedge")
	w.cfgPath = filepath.Join(w.dir, "collect.yaml")
	cfg := fmt.Sprintf("node:\n  id: e2e-collector\nforwarder:\n  amqp_urls: [%q]\n  heartbeat: 2s\n  dial_timeout: 2s\n"+
		"  reconnect_min: 100ms\n  reconnect_max: 1s\ncollector:\n  database_url: %q\n  metrics_listen: \"127.0.0.1:0\"\n"+
		"  batch_size: 500\n  batch_interval: 50ms\n", w.node.URL(), w.dbURL)
	if err := os.WriteFile(w.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	w.startCollect()

	ecfg := edgeConfig{DataDir: filepath.Join(w.dir, "edge-data"), AMQPURL: w.node.URL(), Retention: "1h"}
	edge := startEdge(t, writeConfig(t, w.dir, ecfg), filepath.Join(w.dir, "edge.log"))

	// Phase 1: clicks through the edge, postbacks, poison.
	ids := clickIDs(t, edge.HTTP, 1000)
	actions := map[string][]byte{}
	for i, id := range ids[:100] {
		order := fmt.Sprintf("order-%d", i)
		aid, body := actionMessage(id, "acme", order, "sale", "pending")
		actions[aid] = body
		if i%2 == 0 { // half of them approved later: a second action_id
			aid, body = actionMessage(id, "acme", order, "sale", "approved")
			actions[aid] = body
		}
	}
	publish(t, w.node.URL(), "actions", "action."+edgeRegion, actions, []byte(`{"v":9,"action_id":"x"}`))
	publish(t, w.node.URL(), "clicks", "click."+edgeRegion, nil, []byte("not json"), []byte(`{"v":1,"click_id":"nope"}`))
	w.waitRows(1000, int64(len(actions)), 2*time.Minute)
	// Actions joined to their clicks; latest status per order.
	if n, err := w.count(`SELECT count(*) FROM action_clicks WHERE link = 'tv-sale' AND node = 'e2e-edge' AND click_region = 'e2e'`); err != nil || n != int64(len(actions)) {
		t.Fatalf("actions joined to their click = %d (%v), want %d", n, err, len(actions))
	}
	if n, err := w.count(`SELECT count(*) FROM action_clicks WHERE is_latest AND latest_status = 'approved'`); err != nil || n != 50 {
		t.Fatalf("orders whose latest status is approved = %d (%v), want 50", n, err)
	}

	// Phase 2: the edge's outbox replayed twice changes nothing.
	base, err := w.col.metrics()
	if err != nil {
		t.Fatal(err)
	}
	edge.terminate(t)
	for i := range 2 {
		code, out := runTool(t, 2*time.Minute, "outbox", "replay", "-data", ecfg.DataDir, "-amqp", w.node.URL(),
			"-from", "-1h", "-restart", "-progress", "none")
		if code != 0 {
			t.Fatalf("replay #%d: exit %d:\n%s", i+1, code, out)
		}
	}
	publish(t, w.node.URL(), "actions", "action."+edgeRegion, actions) // the postbacks again
	const clickDups, actionDups = `clickedge_collect_duplicates_total{table="clicks"}`, `clickedge_collect_duplicates_total{table="actions"}`
	waitMetric(t, w.col, clickDups, base[clickDups]+2000, time.Minute)
	waitMetric(t, w.col, actionDups, base[actionDups]+float64(len(actions)), time.Minute)
	w.waitRows(1000, int64(len(actions)), time.Minute)

	// Phase 3: under load, kill -9 the collector and crash PostgreSQL.
	edge = startEdge(t, writeConfig(t, w.dir, ecfg), filepath.Join(w.dir, "edge.log"))
	load := newDriver(500)
	load.start()
	load.point(edge.HTTP)
	waitAnswered(t, load, 1000)
	w.col.kill()
	waitAnswered(t, load, 2000)
	w.startCollect()
	waitAnswered(t, load, 3000)
	w.pg.Crash()
	waitAnswered(t, load, 4000)
	waitMetricAtLeast(t, w.col, "clickedge_collect_write_errors_total", 1, time.Minute)
	w.pg.Restart()
	waitAnswered(t, load, 5000)
	load.halt()
	// Every answered click delivered to the broker before the edge stops,
	// so that none waits in its outbox.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		m, err := edge.metrics()
		if err == nil && m["clickedge_outbox_pending_records"] == 0 && m["clickedge_outbox_spill_records"] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge still has pending clicks after 2m: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, st, _ := edge.terminate(t); code != 0 || st.Pending != 0 {
		t.Fatalf("edge stop: exit %d, pending %d", code, st.Pending)
	}
	answered := int64(load.answeredCount())
	// Every answered click, once; unanswered ones (none expected) could
	// add at most their count.
	w.waitRows(1000+answered, int64(len(actions)), 3*time.Minute)

	// Poison: the three messages, each with its reason, in collector.dead.
	dead := map[string]int{}
	conn, err := amqp.Dial(w.node.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, _ := conn.Channel()
	for {
		d, ok, err := ch.Get("collector.dead", true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		r, _ := d.Headers["x-clickedge-reason"].(string)
		dead[r]++
	}
	want := map[string]int{"unknown_version": 1, "not_json": 1, "malformed_id": 1}
	if fmt.Sprint(dead) != fmt.Sprint(want) {
		t.Errorf("dead-lettered by reason = %v, want %v", dead, want)
	}
	t.Logf("collector stage: %d clicks answered under faults, %d actions, dead %v", 1000+answered, len(actions), dead)
}

func waitAnswered(t *testing.T, d *driver, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for d.answeredCount() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d clicks answered after 2m, want %d", d.answeredCount(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitMetric(t *testing.T, c *collectProc, series string, want float64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var got float64
	for {
		m, err := c.metrics()
		if err == nil {
			got = m[series]
			if got == want {
				return
			}
			if got > want {
				t.Fatalf("%s = %v, more than %v", series, got, want)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after %v, want %v", series, got, timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitMetricAtLeast(t *testing.T, c *collectProc, series string, want float64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m, err := c.metrics(); err == nil && m[series] >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s below %v after %v", series, want, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
