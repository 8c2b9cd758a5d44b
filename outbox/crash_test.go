package outbox_test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/outboxtest"
)

// The crash test runs a child process (this test binary) that appends in
// Sync mode from several goroutines and acknowledges some records, printing
// each record's id once Append returned. The parent kills it with SIGKILL at
// a random moment, reopens the file, and checks that every record the child
// acknowledged is there exactly once, and in order per goroutine.
//
// OUTBOX_CRASH_CYCLES sets the number of cycles (default 50).

const (
	crashChildEnv = "OUTBOX_CRASH_CHILD"
	crashLogEnv   = "OUTBOX_CRASH_LOG"
	// crashGatherEnv paces the child's appends and lets moves gather.
	crashGatherEnv = "OUTBOX_CRASH_GATHER"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path, os.Getenv("OUTBOX_CRASH_PREFIX"))
		return
	}
	if path := os.Getenv(ackCrashChildEnv); path != "" {
		ackCrashChild(path)
		return
	}
	os.Exit(m.Run())
}

// crashChild appends until killed.
func crashChild(path, prefix string) {
	opts := &outbox.Options{LockTimeout: 10 * time.Second}
	if os.Getenv(crashGatherEnv) != "" {
		// Moves that gather for long (Options.MoveDelay) at a low rate:
		// at the kill, the last second's records are in the log only.
		opts.Log, opts.MoveDelay = true, time.Second
	} else if os.Getenv(crashLogEnv) != "" {
		// A small log, reused often, and moves into the tree that lag
		// behind: at the kill the log holds records the tree does not.
		opts.Log, opts.LogBytes = true, 256<<10
		outbox.SetBeforeMove(opts, func() error {
			time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
			return nil
		})
	}
	o, err := outbox.Open(path, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(3)
	}
	out := make(chan string, 4096)
	const writers = 8
	for g := range writers {
		go func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("%s-%d-%d", prefix, g, i)
				if err := o.Append(outboxtest.Record(id)); err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(4)
				}
				out <- id
				if opts.MoveDelay > 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	// A reader acknowledges what it reads, like a forwarder, so that acks
	// and moves to retained are in flight at the kill too.
	go func() {
		var after uint64
		for {
			recs, err := o.ReadPending(nil, after, 100, 0)
			if err != nil {
				fmt.Fprintln(os.Stderr, "read:", err)
				os.Exit(5)
			}
			for _, r := range recs {
				if rand.IntN(2) == 0 {
					o.Ack(r.Seq)
				}
				after = r.Seq
			}
			time.Sleep(time.Millisecond)
		}
	}()
	w := bufio.NewWriter(os.Stdout)
	for id := range out {
		w.WriteString(id)
		w.WriteByte('\n')
		if len(out) == 0 {
			w.Flush()
		}
	}
}

func TestCrashKill9KeepsEveryAcknowledgedRecord(t *testing.T) {
	var maxFile int64
	total := crashCycles(t, nil, nil, func(o *outbox.Outbox) {
		maxFile = max(maxFile, o.Stats().FileSize)
	})
	t.Logf("%d acknowledged appends survived kill -9, file up to %d bytes", total, maxFile)
}

// Issue 17: the same with the log before the tree (Options.Log): appends
// are answered after the log's fdatasync, the moves into the tree lag, and
// the log is reused every few hundred records. Every answered record is in
// the file after the kill, once, in order per writer; and the kills did
// find records in the log only (moved by Open).
func TestCrashKill9WithRecordsOnlyInTheLog(t *testing.T) {
	replayed := 0
	total := crashCycles(t, &outbox.Options{Log: true, LogBytes: 256 << 10}, []string{crashLogEnv + "=1"}, func(o *outbox.Outbox) {
		replayed += o.Stats().LogReplayed
	})
	t.Logf("%d acknowledged appends survived kill -9, %d of them moved from the log by Open", total, replayed)
	if replayed == 0 {
		t.Fatal("no kill found records only in the log: the test proved nothing about it")
	}
}

// The same while the writer lets logged batches gather before it moves
// them (Options.MoveDelay): paced appends, a long move delay, so that at
// most kills the records answered last are in the log only. Open moves
// them; none is lost.
func TestCrashKill9WhileMovesGather(t *testing.T) {
	replayed, kills := 0, 0
	total := crashCycles(t, &outbox.Options{Log: true}, []string{crashGatherEnv + "=1"}, func(o *outbox.Outbox) {
		if n := o.Stats().LogReplayed; n > 0 {
			replayed += n
			kills++
		}
	})
	t.Logf("%d acknowledged appends survived kill -9; %d kills left %d records gathering in the log", total, kills, replayed)
	if replayed == 0 {
		t.Fatal("no kill found records gathering in the log: the test proved nothing about it")
	}
}

// crashCycles runs OUTBOX_CRASH_CYCLES (default 50) cycles: a child started
// with env appends until it is killed at a random moment, and the file,
// reopened with opts, must hold every record the child acknowledged
// (checkCrashInvariants); after sees each reopened outbox. It returns the
// count of acknowledged appends.
func crashCycles(t *testing.T, opts *outbox.Options, env []string, after func(*outbox.Outbox)) int {
	t.Helper()
	if testing.Short() {
		t.Skip("crash test runs child processes; skipped with -short")
	}
	cycles := 50
	if s := os.Getenv("OUTBOX_CRASH_CYCLES"); s != "" {
		cycles, _ = strconv.Atoi(s)
	}
	path := filepath.Join(t.TempDir(), "outbox.db")
	acked := map[string]bool{}
	total := 0
	for cycle := range cycles {
		lines := runAndKill(t, path, fmt.Sprintf("c%d", cycle), time.Duration(10+rand.IntN(190))*time.Millisecond, env...)
		for _, id := range lines {
			acked[id] = true
		}
		total += len(lines)
		o, err := outbox.Open(path, opts)
		if err != nil {
			t.Fatalf("cycle %d: reopen after kill -9: %v", cycle, err)
		}
		checkCrashInvariants(t, cycle, o, acked)
		after(o)
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if total == 0 {
		t.Fatal("the child never acknowledged a record: the test proved nothing")
	}
	return total
}

// runAndKill runs a child and kills it after d, returning the ids it
// acknowledged.
func runAndKill(t *testing.T, path, prefix string, d time.Duration, env ...string) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path, "OUTBOX_CRASH_PREFIX="+prefix)
	cmd.Env = append(cmd.Env, env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
	}()
	time.Sleep(d)
	cmd.Process.Signal(syscall.SIGKILL)
	wg.Wait()
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("child exited on its own (%v): %s", err, stderr.String())
	}
	// A line cut by the kill is not an acknowledgement.
	if n := len(lines); n > 0 && strings.Count(lines[n-1], "-") != 2 {
		lines = lines[:n-1]
	}
	return lines
}

func checkCrashInvariants(t *testing.T, cycle int, o *outbox.Outbox, acked map[string]bool) {
	t.Helper()
	seen := map[string]uint64{}
	add := func(recs []outbox.Record) {
		for _, r := range recs {
			if prev, dup := seen[r.MessageID]; dup {
				t.Fatalf("cycle %d: %s stored twice (seq %d and %d)", cycle, r.MessageID, prev, r.Seq)
			}
			seen[r.MessageID] = r.Seq
		}
	}
	add(outboxtest.ReadAll(t, o))
	var after uint64
	for {
		recs, err := o.ReadRetained(nil, after, 1000, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		add(recs)
		after = recs[len(recs)-1].Seq
	}
	for id := range acked {
		if _, ok := seen[id]; !ok {
			t.Fatalf("cycle %d: acknowledged record %s lost after kill -9", cycle, id)
		}
	}
	// Per writer goroutine, each record's seq is above its predecessor's.
	type pos struct {
		g string
		i int
	}
	seqs := map[pos]uint64{}
	for id, seq := range seen {
		p := strings.LastIndexByte(id, '-')
		seqs[pos{id[:p], mustAtoi(id[p+1:])}] = seq
	}
	for p, seq := range seqs {
		if prev, ok := seqs[pos{p.g, p.i - 1}]; ok && prev >= seq {
			t.Fatalf("cycle %d: %s-%d has seq %d, not after its predecessor's %d", cycle, p.g, p.i, seq, prev)
		}
	}
}

func mustAtoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}
