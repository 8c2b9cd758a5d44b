package main

import (
	"time"

	"github.com/clickedge/clickedge/edge"
)

// processStart is when the process started, for the status page's uptime.
var processStart = time.Now()

// statusHooks add to the status page what a feature knows: the cluster
// fills Members with its region's pool, postbacks or the feed add a
// Section. Each is called on every GET /status, from many requests at once,
// so each must be thread-safe and quick (no network).
var statusHooks []func(n *node, s *edge.Status)

// statusPage is GET /status on the admin listener.
func (n *node) statusPage() *edge.Status {
	now := time.Now()
	os := n.o.Stats()
	fs := n.f.Stats()
	s := &edge.Status{
		Node:            n.cfg.Node.ID,
		Region:          n.cfg.Node.Region,
		Version:         version,
		Started:         processStart,
		Now:             now,
		OutboxPending:   os.Pending,
		OutboxOldestAge: os.OldestPendingAge(now),
		OutboxFileBytes: os.FileSize,
		SpillRecords:    os.Spill.Records,
		Forwarder:       forwarderState(fs),
		ForwarderBroker: fs.Addr,
		ForwarderError:  fs.LastError,
		CatalogLoaded:   time.Unix(n.lastReload.Load(), 0),
	}
	if cat := n.srv.Catalog(); cat != nil {
		s.CatalogVersion, s.CatalogLinks = cat.Version(), cat.Len()
	}
	for _, h := range statusHooks {
		h(n, s)
	}
	return s
}
