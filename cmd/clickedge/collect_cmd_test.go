package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/clickedge/clickedge/edge/clickid"
	"github.com/clickedge/clickedge/internal/brokertest"
	"github.com/clickedge/clickedge/internal/pgtest"
)

func TestCollectorConfigValidation(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"queue type", "collector:\n  queue_type: stream\n", "collector.queue_type: must be quorum or classic"},
		{"batch size", "collector:\n  batch_size: 0\n", "collector.batch_size: must be between 1 and 50000"},
		{"batch interval", "collector:\n  batch_interval: 0\n", "collector.batch_interval: must be > 0"},
		{"writers", "collector:\n  writers: 0\n", "collector.writers: must be between 1 and 16"},
		{"metrics listen", "collector:\n  metrics_listen: nope\n", "collector.metrics_listen: must be host:port"},
		{"amqp url", "collector:\n  amqp_urls: [\"http://x/\"]\n", "collector.amqp_urls[0]: scheme must be amqp or amqps"},
		{"database url", "collector:\n  database_url: \"postgres://u:hunter2@db:notaport/x\"\n", "collector.database_url: invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadYAML(t, tt.yaml)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadConfig(%q) = %v, want an error containing %q", tt.yaml, err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error %q leaks the password", err)
			}
		})
	}
}

func TestCollectorConfigRedacted(t *testing.T) {
	for _, dsn := range []string{
		"postgres://clickedge:hunter2@db:5432/clickedge?sslmode=disable",
		"host=db user=clickedge password=hunter2 dbname=clickedge",
		"host=db password='hunter2 x' dbname=clickedge",
	} {
		c := mustLoad(t, "collector:\n  amqp_urls: [\"amqp://u:hunter2@h/\"]\n", "CLICKEDGE_COLLECTOR_DATABASE_URL="+dsn)
		if c.Collector.DatabaseURL != dsn {
			t.Fatalf("DatabaseURL = %q, want %q", c.Collector.DatabaseURL, dsn)
		}
		for _, s := range []string{c.String(), c.Redacted().Collector.DatabaseURL, strings.Join(c.Redacted().Collector.AMQPURLs, ",")} {
			if strings.Contains(s, "hunter2") {
				t.Errorf("redacted output leaks the password: %s", s)
			}
		}
		if c.Collector.DatabaseURL != dsn {
			t.Errorf("Redacted changed the original")
		}
	}
}

func TestCollectorAMQPURLsDefault(t *testing.T) {
	c := mustLoad(t, "forwarder:\n  amqp_urls: [\"amqp://a/\", \"amqp://b/\"]\n")
	if got := strings.Join(c.collectorAMQPURLs(), ","); got != "amqp://a/,amqp://b/" {
		t.Errorf("collector URLs = %s, want forwarder's", got)
	}
	c = mustLoad(t, "collector:\n  amqp_urls: [\"amqp://c/\"]\n")
	if got := strings.Join(c.collectorAMQPURLs(), ","); got != "amqp://c/" {
		t.Errorf("collector URLs = %s, want amqp://c/", got)
	}
}

func TestCollectNeedsDatabaseURL(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"collect"}, &stdout, &stderr, nil); code != 1 {
		t.Fatalf("collect without a database = exit %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "collector.database_url: must be set") {
		t.Errorf("stderr = %q, want it to name collector.database_url", stderr.String())
	}
	if code := run([]string{"collect", "extra"}, &stdout, &stderr, nil); code != 2 {
		t.Errorf("collect extra = exit %d, want 2", code)
	}
}

// The wired collector: a click in, its row out, and /metrics names every
// agreed metric from the start. A private broker: collect declares the
// fixed queue names, which must not appear on the shared broker.
func TestRunCollector(t *testing.T) {
	node := brokertest.StartNode(t, nil)
	pg := pgtest.Start(t, nil)
	dbURL := pg.CreateDatabase("collect_cmd")
	cfg := mustLoad(t, "collector:\n  metrics_listen: \"127.0.0.1:0\"\n  batch_interval: 10ms\n",
		"CLICKEDGE_COLLECTOR_DATABASE_URL="+dbURL, "CLICKEDGE_FORWARDER_AMQP_URLS="+node.URL())
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan int, 1)
	var logs lockedWriter
	go func() {
		done <- runCollector(ctx, cfg, newLogger(&logs, cfg.Log.SlogLevel()), &logs, func(a string) { addrc <- a })
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("runCollector = %d, want 0; logs:\n%s", code, logs.String())
		}
	}()
	addr := <-addrc

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitUntil(t, 60*time.Second, "/readyz 200", func() bool {
		code, _ := get("/readyz")
		return code == 200
	})
	_, metrics := get("/metrics")
	for _, m := range []string{
		`clickedge_collect_rows_inserted_total{table="clicks"} 0`,
		`clickedge_collect_rows_inserted_total{table="actions"} 0`,
		`clickedge_collect_duplicates_total{table="clicks"} 0`,
		`clickedge_collect_duplicates_total{table="actions"} 0`,
		`clickedge_collect_batch_duration_seconds_count 0`,
		`clickedge_collect_dead_lettered_total{reason="not_json"} 0`,
		`clickedge_collect_lag_seconds 0`,
	} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}

	conn, err := amqp.Dial(node.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, _ := conn.Channel()
	id := clickid.New().String()
	body, _ := json.Marshal(map[string]any{"v": 1, "click_id": id, "ts": time.Now().UTC().Format(time.RFC3339Nano), "link": "demo"})
	for _, b := range [][]byte{body, body, []byte("junk")} {
		if err := ch.Publish("clicks", "click.local", false, false, amqp.Publishing{MessageId: id, Body: b}); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, 30*time.Second, "the click and its duplicate counted", func() bool {
		_, m := get("/metrics")
		return strings.Contains(m, `clickedge_collect_rows_inserted_total{table="clicks"} 1`) &&
			strings.Contains(m, `clickedge_collect_duplicates_total{table="clicks"} 1`) &&
			strings.Contains(m, `clickedge_collect_dead_lettered_total{reason="not_json"} 1`)
	})
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lockedWriter collects log output from any goroutine.
type lockedWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
