package outbox

import "time"

// Status is the one JSON shape of an outbox and its forwarder (harden #11):
// GET /admin/outbox, `clickedge outbox stats -json` (offline and -admin),
// the CLI's live view and the bench all read and write it. Keys are
// snake_case and documented in docs/runbook.md ("Reading /admin/outbox");
// fields are only added, never renamed. Stats stays the in-process
// snapshot for metrics.
type Status struct {
	Node                    string           `json:"node,omitempty"`
	Region                  string           `json:"region,omitempty"`
	Path                    string           `json:"path"`
	Durability              string           `json:"durability,omitempty"` // live only
	FileSize                int64            `json:"file_size"`
	NextSeq                 uint64           `json:"next_seq"`
	Pending                 StatusSpan       `json:"pending"`
	Delivered               StatusSpan       `json:"delivered"`
	OldestPendingAgeSeconds float64          `json:"oldest_pending_age_seconds"`
	Counters                *StatusCounters  `json:"counters,omitempty"`  // live only
	Forwarder               *ForwarderStatus `json:"forwarder,omitempty"` // live only
	Spill                   *SpillStatus     `json:"spill,omitempty"`     // live only
	// Exchanges breaks the records down by exchange, that is by kind
	// (clicks, actions); offline only (it needs a scan).
	Exchanges map[string]*ExchangeCount `json:"exchanges,omitempty"`
}

// StatusSpan describes the pending or the delivered (retained) records.
// The sequence range and the newest times need a scan: the offline view
// has them, the live one only count, bytes and the oldest time.
type StatusSpan struct {
	Count          int64      `json:"count"`
	Bytes          int64      `json:"bytes"`
	FirstSeq       uint64     `json:"first_seq,omitempty"`
	LastSeq        uint64     `json:"last_seq,omitempty"`
	OldestAppend   *time.Time `json:"oldest_append,omitempty"`
	NewestAppend   *time.Time `json:"newest_append,omitempty"`
	OldestDelivery *time.Time `json:"oldest_delivery,omitempty"`
	NewestDelivery *time.Time `json:"newest_delivery,omitempty"`
}

// StatusCounters are the live outbox's counters since Open.
type StatusCounters struct {
	Appended     uint64 `json:"appended"`
	Acked        uint64 `json:"acked"`
	Pruned       uint64 `json:"pruned"`
	Evicted      uint64 `json:"evicted"`
	Commits      uint64 `json:"commits"`
	CommitErrors uint64 `json:"commit_errors"`
	Full         uint64 `json:"refused_full"`
	Overloaded   uint64 `json:"refused_overloaded"`
	Timeouts     uint64 `json:"refused_timeout"`
	Rescued      uint64 `json:"rescued"`
	Queued       int    `json:"queued"`
	Failing      bool   `json:"write_failing"`
	LastError    string `json:"last_error,omitempty"`
}

// ForwarderStatus is the forwarder's part of Status.
type ForwarderStatus struct {
	Connected     bool       `json:"connected"`
	Addr          string     `json:"addr,omitempty"`
	Blocked       bool       `json:"blocked"`
	Retrying      bool       `json:"retrying"`
	HeldRoutes    int        `json:"held_routes"`
	InFlight      int        `json:"in_flight"`
	Published     uint64     `json:"published"`
	Confirmed     uint64     `json:"confirmed"`
	Nacked        uint64     `json:"nacked"`
	Returned      uint64     `json:"returned"`
	Republished   uint64     `json:"republished"`
	Reconnects    uint64     `json:"reconnects"`
	ConnectErrors uint64     `json:"connect_errors"`
	SessionErrors uint64     `json:"session_errors"`
	LastError     string     `json:"last_error,omitempty"`
	LastErrorAt   *time.Time `json:"last_error_at,omitempty"`
}

// SpillStatus is the memory spill's part of Status.
type SpillStatus struct {
	Records   int    `json:"records"`
	Bytes     int    `json:"bytes"`
	Spilled   uint64 `json:"spilled"`
	Delivered uint64 `json:"delivered"`
	Restored  uint64 `json:"restored"`
	Dropped   uint64 `json:"dropped"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func spanStatus(s Span) StatusSpan {
	return StatusSpan{
		Count: s.Count, Bytes: s.Bytes, FirstSeq: s.FirstSeq, LastSeq: s.LastSeq,
		OldestAppend: timePtr(s.OldestAppend), NewestAppend: timePtr(s.NewestAppend),
		OldestDelivery: timePtr(s.OldestDelivery), NewestDelivery: timePtr(s.NewestDelivery),
	}
}

// Status of a Summary: the offline view of a stopped node's file.
func (s *Summary) Status(now time.Time) Status {
	st := Status{
		Path: s.Path, FileSize: s.FileSize, NextSeq: s.NextSeq,
		Pending: spanStatus(s.Pending), Delivered: spanStatus(s.Delivered),
		Exchanges: s.Exchanges,
	}
	if !s.Pending.OldestAppend.IsZero() {
		st.OldestPendingAgeSeconds = now.Sub(s.Pending.OldestAppend).Seconds()
	}
	return st
}

// Status returns the live view: counts and oldest times from the
// counters (no scan), the counters, and the spill. f may be nil.
func (o *Outbox) Status(f *Forwarder, now time.Time) Status {
	s := o.Stats()
	st := Status{
		Path: s.Path, Durability: s.Durability, FileSize: s.FileSize, NextSeq: s.NextSeq,
		Pending:                 StatusSpan{Count: s.Pending, Bytes: s.PendingBytes, OldestAppend: timePtr(s.OldestPending)},
		Delivered:               StatusSpan{Count: s.Retained, Bytes: s.RetainedBytes, OldestDelivery: timePtr(s.OldestRetained)},
		OldestPendingAgeSeconds: s.OldestPendingAge(now).Seconds(),
		Counters: &StatusCounters{
			Appended: s.Appended, Acked: s.Acked, Pruned: s.Pruned, Evicted: s.Evicted,
			Commits: s.Commits, CommitErrors: s.CommitErrors, Full: s.Full, Overloaded: s.Overloaded,
			Timeouts: s.Timeouts, Rescued: s.Rescued, Queued: s.Queued, Failing: s.Failing, LastError: s.LastError,
		},
		Spill: &SpillStatus{
			Records: s.Spill.Records, Bytes: s.Spill.Bytes, Spilled: s.Spill.Spilled,
			Delivered: s.Spill.Delivered, Restored: s.Spill.Restored, Dropped: s.Spill.Dropped,
		},
	}
	if f != nil {
		fs := f.Stats()
		st.Forwarder = &ForwarderStatus{
			Connected: fs.Connected, Addr: fs.Addr, Blocked: fs.Blocked, Retrying: fs.Retrying, HeldRoutes: fs.HeldRoutes, InFlight: fs.InFlight,
			Published: fs.Published, Confirmed: fs.Confirmed, Nacked: fs.Nacked, Returned: fs.Returned,
			Republished: fs.Republished, Reconnects: fs.Reconnects, ConnectErrors: fs.ConnectErrors,
			SessionErrors: fs.SessionErrors, LastError: fs.LastError, LastErrorAt: timePtr(fs.LastErrorAt),
		}
	}
	return st
}
