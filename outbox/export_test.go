package outbox

// Hooks for the external tests.

func SetBeforeCommit(o *Options, f func() error) { o.beforeCommit = f }

// ClearWriteBackoff ends the write back-off after a failed commit, so a
// test need not wait for it.
func (o *Outbox) ClearWriteBackoff() { o.failedUntil.Store(0) }
