package cluster_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	. "github.com/clickedge/clickedge/cluster"
	"github.com/clickedge/clickedge/cluster/clustertest"
	"github.com/clickedge/clickedge/outbox"
)

// fastMemberlist is the default configuration with LAN timings cut by ~5x,
// so that failure detection takes about a second on loopback. The default
// timings are proven separately (TestDefaultConfigSeesKilledMemberDead).
func fastMemberlist() *memberlist.Config {
	c := DefaultMemberlistConfig()
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 100 * time.Millisecond
	c.GossipInterval = 50 * time.Millisecond
	c.PushPullInterval = 2 * time.Second
	c.TCPTimeout = time.Second
	c.DeadNodeReclaimTime = 200 * time.Millisecond
	c.GossipToTheDeadTime = 2 * time.Second
	return c
}

// nodeOpts configure one test node.
type nodeOpts struct {
	name, region string
	bind         string   // default 127.0.0.1:0
	join         []string // seeds
	keyFile      string   // keyring file; "" = no encryption
	catalog      *clustertest.Catalog
	outbox       *outbox.Outbox
	token        string
	memberlist   *memberlist.Config // default fastMemberlist()
	live         func() Live
	wrap         func(http.Handler) http.Handler // around the admin handler
	now          func() time.Time
}

// testNode is a Cluster with its admin listener.
type testNode struct {
	*Cluster
	admin string
	srv   *http.Server
	logs  *logBuffer
}

// logBuffer keeps a node's log lines for failure reports.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func startNode(t *testing.T, o nodeOpts) *testNode {
	t.Helper()
	n, err := tryStartNode(t, o)
	if err != nil {
		t.Fatalf("start %s: %v", o.name, err)
	}
	return n
}

func tryStartNode(t *testing.T, o nodeOpts) (*testNode, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	cfg := DefaultConfig()
	cfg.Name, cfg.Region = o.name, o.region
	if cfg.Region == "" {
		cfg.Region = "eu"
	}
	cfg.Bind = o.bind
	if cfg.Bind == "" {
		cfg.Bind = "127.0.0.1:0"
	}
	cfg.Join = o.join
	cfg.Memberlist = o.memberlist
	if cfg.Memberlist == nil {
		cfg.Memberlist = fastMemberlist()
	}
	cfg.LiveInterval = 200 * time.Millisecond
	cfg.AntiEntropyInterval = 200 * time.Millisecond
	cfg.PageSize = 10
	cfg.FullPullAfter = 500 * time.Millisecond
	cfg.JoinMin, cfg.JoinMax, cfg.RejoinInterval = 50*time.Millisecond, 500*time.Millisecond, time.Second
	cfg.Meta = Meta{Region: cfg.Region, Roles: []string{"edge"}, Version: "test", Public: "127.0.0.1:1", Admin: ln.Addr().String()}
	cfg.Live = o.live
	if o.catalog != nil {
		cfg.Catalog = o.catalog
	}
	cfg.Outbox = o.outbox
	cfg.Now = o.now
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", o.name)
	if o.keyFile != "" {
		kr, err := LoadKeyring(o.keyFile)
		if err != nil {
			ln.Close()
			return nil, err
		}
		cfg.Keyring = kr
	}
	c, err := Create(cfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	var h http.Handler = c.Handler(o.token)
	if o.wrap != nil {
		h = o.wrap(h)
	}
	n := &testNode{Cluster: c, admin: ln.Addr().String(), srv: &http.Server{Handler: h}, logs: logs}
	go n.srv.Serve(ln)
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			t.Logf("log of %s:\n%s", o.name, tail(logs.String(), 40))
		}
	})
	return n, nil
}

// kill stops the node without leaving, as SIGKILL would.
func (n *testNode) kill() {
	n.srv.Close()
	n.Shutdown()
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	return strings.Join(l[max(0, len(l)-lines):], "\n")
}

// waitFor polls cond every 20ms until it holds or d passes; it returns how
// long it took, or fails the test with what(), the last state seen.
func waitFor(t *testing.T, d time.Duration, what func() string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("not within %v: %s", d, what())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stateOf returns the state of name in n's view, "" if unlisted.
func stateOf(n *testNode, name string) string {
	for _, m := range n.Members() {
		if m.Name == name {
			return m.State
		}
	}
	return ""
}

func view(n *testNode) string {
	b, _ := json.Marshal(n.Members())
	return n.Name() + " sees " + string(b)
}

// allAlive waits until every node sees every other alive.
func allAlive(t *testing.T, d time.Duration, nodes ...*testNode) {
	t.Helper()
	waitFor(t, d, func() string {
		var s []string
		for _, n := range nodes {
			s = append(s, view(n))
		}
		return strings.Join(s, "\n")
	}, func() bool {
		for _, a := range nodes {
			for _, b := range nodes {
				if stateOf(a, b.Name()) != StateAlive {
					return false
				}
			}
		}
		return true
	})
}

// newKey returns a random-looking but deterministic base64 key.
func newKey(seed byte, size int) string {
	k := make([]byte, size)
	for i := range k {
		k[i] = seed + byte(i)
	}
	return base64.StdEncoding.EncodeToString(k)
}

// writeKeyFile writes keys as a keyring file in dir.
func writeKeyFile(t *testing.T, dir, name string, keys ...string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	b, _ := json.Marshal(keys)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// manualClock is a clock tests move by hand.
type manualClock struct{ ns atomic.Int64 }

func newManualClock() *manualClock {
	c := &manualClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *manualClock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *manualClock) Add(d time.Duration) { c.ns.Add(int64(d)) }
