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
	numEvents      = eventBadTarget + 1
)

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

// log logs msg at Warn (Error for lost clicks and refused targets) unless
// the event was logged less than a second ago.
func (l *logLimiter) log(lg *slog.Logger, ev int, msg string, err error, args ...any) {
	slot := &l.slots[ev]
	now := l.now().UnixNano()
	next := slot.next.Load()
	if now < next || !slot.next.CompareAndSwap(next, now+int64(time.Second)) {
		slot.suppressed.Add(1)
		return
	}
	level := slog.LevelWarn
	if ev >= eventDropped {
		level = slog.LevelError
	}
	if err != nil {
		args = append(args, "kind", errKindNames[ev%numErrKinds], "err", err)
	}
	args = append(args, "suppressed", slot.suppressed.Swap(0))
	lg.Log(context.Background(), level, msg, args...)
}
