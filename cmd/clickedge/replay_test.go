package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/clickedge/clickedge/internal/brokertest"
	"github.com/clickedge/clickedge/outbox"
)

// The replay tests publish to the shared broker, each to an exchange of its
// own, with a temporary queue bound to it.

func rpTestExchange(t *testing.T) string {
	b := make([]byte, 4)
	rand.Read(b)
	return "replaytest." + hex.EncodeToString(b)
}

func rpDeleteExchange(t *testing.T, url, name string) {
	t.Cleanup(func() {
		conn, err := amqp.Dial(url)
		if err != nil {
			return
		}
		defer conn.Close()
		if ch, err := conn.Channel(); err == nil {
			ch.ExchangeDelete(name, false, false)
		}
	})
}

// sentinel publishes one more message behind the replayed ones and waits
// until the consumer has it: then every earlier message has arrived.
func rpSentinel(t *testing.T, url, exchange string, c *brokertest.Consumer) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, _ := conn.Channel()
	ch.Confirm(false)
	id := "sentinel-" + hex.EncodeToString([]byte(time.Now().String()))[:16]
	dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), exchange, "click.test", true, false, amqp.Publishing{MessageId: id})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := dc.WaitContext(context.Background()); !ok || err != nil {
		t.Fatalf("sentinel not confirmed: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for c.Seen(id) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("sentinel did not arrive")
		}
		c.WaitCount(c.Count()+1, 200*time.Millisecond)
	}
}

// checkDelivered fails unless every record's message arrived, as it was,
// at least once, and returns how many arrived more than once.
func rpCheckDelivered(t *testing.T, c *brokertest.Consumer, recs []*outbox.Record) (dups int) {
	t.Helper()
	byID := map[string]brokertest.Delivery{}
	for _, d := range c.Messages() {
		byID[d.MessageID] = d
	}
	for _, r := range recs {
		d, ok := byID[r.MessageID]
		if !ok {
			t.Fatalf("message %s (seq %d) never arrived", r.MessageID, r.Seq)
		}
		if !bytes.Equal(d.Body, r.Body) || d.RoutingKey != r.RoutingKey || d.ContentType != "application/json" || d.DeliveryMode != amqp.Persistent {
			t.Fatalf("message %s arrived as %+v, want body %s, routing key %s", r.MessageID, d, r.Body, r.RoutingKey)
		}
		for _, h := range r.Headers {
			if got := d.Headers[h.Key]; fmt.Sprint(got) != fmt.Sprint(h.Value) {
				t.Fatalf("message %s header %s = %v, want %v", r.MessageID, h.Key, got, h.Value)
			}
		}
		if n := c.Seen(r.MessageID); n > 1 {
			dups += n - 1
		}
	}
	return dups
}

func rpFileStats(t *testing.T, path string) outbox.Stats {
	t.Helper()
	o, err := outbox.Open(path, &outbox.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	return o.Stats()
}

func TestReplayPending(t *testing.T) {
	url := brokertest.SharedURL(t)
	ex := rpTestExchange(t)
	fx := makeOutbox(t, 500, 100, ex)
	q := brokertest.TempQueue(t, url, ex, "click.#")
	rpDeleteExchange(t, url, ex)
	c := brokertest.Consume(t, url, q)

	code, stdout, stderr := runCmd(t, nil, "outbox", "replay", "-data", fx.dir, "-amqp", url, "-window", "64", "-progress", "lines")
	if code != 0 {
		t.Fatalf("replay: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, want := range []string{"published      400", "confirmed      400", "returned       0", "result         OK"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	rpSentinel(t, url, ex, c)
	if dups := rpCheckDelivered(t, c, fx.recs[100:]); dups != 0 || c.Count() != 401 {
		t.Errorf("%d duplicates, %d deliveries; want none and 400 + the sentinel", dups, c.Count())
	}
	// Acknowledged: the node will not publish them again, a re-run has
	// nothing to do.
	if st := rpFileStats(t, fx.path); st.Pending != 0 || st.Retained != 500 {
		t.Errorf("after replay: %d pending, %d retained; want 0, 500", st.Pending, st.Retained)
	}
	code, stdout, _ = runCmd(t, nil, "outbox", "replay", "-data", fx.dir, "-amqp", url, "-progress", "none")
	if code != 0 || !strings.Contains(stdout, "published      0") {
		t.Errorf("second replay: exit %d\n%s", code, stdout)
	}
}

func TestReplayRange(t *testing.T) {
	url := brokertest.SharedURL(t)
	ex := rpTestExchange(t)
	fx := makeOutbox(t, 300, 250, ex)
	q := brokertest.TempQueue(t, url, ex, "click.#")
	rpDeleteExchange(t, url, ex)
	c := brokertest.Consume(t, url, q)

	// Seq s was appended at obT0 + (s-1) s: [06:01:40, 06:03:20) is seqs
	// 101..200, of link tv-sale the odd ones.
	args := []string{"outbox", "replay", "-data", fx.dir, "-amqp", url, "-from", "2025-11-27T06:01:40Z", "-to", "2025-11-27T06:03:20Z",
		"-link", "tv-sale", "-rate", "2000", "-progress", "none"}
	code, stdout, stderr := runCmd(t, nil, args...)
	if code != 0 || !strings.Contains(stdout, "published      50") || !strings.Contains(stdout, "confirmed      50") {
		t.Fatalf("range replay: exit %d\n%s%s", code, stdout, stderr)
	}
	rpSentinel(t, url, ex, c)
	var want []*outbox.Record
	for i := 100; i < 200; i += 2 {
		want = append(want, fx.recs[i])
	}
	if dups := rpCheckDelivered(t, c, want); dups != 0 || c.Count() != 51 {
		t.Errorf("%d duplicates, %d deliveries; want none and 50 + the sentinel", dups, c.Count())
	}
	// A complete replay leaves no checkpoint; the outbox is unchanged.
	if m, _ := filepath.Glob(filepath.Join(fx.dir, "replay-*")); len(m) != 0 {
		t.Errorf("checkpoint left after a complete replay: %v", m)
	}
	if st := rpFileStats(t, fx.path); st.Pending != 50 || st.Retained != 250 {
		t.Errorf("after a range replay: %d pending, %d retained; want 50, 250", st.Pending, st.Retained)
	}
}

// Returned (unroutable) records are reported and stay pending.
func TestReplayReturned(t *testing.T) {
	url := brokertest.SharedURL(t)
	ex := rpTestExchange(t) // no queue bound
	rpDeleteExchange(t, url, ex)
	fx := makeOutbox(t, 40, 10, ex)
	code, stdout, stderr := runCmd(t, nil, "outbox", "replay", "-data", fx.dir, "-amqp", url, "-progress", "none")
	if code != 1 {
		t.Fatalf("replay to an exchange without queues: exit %d, want 1\n%s%s", code, stdout, stderr)
	}
	for _, want := range []string{"published      30", "confirmed      0", "returned       30 (unroutable: 312 NO_ROUTE", "INCOMPLETE"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "30 records were not confirmed") {
		t.Errorf("stderr = %q", stderr)
	}
	if st := rpFileStats(t, fx.path); st.Pending != 30 {
		t.Errorf("after returns: %d pending, want all 30 still pending", st.Pending)
	}
}

func TestReplayUnreachableBroker(t *testing.T) {
	fx := makeOutbox(t, 5, 0, "clicks")
	// A closed port: refused at once.
	start := time.Now()
	code, _, stderr := runCmd(t, nil, "outbox", "replay", "-data", fx.dir, "-amqp", "amqp://guest:secret@127.0.0.1:1/", "-progress", "none")
	if code != 1 || !strings.Contains(stderr, "cannot reach the broker") || strings.Contains(stderr, "secret") {
		t.Errorf("closed port: exit %d, stderr %q; want 1, a clear error, no password", code, stderr)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("closed port took %v", d)
	}
	// A listener that never speaks AMQP: given up after the dial timeout.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start = time.Now()
	code, _, stderr = runCmd(t, nil, "outbox", "replay", "-data", fx.dir, "-amqp", "amqp://guest:guest@"+ln.Addr().String()+"/",
		"-dial-timeout", "300ms", "-progress", "none")
	if code != 1 || !strings.Contains(stderr, "cannot reach the broker") {
		t.Errorf("silent broker: exit %d, stderr %q", code, stderr)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("silent broker took %v, want about the 300ms dial timeout", d)
	}
	if st := rpFileStats(t, fx.path); st.Pending != 5 {
		t.Errorf("%d pending after a failed replay, want 5", st.Pending)
	}
}

// TestReplayChildProcess is the replay that the kill -9 tests run as a
// child process and kill; on its own it does nothing.
func TestReplayChildProcess(t *testing.T) {
	args := os.Getenv("CLICKEDGE_REPLAY_CHILD_ARGS")
	if args == "" {
		t.Skip("helper process for the kill -9 tests")
	}
	os.Exit(run(strings.Split(args, "\x1f"), os.Stdout, os.Stderr, nil))
}

// killReplay starts the replay as a child process and kills it with
// SIGKILL once the consumer has at least atLeast messages.
func rpKillReplay(t *testing.T, c *brokertest.Consumer, atLeast int, args ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestReplayChildProcess$")
	cmd.Env = append(os.Environ(), "CLICKEDGE_REPLAY_CHILD_ARGS="+strings.Join(args, "\x1f"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitCount(atLeast, 60*time.Second); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("%v; child output:\n%s", err, out.String())
	}
	cmd.Process.Signal(syscall.SIGKILL)
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("the replay ended before it was killed (%v):\n%s", err, out.String())
	}
	t.Logf("killed the replay after %d deliveries", c.Count())
}

func TestReplayKilledAndResumed(t *testing.T) {
	const n, window = 6000, 256
	for _, mode := range []string{"pending", "range"} {
		t.Run(mode, func(t *testing.T) {
			url := brokertest.SharedURL(t)
			ex := rpTestExchange(t)
			acked := 0
			if mode == "range" {
				acked = n
			}
			fx := makeOutbox(t, n, acked, ex)
			q := brokertest.TempQueue(t, url, ex, "click.#")
			rpDeleteExchange(t, url, ex)
			c := brokertest.Consume(t, url, q)
			args := []string{"outbox", "replay", "-data", fx.dir, "-amqp", url, "-window", fmt.Sprint(window), "-progress", "none"}
			if mode == "range" {
				args = append(args, "-from", "2025-11-27T00:00:00Z", "-to", "2025-11-28T00:00:00Z")
			}

			rpKillReplay(t, c, n/3, append(args, "-rate", "3000")...)
			if mode == "range" {
				if m, _ := filepath.Glob(filepath.Join(fx.dir, "replay-*.checkpoint")); len(m) != 1 {
					t.Fatalf("checkpoint files after the kill: %v", m)
				}
			}
			code, stdout, stderr := runCmd(t, nil, args...)
			if code != 0 {
				t.Fatalf("resumed replay: exit %d\n%s%s", code, stdout, stderr)
			}
			if mode == "range" && !strings.Contains(stdout, "skipped        ") {
				t.Errorf("resumed range replay summary:\n%s", stdout)
			}
			rpSentinel(t, url, ex, c)
			dups := rpCheckDelivered(t, c, fx.recs)
			t.Logf("%d messages delivered, %d duplicates (window %d)", c.Count()-1, dups, window)
			if dups > window {
				t.Errorf("%d duplicates after a kill -9, want at most one window (%d)", dups, window)
			}
			if mode == "pending" {
				if st := rpFileStats(t, fx.path); st.Pending != 0 {
					t.Errorf("%d records still pending", st.Pending)
				}
			}
		})
	}
}
