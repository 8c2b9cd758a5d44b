package cluster

import (
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/clickedge/clickedge/outbox"
)

// Config configures a Cluster. Build it with DefaultConfig and change what
// differs.
type Config struct {
	// Name is this node's name in the pool (node.id); unique per region.
	Name string

	// Region names the pool: memberlist's label is "clickedge/<Region>",
	// and packets under any other label are refused.
	Region string

	// Bind is the gossip address, host:port, for UDP and TCP. Port 0 picks
	// a free one (tests).
	Bind string

	// Advertise is the address peers use, host:port. Empty: Bind's (with
	// a wildcard host, memberlist picks a private address of the host).
	Advertise string

	// Join lists seeds, host:port. Empty: the node starts a pool of its own
	// and waits for others to join it.
	Join []string

	// Keyring encrypts gossip and signs internal requests. Nil: no
	// encryption, which Create allows only on a loopback Bind.
	Keyring *Keyring

	// Meta is what this node tells the pool about itself at start.
	Meta Meta

	// Live returns this node's live state; it is called every
	// LiveInterval from one goroutine and must be cheap. The catalog
	// fields are filled from Catalog when it is set. Nil: zero state.
	Live func() Live

	// Catalog is the replicated catalog anti-entropy keeps in step. Nil:
	// no anti-entropy, and the catalog endpoint answers 404.
	Catalog Catalog

	// Outbox receives records handed off by peers. Nil: hand-offs are
	// refused with 503.
	Outbox *outbox.Outbox

	// Memberlist is the memberlist configuration that Create completes
	// with Name, addresses, label, keyring, delegates and logger. Zero:
	// DefaultMemberlistConfig().
	Memberlist *memberlist.Config

	// LiveInterval is how often the live state is gossiped. Zero: 1s.
	LiveInterval time.Duration

	// SuspectAfter is how long an alive member may stay silent (no live
	// state) before it is listed as suspect. Zero: 3 × LiveInterval + 1s.
	SuspectAfter time.Duration

	// DepartedRetention is how long dead and left members stay listed.
	// Zero: 15 minutes (the contract is at least 10).
	DepartedRetention time.Duration

	// JoinMin and JoinMax bound the backoff between join attempts while
	// no seed has answered. Zero: 500ms and 15s.
	JoinMin, JoinMax time.Duration

	// RejoinInterval is how often a node that is alone in the pool tries
	// its seeds again once one has answered. Zero: 30s.
	RejoinInterval time.Duration

	// AntiEntropyInterval is how often digests are compared. Zero: 1s.
	AntiEntropyInterval time.Duration

	// FullPullAfter is how long a peer's digest may keep differing from
	// this node's after an incremental pull of it before every entry is
	// pulled. Zero: 30s.
	FullPullAfter time.Duration

	// PageSize is the number of catalog entries per page. Zero: 2000.
	PageSize int

	// MergeBatch is how many pulled entries are merged into the catalog
	// at once. Zero: 50000 (tens of MB at most).
	MergeBatch int

	// HandoffRecords and HandoffBytes bound one hand-off batch. Zero: 500
	// records, 4 MiB.
	HandoffRecords, HandoffBytes int

	// MaxSkew is how far the time of a signed internal request may be from
	// this node's clock. Zero: 2 minutes.
	MaxSkew time.Duration

	// HTTPClient calls peers' internal endpoints. Nil: a client with a
	// 30s timeout.
	HTTPClient *http.Client

	// Logger receives the cluster's logs and memberlist's, at matching
	// levels. Nil: discarded.
	Logger *slog.Logger

	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

// DefaultConfig returns a Config with every default filled in and the
// memberlist configuration from DefaultMemberlistConfig.
func DefaultConfig() *Config {
	return &Config{
		Memberlist:          DefaultMemberlistConfig(),
		LiveInterval:        time.Second,
		DepartedRetention:   15 * time.Minute,
		JoinMin:             500 * time.Millisecond,
		JoinMax:             15 * time.Second,
		RejoinInterval:      30 * time.Second,
		AntiEntropyInterval: time.Second,
		FullPullAfter:       30 * time.Second,
		PageSize:            2000,
		MergeBatch:          50000,
		HandoffRecords:      500,
		HandoffBytes:        4 << 20,
		MaxSkew:             2 * time.Minute,
	}
}

// DefaultMemberlistConfig is memberlist.DefaultLANConfig() with the changes
// clickedge needs, each explained. Everything else keeps memberlist's LAN
// defaults (probe every 1s with a 500ms timeout, gossip to 3 nodes every
// 200ms, push/pull every 30s), which Consul and Serf run in production.
func DefaultMemberlistConfig() *memberlist.Config {
	c := memberlist.DefaultLANConfig()

	// The contract is "a killed member is seen dead within 15 s". A dead
	// node's suspicion starts at SuspicionMaxTimeoutMult × SuspicionMult ×
	// ProbeInterval (× log10 n, 1 for regions below 10 nodes) and only
	// shrinks towards SuspicionMult × ProbeInterval = 4s as other members
	// confirm it. With the default 6 that is 24s for a node nobody
	// confirms; 2 caps it at 8s, leaving the rest of the 15s for the probe
	// round that notices the silence (about 1-3s).
	c.SuspicionMaxTimeoutMult = 2

	// A node restarted with a new address under the same name (a
	// rescheduled pod, a replaced VM) is refused as a conflict for as long
	// as its old incarnation is known; 0 (memberlist's default) means
	// forever. Once the old one has been dead this long, the new address
	// takes the name over. Short, because names are unique per region by
	// configuration and gossip is authenticated.
	c.DeadNodeReclaimTime = 5 * time.Second

	// Dead nodes are gossiped for this long so that the news reaches
	// every member; memberlist's 30s is kept, and the cluster package
	// itself lists dead members for DepartedRetention.
	c.GossipToTheDeadTime = 30 * time.Second

	// Memberlist's own log goes through Create's adapter to slog.
	c.LogOutput = io.Discard
	return c
}

// Meta is a node's metadata: what it is and where to reach it. It is
// gossiped as memberlist node metadata and must encode to at most 512
// bytes.
type Meta struct {
	Region  string   `json:"region"`
	Roles   []string `json:"roles"`
	Version string   `json:"version"`
	Public  string   `json:"public"` // public listener, host:port
	Admin   string   `json:"admin"`  // admin listener, host:port: the internal endpoints
}

// Live is a node's live state, gossiped every LiveInterval.
type Live struct {
	OutboxPending          int64   `json:"outbox_pending"`
	OutboxOldestAgeSeconds float64 `json:"outbox_oldest_age_seconds"`
	// Forwarder is "connected", "disconnected", "blocked", "retrying" or
	// "stopped".
	Forwarder      string `json:"forwarder"`
	CatalogVersion string `json:"catalog_version"` // decimal: above 2^53
	CatalogDigest  string `json:"catalog_digest"`
}

func (c *Config) withDefaults() Config {
	d := DefaultConfig()
	o := *c
	if o.Memberlist == nil {
		o.Memberlist = d.Memberlist
	}
	if o.LiveInterval <= 0 {
		o.LiveInterval = d.LiveInterval
	}
	if o.SuspectAfter <= 0 {
		o.SuspectAfter = 3*o.LiveInterval + time.Second
	}
	if o.DepartedRetention <= 0 {
		o.DepartedRetention = d.DepartedRetention
	}
	if o.JoinMin <= 0 {
		o.JoinMin = d.JoinMin
	}
	if o.JoinMax < o.JoinMin {
		o.JoinMax = max(d.JoinMax, o.JoinMin)
	}
	if o.RejoinInterval <= 0 {
		o.RejoinInterval = d.RejoinInterval
	}
	if o.AntiEntropyInterval <= 0 {
		o.AntiEntropyInterval = d.AntiEntropyInterval
	}
	if o.FullPullAfter <= 0 {
		o.FullPullAfter = d.FullPullAfter
	}
	if o.PageSize <= 0 {
		o.PageSize = d.PageSize
	}
	if o.MergeBatch <= 0 {
		o.MergeBatch = d.MergeBatch
	}
	if o.HandoffRecords <= 0 {
		o.HandoffRecords = d.HandoffRecords
	}
	if o.HandoffBytes <= 0 {
		o.HandoffBytes = d.HandoffBytes
	}
	if o.MaxSkew <= 0 {
		o.MaxSkew = d.MaxSkew
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}
