package outbox_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/outboxtest"
)

// The ack crash test (issue 17: acks are delivered spans, not per-record
// moves) kills a child at the one moment that matters for the new ack
// path: after the broker confirmed records and the forwarder acknowledged
// them, before the commit that persists those acks. The child appends 200
// records, acknowledges the first 100 and waits for their commit (Sync),
// then stalls its writer, acknowledges the other 100 and says "ready"; the
// parent kills it with SIGKILL. Reopened, the outbox must hold every
// record once: the first 100 delivered (not published again), the other
// 100 pending (published again: a duplicate, never a loss).

const ackCrashChildEnv = "OUTBOX_ACKCRASH_CHILD"

const ackCrashRecords = 200

func ackCrashChild(path string) {
	stall := make(chan struct{})
	var stalled atomic.Bool
	opts := &outbox.Options{LockTimeout: 10 * time.Second, Retention: time.Hour}
	outbox.SetBeforeCommit(opts, func() error {
		if stalled.Load() {
			<-stall // never closed: the commit that would persist the acks never runs
		}
		return nil
	})
	o, err := outbox.Open(path, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(3)
	}
	for i := range ackCrashRecords {
		if err := o.Append(outboxtest.Record(fmt.Sprintf("ack-%03d", i))); err != nil {
			fmt.Fprintln(os.Stderr, "append:", err)
			os.Exit(4)
		}
	}
	o.Sync() // with Options.Log, records are read once moved
	recs, err := o.ReadPending(nil, 0, ackCrashRecords, 0)
	if err != nil || len(recs) != ackCrashRecords {
		fmt.Fprintln(os.Stderr, "read:", len(recs), err)
		os.Exit(5)
	}
	half := ackCrashRecords / 2
	for _, r := range recs[:half] {
		o.Ack(r.Seq)
	}
	if err := o.Sync(); err != nil {
		fmt.Fprintln(os.Stderr, "sync:", err)
		os.Exit(6)
	}
	// From here on no commit completes: the acks below stay unpersisted.
	stalled.Store(true)
	for _, r := range recs[half:] {
		o.Ack(r.Seq)
	}
	fmt.Println("ready")
	select {}
}

func TestAckCrashBetweenConfirmAndCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a child process; skipped with -short")
	}
	path := filepath.Join(t.TempDir(), "outbox.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), ackCrashChildEnv+"="+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- true
			}
		}
		close(ready)
	}()
	select {
	case ok := <-ready:
		if !ok {
			cmd.Wait()
			t.Fatalf("child ended before it was ready: %s", stderr.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("child not ready after 60s: %s", stderr.String())
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	if _, err := outbox.Verify(path); err != nil {
		t.Fatalf("Verify after kill -9: %v", err)
	}
	o, err := outbox.Open(path, nil)
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	defer o.Close()
	half := ackCrashRecords / 2
	pending := outboxtest.ReadAll(t, o)
	delivered := readRetained(t, o)
	ids := func(recs []outbox.Record) []string {
		var s []string
		for _, r := range recs {
			s = append(s, r.MessageID)
		}
		return s
	}
	want := func(from, to int) []string {
		var s []string
		for i := from; i < to; i++ {
			s = append(s, fmt.Sprintf("ack-%03d", i))
		}
		return s
	}
	if got, w := ids(delivered), want(0, half); fmt.Sprint(got) != fmt.Sprint(w) {
		t.Errorf("delivered after the crash = %v\nwant the acks committed before it: %v", got, w)
	}
	if got, w := ids(pending), want(half, ackCrashRecords); fmt.Sprint(got) != fmt.Sprint(w) {
		t.Errorf("pending after the crash = %v\nwant the confirmed-but-unpersisted ones, to publish again: %v", got, w)
	}
	for _, r := range delivered {
		if r.Delivered.IsZero() {
			t.Errorf("delivered record %s has no delivery time", r.MessageID)
		}
	}
	st := o.Stats()
	if st.Pending != int64(ackCrashRecords-half) || st.Retained != int64(half) {
		t.Errorf("Stats: pending %d retained %d, want %d and %d", st.Pending, st.Retained, ackCrashRecords-half, half)
	}

	// The republished ones are confirmed now; all 200 are delivered, none
	// pending, and a restart keeps it so.
	for _, r := range pending {
		o.Ack(r.Seq)
	}
	if err := o.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o, err = outbox.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(outboxtest.ReadAll(t, o)); n != 0 {
		t.Errorf("%d records pending after every ack was committed, want 0", n)
	}
	if n := len(readRetained(t, o)); n != ackCrashRecords {
		t.Errorf("%d records delivered, want %d", n, ackCrashRecords)
	}
}

// readRetained returns every delivered record kept for replay.
func readRetained(t *testing.T, o *outbox.Outbox) []outbox.Record {
	t.Helper()
	var out []outbox.Record
	var after uint64
	for {
		recs, err := o.ReadRetained(nil, after, 1000, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return out
		}
		out = append(out, recs...)
		after = recs[len(recs)-1].Seq
	}
}
