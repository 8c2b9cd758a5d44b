package edge

import (
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
)

// readRaw reads what the socket has into a chunk from readAheadPool,
// waiting (under the connection's read deadline) until it has something.
// The chunk is taken only once a read returns bytes: a connection waiting
// for its next request holds none. It returns the chunk and the count
// read, or a nil chunk and the error (io.EOF when the peer closed).
func (c *limitConn) readRaw() (*[]byte, int, error) {
	var (
		bp   *[]byte
		n    int
		rerr error
	)
	err := c.raw.Read(func(fd uintptr) bool {
		bp = getChunk()
		for {
			n, rerr = syscall.Read(int(fd), *bp)
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			putChunk(bp)
			bp = nil
			readWaits.Add(1)
			return false // wait until the socket is readable
		}
		return true
	})
	switch {
	case err != nil: // a deadline, or the connection was closed
		return nil, 0, c.opError(err)
	case rerr != nil:
		putChunk(bp)
		return nil, 0, c.opError(os.NewSyscallError("read", rerr))
	case n <= 0:
		putChunk(bp)
		return nil, 0, io.EOF
	}
	return bp, n, nil
}

// opError wraps err as the net package's own reads do.
func (c *limitConn) opError(err error) error {
	if _, ok := err.(*net.OpError); ok {
		return err
	}
	return &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// chunksHeld counts the read-ahead chunks out of the pool: a connection
// waiting for a request holds none (TestIdleConnectionsHoldNoChunk).
var chunksHeld atomic.Int64

// readWaits counts the small reads that found the socket empty and waited
// for it: a test's way to know its readers are waiting.
var readWaits atomic.Int64

func getChunk() *[]byte {
	chunksHeld.Add(1)
	return readAheadPool.Get().(*[]byte)
}

func putChunk(bp *[]byte) {
	chunksHeld.Add(-1)
	readAheadPool.Put(bp)
}
