package cluster_test

import (
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/clickedge/clickedge/cluster"
)

// Three nodes join through one seed, see each other alive, and gossip
// their live state and metadata.
func TestJoinLiveStateAndMeta(t *testing.T) {
	var pending atomic.Int64
	pending.Store(7)
	live := func() Live { return Live{OutboxPending: pending.Load(), Forwarder: "disconnected"} }
	a := startNode(t, nodeOpts{name: "a", live: live})
	b := startNode(t, nodeOpts{name: "b", join: []string{a.Addr()}, live: live})
	c := startNode(t, nodeOpts{name: "c", join: []string{b.Addr()}, live: live})
	allAlive(t, 10*time.Second, a, b, c)

	pending.Store(42)
	took := waitFor(t, 2*time.Second, func() string { return view(c) }, func() bool {
		for _, m := range c.Members() {
			if m.Name == "a" {
				return m.Live.OutboxPending == 42 && m.Live.Forwarder == "disconnected" && m.AgeSeconds < 1
			}
		}
		return false
	})
	t.Logf("a's new live state seen by c after %v", took)
	for _, m := range c.Members() {
		if m.Region != "eu" || m.Version != "test" || len(m.Roles) != 1 || m.Admin == "" || m.Addr == "" {
			t.Errorf("member %+v: metadata missing", m)
		}
	}
}

// A node whose seeds are down serves alone, keeps retrying, and joins once
// a seed comes up.
func TestSeedRetriedUntilItAnswers(t *testing.T) {
	// Reserve an address for the seed, then free it.
	probe := startNode(t, nodeOpts{name: "probe"})
	seedAddr := probe.Addr()
	probe.kill()

	b := startNode(t, nodeOpts{name: "b", join: []string{seedAddr}})
	time.Sleep(300 * time.Millisecond) // b is alone and retrying
	if n := len(b.Members()); n != 1 {
		t.Fatalf("b lists %d members before the seed is up, want 1", n)
	}
	a := startNode(t, nodeOpts{name: "a", bind: seedAddr})
	allAlive(t, 10*time.Second, a, b)
	// The pool can list both while b's Join is still returning: wait for
	// the count rather than read it once.
	deadline := time.Now().Add(5 * time.Second)
	for b.Stats().Joins < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if b.Stats().Joins < 1 {
		t.Errorf("b's joins = %d, want >= 1", b.Stats().Joins)
	}
}

// A member that dies without leaving (SIGKILL) is seen dead within 15 s,
// stays listed, and is alive again within 15 s after a restart, on its
// old address or on a new one.
func TestKilledMemberDeadThenRejoins(t *testing.T) {
	a := startNode(t, nodeOpts{name: "a"})
	b := startNode(t, nodeOpts{name: "b", join: []string{a.Addr()}})
	c := startNode(t, nodeOpts{name: "c", join: []string{a.Addr()}})
	allAlive(t, 10*time.Second, a, b, c)

	oldAddr := c.Addr()
	c.kill()
	took := waitFor(t, 15*time.Second, func() string { return view(a) + "\n" + view(b) }, func() bool {
		return stateOf(a, "c") == StateDead && stateOf(b, "c") == StateDead
	})
	t.Logf("killed member seen dead after %v", took)

	// Same name, same address.
	c2 := startNode(t, nodeOpts{name: "c", bind: oldAddr, join: []string{a.Addr()}})
	took = waitFor(t, 15*time.Second, func() string { return view(a) }, func() bool {
		return stateOf(a, "c") == StateAlive && stateOf(b, "c") == StateAlive
	})
	t.Logf("restarted member alive again after %v", took)

	// Same name, new address (a rescheduled node): dead-node reclaim.
	c2.kill()
	waitFor(t, 15*time.Second, func() string { return view(a) }, func() bool { return stateOf(a, "c") == StateDead })
	c3 := startNode(t, nodeOpts{name: "c", join: []string{b.Addr()}})
	waitFor(t, 15*time.Second, func() string { return view(a) + "\n" + view(c3) }, func() bool {
		for _, m := range a.Members() {
			if m.Name == "c" {
				return m.State == StateAlive && m.Addr == c3.Addr()
			}
		}
		return false
	})
	if c3.Addr() == oldAddr {
		t.Fatalf("c3 reused the old address %s; the test wants a new one", oldAddr)
	}
}

// The default memberlist configuration (not the tuned one the other tests
// use) sees a killed member dead within the contract's 15 s.
func TestDefaultConfigSeesKilledMemberDead(t *testing.T) {
	if testing.Short() {
		t.Skip("takes ~10s")
	}
	a := startNode(t, nodeOpts{name: "a", memberlist: DefaultMemberlistConfig()})
	b := startNode(t, nodeOpts{name: "b", join: []string{a.Addr()}, memberlist: DefaultMemberlistConfig()})
	c := startNode(t, nodeOpts{name: "c", join: []string{a.Addr()}, memberlist: DefaultMemberlistConfig()})
	allAlive(t, 10*time.Second, a, b, c)
	c.kill()
	took := waitFor(t, 15*time.Second, func() string { return view(a) + "\n" + view(b) }, func() bool {
		return stateOf(a, "c") == StateDead && stateOf(b, "c") == StateDead
	})
	t.Logf("default config: killed member seen dead after %v", took)
}

// A member that leaves is listed as left, for at least 10 minutes, and
// then dropped; silence makes an alive member suspect.
func TestDepartedMembersListedTenMinutes(t *testing.T) {
	clock := newManualClock()
	var cPending atomic.Int64
	cPending.Store(5)
	a := startNode(t, nodeOpts{name: "a", now: clock.Now})
	b := startNode(t, nodeOpts{name: "b", join: []string{a.Addr()}, now: clock.Now})
	c := startNode(t, nodeOpts{name: "c", join: []string{a.Addr()}, now: clock.Now,
		live: func() Live { return Live{OutboxPending: cPending.Load()} }})
	allAlive(t, 10*time.Second, a, b, c)
	waitFor(t, 5*time.Second, func() string { return view(a) }, func() bool { return liveOf(a, "c").OutboxPending == 5 })

	// A hand-off emptied c's outbox just before it leaves: its last live
	// state says so.
	cPending.Store(0)
	if err := c.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	c.kill()
	waitFor(t, 10*time.Second, func() string { return view(a) }, func() bool { return stateOf(a, "c") == StateLeft })
	if p := liveOf(a, "c").OutboxPending; p != 0 {
		t.Errorf("c left with its last live state saying %d pending, want 0", p)
	}
	b.kill()
	waitFor(t, 15*time.Second, func() string { return view(a) }, func() bool { return stateOf(a, "b") == StateDead })

	clock.Add(10 * time.Minute)
	if s := stateOf(a, "c"); s != StateLeft {
		t.Errorf("10 min after leaving, c is %q, want still listed as left", s)
	}
	if s := stateOf(a, "b"); s != StateDead {
		t.Errorf("10 min after dying, b is %q, want still listed as dead", s)
	}
	clock.Add(6 * time.Minute)
	if s := stateOf(a, "c"); s != "" {
		t.Errorf("16 min after leaving, c is still listed (%q)", s)
	}
}

func liveOf(n *testNode, name string) Live {
	for _, m := range n.Members() {
		if m.Name == name {
			return m.Live
		}
	}
	return Live{}
}

// An alive member whose live state stops arriving is listed suspect.
func TestSilentMemberSuspect(t *testing.T) {
	clock := newManualClock()
	a := startNode(t, nodeOpts{name: "a", now: clock.Now})
	b := startNode(t, nodeOpts{name: "b", join: []string{a.Addr()}, now: clock.Now})
	allAlive(t, 10*time.Second, a, b)
	clock.Add(time.Minute) // nothing arrives "for a minute" before the next broadcast
	if s := stateOf(a, "b"); s != StateSuspect {
		t.Fatalf("b is %q after a minute of silence, want suspect", s)
	}
	waitFor(t, 5*time.Second, func() string { return view(a) }, func() bool { return stateOf(a, "b") == StateAlive })
}

// Nodes of another region are refused: the pool label differs.
func TestOtherRegionRefused(t *testing.T) {
	a := startNode(t, nodeOpts{name: "a", region: "eu"})
	b := startNode(t, nodeOpts{name: "b", region: "eu", join: []string{a.Addr()}})
	allAlive(t, 10*time.Second, a, b)
	x := startNode(t, nodeOpts{name: "x", region: "us"})
	if n, err := x.Join([]string{a.Addr()}); err == nil {
		t.Fatalf("a us node joined the eu pool (%d answered)", n)
	}
	time.Sleep(500 * time.Millisecond) // several gossip rounds
	if s := stateOf(a, "x"); s != "" {
		t.Errorf("eu node a lists the us node x (%s)", s)
	}
	if n := len(x.Members()); n != 1 {
		t.Errorf("us node x lists %d members, want only itself: %s", n, view(x))
	}
}

// Gossip is encrypted: a node with another key, or none, cannot join.
func TestWrongKeyRefused(t *testing.T) {
	dir := t.TempDir()
	good := writeKeyFile(t, dir, "good.json", newKey(1, 32))
	bad := writeKeyFile(t, dir, "bad.json", newKey(2, 32))
	a := startNode(t, nodeOpts{name: "a", keyFile: good})
	b := startNode(t, nodeOpts{name: "b", keyFile: good, join: []string{a.Addr()}})
	allAlive(t, 10*time.Second, a, b)

	x := startNode(t, nodeOpts{name: "x", keyFile: bad})
	if _, err := x.Join([]string{a.Addr()}); err == nil {
		t.Fatal("a node with the wrong key joined")
	}
	y := startNode(t, nodeOpts{name: "y"}) // loopback, no keyring
	if _, err := y.Join([]string{a.Addr()}); err == nil {
		t.Fatal("a node without encryption joined an encrypted pool")
	}
	time.Sleep(300 * time.Millisecond)
	for _, name := range []string{"x", "y"} {
		if s := stateOf(a, name); s != "" {
			t.Errorf("a lists %s (%s)", name, s)
		}
	}
}

// A non-loopback bind without a keyring is refused; loopback is allowed.
func TestNonLoopbackNeedsKeyring(t *testing.T) {
	for _, bind := range []string{"0.0.0.0:0", ":0", "[::]:0", "10.1.2.3:7946"} {
		cfg := DefaultConfig()
		cfg.Name, cfg.Region, cfg.Bind = "a", "eu", bind
		_, err := Create(cfg)
		if !errors.Is(err, ErrNoKeyring) {
			t.Errorf("Create(bind %q, no keyring) = %v, want ErrNoKeyring", bind, err)
		}
	}
}

// Metadata above memberlist's 512 bytes is refused at Create.
func TestMetaTooLarge(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Name, cfg.Region, cfg.Bind = "a", "eu", "127.0.0.1:0"
	cfg.Meta = Meta{Region: "eu", Roles: []string{strings.Repeat("r", 600)}}
	if _, err := Create(cfg); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("Create with 600-byte meta = %v, want ErrMetaTooLarge", err)
	}
}

// A node bound to every address advertises the address peers should use,
// and its wildcard admin address is published with that host.
func TestAdvertiseAddress(t *testing.T) {
	dir := t.TempDir()
	key := writeKeyFile(t, dir, "k.json", newKey(4, 32))
	probe := startNode(t, nodeOpts{name: "probe"})
	_, port, _ := net.SplitHostPort(probe.Addr())
	probe.kill()

	kr, err := LoadKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Name, cfg.Region, cfg.Keyring = "wild", "eu", kr
	cfg.Memberlist = fastMemberlist()
	cfg.Bind, cfg.Advertise = "0.0.0.0:"+port, "127.0.0.1:"+port
	cfg.Meta = Meta{Region: "eu", Admin: "0.0.0.0:9999", Public: ":8080"}
	w, err := Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Shutdown()
	if w.Addr() != "127.0.0.1:"+port {
		t.Fatalf("Addr() = %s, want the advertised 127.0.0.1:%s", w.Addr(), port)
	}
	if m := w.Meta(); m.Admin != "127.0.0.1:9999" || m.Public != "127.0.0.1:8080" {
		t.Fatalf("meta %+v: wildcard hosts not replaced by the advertised address", m)
	}
	a := startNode(t, nodeOpts{name: "a", keyFile: key, join: []string{"127.0.0.1:" + port}})
	waitFor(t, 10*time.Second, func() string { return view(a) }, func() bool {
		for _, m := range a.Members() {
			if m.Name == "wild" {
				return m.State == StateAlive && m.Addr == "127.0.0.1:"+port && m.Admin == "127.0.0.1:9999"
			}
		}
		return false
	})
}
