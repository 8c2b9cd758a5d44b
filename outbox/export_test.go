package outbox

import "os"

// Hooks for the external tests.

// SetBeforeCommit makes f run before each commit to the tree and, with the
// log, before each write to the log: the same disk.
func SetBeforeCommit(o *Options, f func() error) {
	o.beforeCommit = f
	o.beforeLog = f
}

// SetBeforeMove makes f run before each commit to the tree only: with the
// log, appends are answered while the moves into the tree wait.
func SetBeforeMove(o *Options, f func() error) { o.beforeCommit = f }

func init() {
	// OUTBOX_TEST_LOG=1 runs every test with Options.Log on.
	testLog = os.Getenv("OUTBOX_TEST_LOG") == "1"
}

// ClearWriteBackoff ends the write back-off after a failed commit, so a
// test need not wait for it.
func (o *Outbox) ClearWriteBackoff() { o.failedUntil.Store(0) }

// SetBeforeLog makes f run before each write to the log only.
func SetBeforeLog(o *Options, f func() error) { o.beforeLog = f }
