package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/clickedge/clickedge/internal/backoff"
)

// Member states.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect"
	StateDead    = "dead"
	StateLeft    = "left"
)

// States lists the member states, for metrics.
var States = []string{StateAlive, StateSuspect, StateDead, StateLeft}

// Errors of Create.
var (
	// ErrNoKeyring is returned by Create for a non-loopback bind without a
	// keyring: gossip off the host must be encrypted.
	ErrNoKeyring = errors.New("cluster: gossip on a non-loopback address must be encrypted, and no keyring is set")
	// ErrMetaTooLarge is returned by Create when the metadata encodes to
	// more than memberlist's 512 bytes.
	ErrMetaTooLarge = errors.New("cluster: node metadata is larger than 512 bytes")
)

// Member is one node of the pool as this node sees it: the shape of GET
// /admin/cluster.
type Member struct {
	Name       string   `json:"name"`
	Addr       string   `json:"addr"` // gossip address
	State      string   `json:"state"`
	Region     string   `json:"region"`
	Roles      []string `json:"roles"`
	Version    string   `json:"version"`
	Public     string   `json:"public"`
	Admin      string   `json:"admin"`
	Live       Live     `json:"live"`
	AgeSeconds float64  `json:"age_seconds"` // since its live state arrived here
}

// Stats counts what the cluster did since Create.
type Stats struct {
	HandoffSent     uint64 // records handed to peers and acked here
	HandoffReceived uint64 // records peers handed here, committed
	CatalogPulls    uint64 // anti-entropy pulls completed (incremental and full)
	CatalogFull     uint64 // of which full pulls (every entry of the peer)
	CatalogEntries  uint64 // entries received in pulls
	CatalogMerged   uint64 // entries that changed the catalog in those pulls
	PullErrors      uint64
	Joins           uint64 // successful joins to a seed
}

// Cluster is this node's membership in its region's pool.
type Cluster struct {
	cfg  Config
	ml   *memberlist.Memberlist
	bq   *memberlist.TransmitLimitedQueue
	log  *slog.Logger
	meta atomic.Pointer[[]byte] // encoded Meta
	boot uint64                 // random per process: orders live states across restarts

	mu     sync.Mutex
	peers  map[string]*peer // every member seen, self included
	self   Live
	selfAt time.Time
	seq    uint64
	pulls  map[string]*pullState // peer -> what was pulled from it

	handoffSent, handoffReceived                                     atomic.Uint64
	pullsOK, fullPulls, entriesPulled, merged, pullErrors, joinCount atomic.Uint64

	stop     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
	left     atomic.Bool
}

// peer is what this node knows of a member.
type peer struct {
	addr     string
	meta     Meta
	state    string // alive, dead or left (suspect is derived)
	since    time.Time
	live     Live
	liveAt   time.Time
	boot     uint64
	seq      uint64
	liveSeen bool
	leaving  bool // it said it is leaving: its departure is "left"
}

// Create joins this node to its region's pool (in the background: seeds
// that do not answer are retried) and starts gossiping its live state.
func Create(config *Config) (*Cluster, error) {
	cfg := config.withDefaults()
	if cfg.Name == "" || cfg.Region == "" {
		return nil, errors.New("cluster: Name and Region are required")
	}
	host, port, err := splitHostPort(cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("cluster: bind: %w", err)
	}
	if cfg.Keyring == nil && !isLoopback(host) {
		return nil, fmt.Errorf("%w (bind %s)", ErrNoKeyring, cfg.Bind)
	}
	c := &Cluster{
		cfg:   cfg,
		log:   cfg.Logger,
		boot:  rand.Uint64(),
		peers: make(map[string]*peer),
		pulls: make(map[string]*pullState),
		stop:  make(chan struct{}),
	}
	if err := c.setMeta(cfg.Meta); err != nil {
		return nil, err
	}

	mc := *cfg.Memberlist
	mc.Name = cfg.Name
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = "", port
	if cfg.Advertise != "" {
		ah, ap, err := splitHostPort(cfg.Advertise)
		if err != nil {
			return nil, fmt.Errorf("cluster: advertise: %w", err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ah, ap
	} else if host != "0.0.0.0" && host != "::" {
		mc.AdvertiseAddr = host
	}
	// Other regions' pools use other labels: their packets are refused.
	mc.Label = "clickedge/" + cfg.Region
	mc.SkipInboundLabelCheck = false
	if cfg.Keyring != nil {
		mc.Keyring = cfg.Keyring.ml
		mc.SecretKey = nil
		// Refuse plaintext and send nothing unencrypted.
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	mc.Delegate = (*delegate)(c)
	mc.Events = (*events)(c)
	mc.LogOutput = nil
	mc.Logger = log.New(logWriter{c.log}, "", 0)

	// Ready before memberlist starts: an ack to an early probe already
	// asks for broadcasts. It counts members from this node's own view, so
	// it never reads c.ml, which is set only once Create returns.
	c.bq = &memberlist.TransmitLimitedQueue{
		NumNodes:       c.aliveCount,
		RetransmitMult: mc.RetransmitMult,
	}
	c.ml, err = memberlist.Create(&mc)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	// A wildcard admin or public host means "every address": peers need
	// the one this node advertises.
	if m := c.resolveMeta(cfg.Meta); !slices.Equal(*c.meta.Load(), mustJSON(m)) {
		if err := c.setMeta(m); err != nil {
			c.ml.Shutdown()
			return nil, err
		}
		c.ml.UpdateNode(time.Second)
	}
	c.refreshLive()

	if len(cfg.Join) > 0 {
		c.goLoop(c.joinLoop)
	}
	c.goLoop(c.liveLoop)
	if cfg.Catalog != nil {
		c.goLoop(c.antiEntropyLoop)
	}
	c.log.Info("cluster started", "name", cfg.Name, "region", cfg.Region, "label", mc.Label,
		"addr", c.ml.LocalNode().Address(), "encrypted", cfg.Keyring != nil, "seeds", cfg.Join)
	return c, nil
}

func (c *Cluster) goLoop(f func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

// aliveCount is the number of alive members, at least 1 (this node); the
// broadcast queue scales retransmissions with it.
func (c *Cluster) aliveCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, p := range c.peers {
		if p.state == StateAlive {
			n++
		}
	}
	return max(n, 1)
}

// Join asks the given seeds to let this node in, at once, and returns how
// many answered. Create already joins Config.Join in the background; this
// is for tools and tests.
func (c *Cluster) Join(seeds []string) (int, error) {
	n, err := c.ml.Join(seeds)
	if err == nil && n > 0 {
		c.joinCount.Add(1)
	}
	return n, err
}

// Name is this node's name.
func (c *Cluster) Name() string { return c.cfg.Name }

// Addr is this node's gossip address as peers see it (for seeds).
func (c *Cluster) Addr() string { return c.ml.LocalNode().Address() }

// Meta returns this node's metadata as gossiped.
func (c *Cluster) Meta() Meta {
	var m Meta
	json.Unmarshal(*c.meta.Load(), &m)
	return m
}

func (c *Cluster) setMeta(m Meta) error {
	b := mustJSON(m)
	if len(b) > memberlist.MetaMaxSize {
		return fmt.Errorf("%w (%d bytes)", ErrMetaTooLarge, len(b))
	}
	c.meta.Store(&b)
	return nil
}

func (c *Cluster) resolveMeta(m Meta) Meta {
	ip := c.ml.LocalNode().Addr.String()
	fix := func(hp string) string {
		h, p, err := net.SplitHostPort(hp)
		if err != nil || (h != "" && h != "0.0.0.0" && h != "::") {
			return hp
		}
		return net.JoinHostPort(ip, p)
	}
	m.Admin, m.Public = fix(m.Admin), fix(m.Public)
	return m
}

// joinLoop tries the seeds with a backoff until one answers, then every
// RejoinInterval while this node is alone.
func (c *Cluster) joinLoop() {
	wait := backoff.Backoff{Min: c.cfg.JoinMin, Max: c.cfg.JoinMax}
	joined := false
	failures := 0
	for {
		if c.ml.NumMembers() <= 1 {
			n, err := c.ml.Join(c.cfg.Join)
			if err == nil && c.ml.NumMembers() > 1 {
				joined = true
				failures = 0
				wait.Reset()
				c.joinCount.Add(1)
				c.log.Info("cluster joined", "seeds_answered", n, "members", c.ml.NumMembers())
			} else {
				failures++
				// The first failure and then every tenth: a node that
				// serves alone says so without flooding the log.
				if failures == 1 || failures%10 == 0 {
					c.log.Warn("cluster seeds did not answer; serving alone and retrying",
						"seeds", c.cfg.Join, "attempts", failures, "err", err)
				}
			}
		}
		var d time.Duration
		if joined {
			d = c.cfg.RejoinInterval
		} else {
			d = wait.Next()
		}
		t := time.NewTimer(d)
		select {
		case <-c.stop:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// liveLoop gossips the live state every LiveInterval.
func (c *Cluster) liveLoop() {
	t := time.NewTicker(c.cfg.LiveInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.refreshLive()
		}
	}
}

// refreshLive computes this node's live state, sends it to every member
// (one UDP packet each: every peer hears it every LiveInterval, whatever
// the pool's size) and queues it as a broadcast too, which piggybacks on
// probes and gossip for free and covers a lost packet.
func (c *Cluster) refreshLive() {
	var l Live
	if c.cfg.Live != nil {
		l = c.cfg.Live()
	}
	if cat := c.cfg.Catalog; cat != nil {
		l.CatalogVersion = strconv.FormatUint(cat.Version(), 10)
		l.CatalogDigest = cat.Digest()
	}
	c.mu.Lock()
	c.self, c.selfAt = l, c.cfg.Now()
	c.seq++
	msg := c.liveMsgLocked()
	c.mu.Unlock()
	c.bq.QueueBroadcast(liveBroadcast{name: c.cfg.Name, msg: msg})
	for _, n := range c.ml.Members() {
		if n.Name != c.cfg.Name {
			c.ml.SendBestEffort(n, msg)
		}
	}
}

// liveMsg is the wire form of a live state.
type liveMsg struct {
	Name string `json:"n"`
	Boot uint64 `json:"b"`
	Seq  uint64 `json:"q"`
	Live Live   `json:"l"`
}

// Message types of the cluster's own gossip.
const (
	msgLive  byte = 1 // a live state (liveMsg)
	msgLeave byte = 2 // followed by the name of a node about to leave
)

func (c *Cluster) liveMsgLocked() []byte {
	b, _ := json.Marshal(liveMsg{Name: c.cfg.Name, Boot: c.boot, Seq: c.seq, Live: c.self})
	return append([]byte{msgLive}, b...)
}

// applyMsg handles a message of the cluster's gossip.
func (c *Cluster) applyMsg(b []byte) {
	if len(b) < 2 {
		return
	}
	switch b[0] {
	case msgLive:
		c.applyLive(b)
	case msgLeave:
		name := string(b[1:])
		c.mu.Lock()
		if p := c.peers[name]; p != nil {
			p.leaving = true
		}
		c.mu.Unlock()
	}
}

// applyLive stores a peer's live state if it is newer than the one held.
func (c *Cluster) applyLive(b []byte) {
	if len(b) < 2 || b[0] != msgLive {
		return
	}
	var m liveMsg
	if err := json.Unmarshal(b[1:], &m); err != nil || m.Name == "" || m.Name == c.cfg.Name {
		return
	}
	now := c.cfg.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.peers[m.Name]
	if p == nil {
		// Live state may arrive before the join event; keep it.
		p = &peer{state: StateAlive, since: now}
		c.peers[m.Name] = p
	}
	if p.liveSeen && p.boot == m.Boot && m.Seq <= p.seq {
		return
	}
	p.live, p.liveAt, p.boot, p.seq, p.liveSeen = m.Live, now, m.Boot, m.Seq, true
}

// liveBroadcast is a live state in memberlist's broadcast queue; a newer
// one of the same node replaces it.
type liveBroadcast struct {
	name string
	msg  []byte
}

func (b liveBroadcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(liveBroadcast)
	return ok && ob.name == b.name
}
func (b liveBroadcast) Name() string    { return "live/" + b.name }
func (b liveBroadcast) Message() []byte { return b.msg }
func (b liveBroadcast) Finished()       {}

// Members returns every member this node knows, itself included, sorted
// by name. Dead and left members stay for DepartedRetention.
func (c *Cluster) Members() []Member {
	now := c.cfg.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Member, 0, len(c.peers))
	for name, p := range c.peers {
		if (p.state == StateDead || p.state == StateLeft) && now.Sub(p.since) > c.cfg.DepartedRetention {
			delete(c.peers, name)
			delete(c.pulls, name)
			continue
		}
		m := Member{
			Name: name, Addr: p.addr, State: p.state,
			Region: p.meta.Region, Roles: p.meta.Roles, Version: p.meta.Version,
			Public: p.meta.Public, Admin: p.meta.Admin, Live: p.live,
		}
		if m.Roles == nil {
			m.Roles = []string{}
		}
		heard := p.liveAt
		if name == c.cfg.Name {
			m.Live, heard = c.self, c.selfAt
			m.State = StateAlive
			if c.left.Load() {
				m.State = StateLeft
			}
		}
		if heard.IsZero() {
			heard = p.since
		}
		m.AgeSeconds = max(0, now.Sub(heard).Seconds())
		if m.State == StateAlive && name != c.cfg.Name && now.Sub(heard) > c.cfg.SuspectAfter {
			m.State = StateSuspect
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// alivePeers returns the alive (not suspect) members other than this one.
func (c *Cluster) alivePeers() []Member {
	var out []Member
	for _, m := range c.Members() {
		if m.Name != c.cfg.Name && m.State == StateAlive && m.Admin != "" {
			out = append(out, m)
		}
	}
	return out
}

// Stats returns the cluster's counters.
func (c *Cluster) Stats() Stats {
	return Stats{
		HandoffSent:     c.handoffSent.Load(),
		HandoffReceived: c.handoffReceived.Load(),
		CatalogPulls:    c.pullsOK.Load(),
		CatalogFull:     c.fullPulls.Load(),
		CatalogEntries:  c.entriesPulled.Load(),
		CatalogMerged:   c.merged.Load(),
		PullErrors:      c.pullErrors.Load(),
		Joins:           c.joinCount.Load(),
	}
}

// Leave tells the pool this node is leaving (peers list it as left, not
// dead) and waits up to timeout for the news to go out.
func (c *Cluster) Leave(timeout time.Duration) error {
	if c.left.Swap(true) {
		return nil
	}
	c.refreshLive() // the last word: what a hand-off left behind
	// memberlist's leave reaches peers as a death (its Node.State is not
	// kept up to date in events), so first say it is a departure: to each
	// alive peer directly, and by gossip for the ones that miss it.
	msg := append([]byte{msgLeave}, c.cfg.Name...)
	for _, n := range c.ml.Members() {
		if n.Name != c.cfg.Name {
			c.ml.SendReliable(n, msg)
		}
	}
	return c.ml.Leave(timeout)
}

// Shutdown stops the cluster's goroutines and memberlist. Without a Leave
// first, peers see this node fail (dead). Safe to call twice.
func (c *Cluster) Shutdown() error {
	var err error
	c.stopOnce.Do(func() {
		close(c.stop)
		c.wg.Wait()
		err = c.ml.Shutdown()
	})
	return err
}

func splitHostPort(hp string) (string, int, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	if h == "" {
		h = "0.0.0.0"
	}
	return h, int(port), nil
}

// isLoopback reports whether a bind host is a loopback address; 0.0.0.0,
// :: and names are not.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
