package cluster

import (
	"encoding/json"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate is the Cluster as memberlist's Delegate. Every method is called
// from memberlist's goroutines, possibly concurrently; each is short, takes
// at most c.mu briefly and never calls into memberlist.
type delegate Cluster

var _ memberlist.Delegate = (*delegate)(nil)

// NodeMeta returns the encoded Meta, checked against the limit at Create.
// Thread-safe: the bytes are swapped atomically.
func (d *delegate) NodeMeta(limit int) []byte {
	b := *d.meta.Load()
	if len(b) > limit {
		return nil
	}
	return b
}

// NotifyMsg receives a broadcast (a live state). Called from the packet
// receive loop, concurrently with the stream handlers: it must not block,
// and must copy what it keeps (applyLive decodes into new values).
func (d *delegate) NotifyMsg(b []byte) { (*Cluster)(d).applyMsg(b) }

// GetBroadcasts hands queued live states to the gossip. Thread-safe: the
// queue locks itself.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.bq.GetBroadcasts(overhead, limit)
}

// LocalState is this node's live state, for push/pull: a node that joins
// gets it at once instead of at the next broadcast. Thread-safe.
func (d *delegate) LocalState(join bool) []byte {
	c := (*Cluster)(d)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.liveMsgLocked()
}

// MergeRemoteState stores the remote node's live state from push/pull.
// Thread-safe.
func (d *delegate) MergeRemoteState(buf []byte, join bool) { (*Cluster)(d).applyLive(buf) }

// events is the Cluster as memberlist's EventDelegate. memberlist calls it
// while holding its node lock, from several goroutines: each method only
// copies the node into c.peers under c.mu and returns.
type events Cluster

var _ memberlist.EventDelegate = (*events)(nil)

func (e *events) NotifyJoin(n *memberlist.Node) { e.set(n, StateAlive) }

func (e *events) NotifyUpdate(n *memberlist.Node) { e.set(n, "") }

// NotifyLeave marks n dead, or left when it announced its departure (the
// Node that memberlist passes does not carry the left state).
func (e *events) NotifyLeave(n *memberlist.Node) {
	c := (*Cluster)(e)
	state := StateDead
	c.mu.Lock()
	if p := c.peers[n.Name]; p != nil && p.leaving || n.Name == c.cfg.Name {
		state = StateLeft
	}
	c.mu.Unlock()
	e.set(n, state)
	if n.Name != c.cfg.Name {
		c.log.Info("cluster member gone", "member", n.Name, "state", state, "addr", n.Address())
	}
}

// set records n's address and metadata and, unless state is "", its state.
func (e *events) set(n *memberlist.Node, state string) {
	c := (*Cluster)(e)
	var m Meta
	json.Unmarshal(n.Meta, &m) // a node whose meta does not parse is listed without it
	now := c.cfg.Now()
	c.mu.Lock()
	p := c.peers[n.Name]
	if p == nil {
		p = &peer{state: StateAlive, since: now}
		c.peers[n.Name] = p
	}
	p.addr, p.meta = n.Address(), m
	rejoined := false
	if state != "" && state != p.state {
		rejoined = state == StateAlive
		p.state, p.since = state, now
		if state == StateAlive {
			p.leaving = false
			// Age counts from the return, not from the last word before
			// the failure.
			p.liveAt = time.Time{}
		}
	}
	c.mu.Unlock()
	if rejoined && n.Name != c.cfg.Name {
		c.log.Info("cluster member back", "member", n.Name, "addr", n.Address())
	}
}
