package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// The Replayer publishes records again (`clickedge outbox replay`) through
// the same Session the Forwarder drives, with the same rule: a record
// counts as delivered only after its basic.ack without basic.return
// (harden #10: one publish engine in outbox/, cmd keeps flags and wiring).
// Unlike the Forwarder it walks a fixed selection once, in the caller's
// goroutine, and a ReplayLedger makes its progress durable, so that a
// re-run after a crash publishes again at most one window: Publish waits
// whenever the records in flight plus those confirmed but not yet made
// durable would exceed the window, and persists the ledger first.

// ReplayLedger makes confirmed records durable: acks in the outbox
// (AckLedger) or a checkpoint. Its methods are called from the goroutine
// that calls Publish and Drain, never concurrently.
type ReplayLedger interface {
	Published(seq uint64)
	Confirmed(seq uint64) error
	Failed(seq uint64)
	// Unpersisted is how many confirmed records a crash now would publish
	// again; Persist brings it down as far as it can.
	Unpersisted() int
	Persist() error
	// Finish is called at the end; complete says whether every record was
	// confirmed.
	Finish(complete bool) error
}

// ErrInterrupted is returned by Replayer.Publish when its context ended.
var ErrInterrupted = errors.New("interrupted")

// ReplayConfig configures a Replayer.
type ReplayConfig struct {
	Session Session      // an open session; the caller closes it
	Ledger  ReplayLedger // required
	// Window is the most publishes awaiting their confirm plus confirmed
	// records not yet persisted. Zero means 1024.
	Window int
	// Exchange, when set, replaces each record's exchange.
	Exchange string
	// Wait, when set, is called before each publish (a rate limiter).
	Wait func(ctx context.Context) error
	// OnConfirm and OnTick, when set, report progress: one delivered
	// record, and a second without a confirm.
	OnConfirm, OnTick func()
}

// ReplayStats counts what a Replayer did.
type ReplayStats struct {
	Published, Confirmed, Returned, Nacked int64
	FirstReturn                            string // the first return's reason
}

// Replayer publishes a selection of records with confirms. Not safe for
// concurrent use.
type Replayer struct {
	cfg      ReplayConfig
	inflight map[uint64]uint64 // delivery tag -> seq
	st       ReplayStats
	limit    time.Duration // Drain's, for its error
}

// NewReplayer returns a Replayer publishing through cfg.Session.
func NewReplayer(cfg ReplayConfig) (*Replayer, error) {
	if cfg.Session == nil || cfg.Ledger == nil {
		return nil, errors.New("outbox: a Replayer needs a Session and a Ledger")
	}
	if cfg.Window <= 0 {
		cfg.Window = 1024
	}
	return &Replayer{cfg: cfg, inflight: make(map[uint64]uint64, cfg.Window)}, nil
}

// Stats returns the counts so far.
func (r *Replayer) Stats() ReplayStats { return r.st }

// Publish sends one record, after making room in the window.
func (r *Replayer) Publish(ctx context.Context, rec *Record) error {
	l := r.cfg.Ledger
	for len(r.inflight)+l.Unpersisted() >= r.cfg.Window {
		if len(r.inflight) < r.cfg.Window && l.Unpersisted() > 0 {
			before := l.Unpersisted()
			if err := l.Persist(); err != nil {
				return err
			}
			if l.Unpersisted() < before {
				continue
			}
		}
		if len(r.inflight) == 0 {
			break // nothing to wait for: unpersisted records behind a failure
		}
		if err := r.waitConfirm(ctx, 0); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ErrInterrupted
	}
	if r.cfg.Wait != nil {
		if err := r.cfg.Wait(ctx); err != nil {
			return ErrInterrupted
		}
	}
	if r.cfg.Exchange != "" {
		rec.Exchange = r.cfg.Exchange
	}
	tag, err := r.cfg.Session.Publish(ctx, rec)
	if err != nil {
		if ctx.Err() != nil {
			return ErrInterrupted
		}
		return fmt.Errorf("publish record %d: %w", rec.Seq, err)
	}
	r.inflight[tag] = rec.Seq
	l.Published(rec.Seq)
	r.st.Published++
	// Take whatever confirms are already there.
	for {
		select {
		case c := <-r.cfg.Session.Confirms():
			if err := r.handle(c); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

// waitConfirm waits for one confirm; timeout 0 waits for ever (or until
// the session fails or ctx ends).
func (r *Replayer) waitConfirm(ctx context.Context, timeout time.Duration) error {
	var expire <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expire = t.C
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	s := r.cfg.Session
	for {
		select {
		case c := <-s.Confirms():
			return r.handle(c)
		case <-s.Done():
			// Confirms that arrived before the failure are still valid.
			select {
			case c := <-s.Confirms():
				return r.handle(c)
			default:
			}
			return fmt.Errorf("the broker connection failed with %d messages unconfirmed: %v", len(r.inflight), s.Err())
		case <-ctx.Done():
			return ErrInterrupted
		case <-expire:
			return fmt.Errorf("%d messages still unconfirmed after %v", len(r.inflight), r.limit)
		case <-tick.C:
			if r.cfg.OnTick != nil {
				r.cfg.OnTick()
			}
		}
	}
}

func (r *Replayer) handle(c Confirm) error {
	seq, ok := r.inflight[c.Tag]
	if !ok {
		return nil
	}
	delete(r.inflight, c.Tag)
	switch {
	case c.Delivered():
		r.st.Confirmed++
		if r.cfg.OnConfirm != nil {
			r.cfg.OnConfirm()
		}
		return r.cfg.Ledger.Confirmed(seq)
	case c.Returned:
		r.st.Returned++
		if r.st.FirstReturn == "" {
			r.st.FirstReturn = c.Reason
		}
	default:
		r.st.Nacked++
	}
	r.cfg.Ledger.Failed(seq)
	return nil
}

// Drain waits, for at most timeout, for the confirms still outstanding,
// so that what was confirmed is recorded; it does so even after an
// interrupt.
func (r *Replayer) Drain(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	r.limit = timeout
	for len(r.inflight) > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%d messages still unconfirmed after %v", len(r.inflight), timeout)
		}
		if err := r.waitConfirm(context.Background(), left); err != nil {
			return err
		}
	}
	return nil
}

// AckLedger is the ReplayLedger of pending records: each confirmed record
// is acknowledged in the outbox, so a re-run resumes and the node will not
// publish it again.
type AckLedger struct {
	O     *Outbox
	acked int // acks queued since the last Sync
}

func (l *AckLedger) Published(uint64) {}
func (l *AckLedger) Failed(uint64)    {}
func (l *AckLedger) Confirmed(seq uint64) error {
	l.acked++
	return l.O.Ack(seq)
}
func (l *AckLedger) Unpersisted() int { return l.acked }
func (l *AckLedger) Persist() error {
	if l.acked == 0 {
		return nil
	}
	if err := l.O.Sync(); err != nil {
		return fmt.Errorf("acknowledge in the outbox: %w", err)
	}
	l.acked = 0
	return nil
}
func (l *AckLedger) Finish(bool) error { return l.Persist() }

var _ ReplayLedger = (*AckLedger)(nil)
