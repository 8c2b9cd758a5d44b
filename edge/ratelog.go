package edge

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/clickedge/clickedge/outbox"
)

// Kinds of recording errors. A sick disk fails every click the same way; one
// log line per kind per second says so without flooding the log.
const (
	errFull = iota
	errOverloaded
	errWrite
	errTimeout
	errInvalid
	errClosed
	errSpillFull
	errOther
	numErrKinds
)

var errKindNames = [numErrKinds]string{"full", "overloaded", "write", "timeout", "invalid", "closed", "spill_full", "other"}

func errorKind(err error) int {
	switch {
	case errors.Is(err, outbox.ErrFull):
		return errFull
	case errors.Is(err, outbox.ErrOverloaded):
		return errOverloaded
	case errors.Is(err, outbox.ErrWrite):
		return errWrite
	case errors.Is(err, outbox.ErrTimeout):
		return errTimeout
	case errors.Is(err, outbox.ErrInvalidRecord):
		return errInvalid
	case errors.Is(err, outbox.ErrClosed):
		return errClosed
	case errors.Is(err, outbox.ErrSpillFull):
		return errSpillFull
	}
	return errOther
}

// Rate-limited events: one slot per (what happened, kind of error).
const (
	eventSpilled   = 0
	eventRejected  = eventSpilled + numErrKinds
	eventDropped   = eventRejected + numErrKinds
	eventBadTarget = eventDropped + numErrKinds
	eventTransport = eventBadTarget + 1 // the fasthttp server's own errors (FastServer)
	numEvents      = eventTransport + 1
)

// eventLevel is Error for lost clicks and refused targets, Warn otherwise.
func eventLevel(ev int) slog.Level {
	if ev >= eventDropped && ev <= eventBadTarget {
		return slog.LevelError
	}
	return slog.LevelWarn
}

// logLimiter lets through at most one log line per second per event; the
// next line that gets through says how many were left out. It takes no
// lock: a click that fails does not queue behind others to find out
// whether to log.
type logLimiter struct {
	now   func() time.Time
	slots [numEvents]struct {
		next       atomic.Int64 // unix nanos before which the event is not logged
		suppressed atomic.Uint64
	}
}

// allow reports whether ev may be logged now, and if so how many times it
// was left out since it last was.
func (l *logLimiter) allow(ev int) (suppressed uint64, ok bool) {
	slot := &l.slots[ev]
	now := l.now().UnixNano()
	next := slot.next.Load()
	if now < next || !slot.next.CompareAndSwap(next, now+int64(time.Second)) {
		slot.suppressed.Add(1)
		return 0, false
	}
	return slot.suppressed.Swap(0), true
}

// log logs msg at eventLevel(ev) unless the event was logged less than a
// second ago.
func (l *logLimiter) log(lg *slog.Logger, ev int, msg string, err error, args ...any) {
	suppressed, ok := l.allow(ev)
	if !ok {
		return
	}
	if err != nil {
		args = append(args, "kind", errKindNames[ev%numErrKinds], "err", err)
	}
	args = append(args, "suppressed", suppressed)
	lg.Log(context.Background(), eventLevel(ev), msg, args...)
}
