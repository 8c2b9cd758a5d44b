package edge

import (
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// readAheadBelow and readAheadSize: a read asking for fewer than
// readAheadBelow bytes reads up to readAheadSize from the socket into a
// pooled chunk, and the next reads are answered from it. fasthttp
// (ReduceMemoryUsage) waits for a connection's next request with a 1-byte
// read and only then takes its read buffer from a pool, so each request
// cost two read system calls: one for its first byte, one for the rest.
// With this they cost one (a request line and headers of usual size fit in
// a chunk). An idle connection still holds no buffer: the chunk is taken
// only once the socket has bytes to give (readRaw), and goes back to the
// pool as soon as the bytes beyond the small read are read, which fasthttp
// does at once.
const (
	readAheadBelow = 16
	readAheadSize  = 4 << 10
)

var readAheadPool = sync.Pool{New: func() any { b := make([]byte, readAheadSize); return &b }}

func (c *limitConn) Read(p []byte) (int, error) {
	if len(c.ahead) > 0 {
		n := copy(p, c.ahead)
		c.ahead = c.ahead[n:]
		if len(c.ahead) == 0 {
			c.releaseAhead()
		}
		return n, nil
	}
	if len(p) == 0 || len(p) >= readAheadBelow || c.raw == nil {
		n, err := c.Conn.Read(p)
		c.moved(n)
		return n, err
	}
	bp, n, err := c.readRaw()
	c.moved(n)
	if bp == nil {
		return 0, err
	}
	k := copy(p, (*bp)[:n])
	if k < n {
		c.aheadBuf, c.ahead = bp, (*bp)[k:n]
	} else {
		c.putChunk(bp)
	}
	return k, nil
}

// releaseAhead gives the read-ahead chunk back to the pool.
func (c *limitConn) releaseAhead() {
	if c.aheadBuf != nil {
		c.putChunk(c.aheadBuf)
		c.aheadBuf, c.ahead = nil, nil
	}
}

// readRaw reads what the socket has into a chunk from readAheadPool,
// waiting (under the connection's read deadline) until it has something.
// The chunk is taken only once a read returns bytes: a connection waiting
// for its next request holds none. It returns the chunk and the count
// read, or a nil chunk and the error (io.EOF when the peer closed).
func (c *limitConn) readRaw() (*[]byte, int, error) {
	err := c.raw.Read(c.readFD)
	bp, n, rerr := c.rd.bp, c.rd.n, c.rd.err
	c.rd = rawRead{}
	switch {
	case err != nil: // a deadline, or the connection was closed
		return nil, 0, c.opError(err)
	case rerr != nil:
		c.putChunk(bp)
		return nil, 0, c.opError(os.NewSyscallError("read", rerr))
	case n <= 0:
		c.putChunk(bp)
		return nil, 0, io.EOF
	}
	return bp, n, nil
}

// rawRead is what one readOnce took from the socket.
type rawRead struct {
	bp  *[]byte
	n   int
	err error
}

// readOnce is the connection's readFD, called by the poller with the
// descriptor: one read into a chunk, kept in c.rd. It reports false (wait
// until the socket is readable) when the socket is empty, and gives the
// chunk back then.
func (c *limitConn) readOnce(fd uintptr) bool {
	c.rd.bp = c.getChunk()
	for {
		c.rd.n, c.rd.err = syscall.Read(int(fd), *c.rd.bp)
		if c.rd.err != syscall.EINTR {
			break
		}
	}
	if c.rd.err == syscall.EAGAIN {
		c.putChunk(c.rd.bp)
		c.rd = rawRead{}
		if c.counts != nil {
			c.counts.waits.Add(1)
		}
		return false
	}
	return true
}

// opError wraps err as the net package's own reads do.
func (c *limitConn) opError(err error) error {
	if _, ok := err.(*net.OpError); ok {
		return err
	}
	return &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// readAheadCounts counts, for a test, the chunks a listener's connections
// hold (a connection waiting for a request holds none:
// TestIdleConnectionsHoldNoChunk) and the small reads that found the
// socket empty and waited. Nil outside tests: nothing shared is written
// per request.
type readAheadCounts struct {
	held, waits atomic.Int64
}

func (c *limitConn) getChunk() *[]byte {
	if c.counts != nil {
		c.counts.held.Add(1)
	}
	return readAheadPool.Get().(*[]byte)
}

func (c *limitConn) putChunk(bp *[]byte) {
	if c.counts != nil {
		c.counts.held.Add(-1)
	}
	readAheadPool.Put(bp)
}
