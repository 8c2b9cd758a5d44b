package brokertest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestClaimPorts(t *testing.T) {
	a, err := claimPorts()
	if err != nil {
		t.Fatal(err)
	}
	defer a.release()
	b, err := claimPorts()
	if err != nil {
		t.Fatal(err)
	}
	defer b.release()
	lo, hi := portRange()
	for _, p := range []*portPair{a, b} {
		if p.amqp%2 != 0 || p.dist != p.amqp+1 || p.amqp < lo || p.dist >= hi {
			t.Errorf("claimed pair %d/%d, want an even port and the next one in [%d, %d)", p.amqp, p.dist, lo, hi)
		}
	}
	if a.amqp == b.amqp {
		t.Fatalf("two claims got the same pair %d", a.amqp)
	}
	if _, err := claimPair(a.amqp); err == nil {
		t.Fatalf("claimPair(%d) succeeded while claimed", a.amqp)
	}
	a.release()
	a.release() // twice is fine
	again, err := claimPair(a.amqp)
	if err != nil {
		t.Fatalf("claimPair(%d) after release: %v", a.amqp, err)
	}
	again.release()

	// A port someone listens on is never handed out. harden #9: the case
	// always runs: the first even port of the range this test can listen
	// on (other tests' brokers may hold some) is the busy one.
	var ln net.Listener
	busy := 0
	for p := b.dist + 1; p+1 < hi && ln == nil; p += 2 {
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			ln, busy = l, p
		}
	}
	if ln == nil {
		t.Fatalf("no even port in [%d, %d) to listen on for the busy-port case", b.dist+1, hi)
	}
	defer ln.Close()
	if p, err := claimPair(busy); err == nil {
		p.release()
		t.Fatalf("claimPair(%d) succeeded on a busy port", busy)
	}
}

func TestTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	tests := []struct {
		body string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc", 5, "a\nb\nc\n"},
		{"", 3, "\n"},
	}
	for _, tt := range tests {
		if err := os.WriteFile(path, []byte(tt.body), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := tail(path, tt.n); got != tt.want {
			t.Errorf("tail(%q, %d) = %q, want %q", tt.body, tt.n, got, tt.want)
		}
	}
	if got := tail(filepath.Join(t.TempDir(), "missing"), 3); !strings.Contains(got, "no such file") {
		t.Errorf("tail(missing) = %q, want the error", got)
	}
}

func TestProcStat(t *testing.T) {
	comm, state := procStat(os.Getpid())
	if comm == "" || state == 0 || state == 'Z' {
		t.Fatalf("procStat(self) = %q, %q; want a live process", comm, state)
	}
	if !alive(os.Getpid()) {
		t.Fatal("alive(self) = false")
	}
	if _, state := procStat(-1); state != 0 {
		t.Fatalf("procStat(-1) state = %q, want 0", state)
	}
}

// TestSweepStale leaves a node directory behind for a dead test process
// with a process of that "node" still running, as if the parent-death
// signal had been lost, and checks that the sweep kills it and removes the
// directory, and leaves a live owner's directory alone.
func TestSweepStale(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	staleDir, err := os.MkdirTemp(os.TempDir(), fmt.Sprintf("clickedge-rabbit-%d-", dead.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(staleDir)
	liveDir, err := os.MkdirTemp(os.TempDir(), fmt.Sprintf("clickedge-rabbit-%d-", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(liveDir)

	orphan := exec.Command("sleep", "300")
	orphan.Env = append(os.Environ(), markerEnv+"="+staleDir)
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- orphan.Wait() }()
	defer orphan.Process.Kill()
	if got := nodeProcs(staleDir); len(got) != 1 || got[0] != orphan.Process.Pid {
		t.Fatalf("nodeProcs(stale) = %v, want [%d]", got, orphan.Process.Pid)
	}
	if got := nodeProcs(liveDir); len(got) != 0 {
		t.Fatalf("nodeProcs(live) = %v, want none", got)
	}

	sweepStale()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the stale node's process survived the sweep")
	}
	if _, err := os.Stat(staleDir); !os.IsNotExist(err) {
		t.Errorf("stale directory after sweep: %v, want it removed", err)
	}
	if _, err := os.Stat(liveDir); err != nil {
		t.Errorf("live owner's directory after sweep: %v, want it kept", err)
	}
}
