package rabbit

import "github.com/clickedge/clickedge/internal/wcoalesce"

// SetTestHookSetup sets the hook run between the AMQP handshake and the
// channel setup, and returns a function that removes it.
func SetTestHookSetup(f func()) (restore func()) {
	testHookSetup = f
	return func() { testHookSetup = nil }
}

// WriteCounts returns the Write calls a session's connection took and the
// kernel writes they became (internal/wcoalesce).
func WriteCounts(s any) (writes, syscalls uint64) {
	return s.(*session).netConn.(*wcoalesce.Conn).Counts()
}
