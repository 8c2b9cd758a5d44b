package wcoalesce

import (
	"net"
	"sync"
)

// MaxPending bounds the bytes waiting for the writer.
const MaxPending = 4 << 20

// Conn is a net.Conn whose writes are coalesced. Reads, deadlines and
// addresses are the wrapped connection's.
type Conn struct {
	net.Conn

	mu      sync.Mutex
	cond    *sync.Cond // signalled when the writer takes or finishes a buffer
	pending []byte     // written, not yet handed to the kernel
	spare   []byte     // the writer's last buffer, reused
	busy    bool       // the writer goroutine is running
	err     error      // sticky write error
	closed  bool

	writes, syscalls uint64
}

// New wraps c.
func New(c net.Conn) *Conn {
	w := &Conn{Conn: c}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// Write queues p and returns. The first write after an idle spell starts a
// writer goroutine that drains the queue and ends when it is empty.
func (w *Conn) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.err == nil && !w.closed && len(w.pending) > 0 && len(w.pending)+len(p) > MaxPending {
		w.cond.Wait()
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, net.ErrClosed
	}
	w.pending = append(w.pending, p...)
	w.writes++
	if !w.busy {
		w.busy = true
		go w.flush()
	}
	return len(p), nil
}

// flush writes pending buffers until none is left.
func (w *Conn) flush() {
	w.mu.Lock()
	for len(w.pending) > 0 && w.err == nil && !w.closed {
		buf := w.pending
		w.pending = w.spare[:0]
		w.syscalls++
		w.cond.Broadcast()
		w.mu.Unlock()
		_, err := w.Conn.Write(buf)
		w.mu.Lock()
		w.spare = buf[:0]
		if err != nil && w.err == nil {
			w.err = err
			w.Conn.Close()
		}
	}
	w.busy = false
	w.cond.Broadcast()
	w.mu.Unlock()
}

// Close closes the wrapped connection; queued bytes are dropped.
func (w *Conn) Close() error {
	w.mu.Lock()
	w.closed = true
	w.pending = nil
	w.cond.Broadcast()
	w.mu.Unlock()
	return w.Conn.Close()
}

// Flush waits until every byte written so far has been handed to the
// kernel, or the connection failed; it returns the sticky error.
func (w *Conn) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.busy && w.err == nil && !w.closed {
		w.cond.Wait()
	}
	return w.err
}

// Counts returns the Write calls so far and the kernel writes they became.
func (w *Conn) Counts() (writes, syscalls uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writes, w.syscalls
}
