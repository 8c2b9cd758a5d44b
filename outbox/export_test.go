package outbox

// Hooks for the external tests.

func SetBeforeCommit(o *Options, f func() error) { o.beforeCommit = f }
