package outbox

import (
	"context"
	"errors"
)

// Publisher opens sessions with the broker. The forwarder drives it; the
// amqp091-go implementation is outbox/rabbit.
type Publisher interface {
	// Connect opens a session that is ready to publish: connected, in
	// confirm mode, topology declared. It returns an error when no broker
	// could be reached before ctx ends; the forwarder backs off and calls
	// it again. Never called concurrently.
	Connect(ctx context.Context) (Session, error)
}

// Session is one connection with publisher confirms. Publish is called from
// the forwarder's goroutine only; Close may be called from any goroutine and
// more than once.
type Session interface {
	// Publish sends r and returns its delivery tag on this session: 1 for
	// the first publish, then 2, 3, ... It returns once the message is
	// handed to the connection, without waiting for its confirm. While the
	// broker has blocked the connection (connection.blocked) it waits, and
	// returns ErrBlocked if ctx ends first; the session stays usable. Any
	// other error means the session failed.
	Publish(ctx context.Context, r *Record) (tag uint64, err error)

	// Confirms delivers the outcome of every published tag exactly once,
	// while the session lives. The channel's buffer must hold at least the
	// forwarder's window, so that the session never blocks on it.
	Confirms() <-chan Confirm

	// Done is closed when the session has failed or was closed; Err then
	// says why. Outstanding tags will get no confirm.
	Done() <-chan struct{}
	Err() error

	// Blocked reports whether the broker has blocked publishing
	// (connection.blocked, for a resource alarm).
	Blocked() bool

	// Addr names the broker the session is connected to, without
	// credentials.
	Addr() string

	Close() error
}

// Confirm is the broker's answer for one published message.
type Confirm struct {
	Tag uint64
	// Ack is true for basic.ack, false for basic.nack.
	Ack bool
	// Returned is true when a basic.return preceded the ack: the message
	// was unroutable (mandatory, no queue bound) and reached nobody.
	Returned bool
	// Reason is the return's reply text, for logs.
	Reason string
}

// Delivered reports whether the broker took responsibility for the message.
func (c Confirm) Delivered() bool { return c.Ack && !c.Returned }

// ErrBlocked is returned by Session.Publish when ctx ended while the broker
// had blocked publishing.
var ErrBlocked = errors.New("outbox: broker blocked publishing")
