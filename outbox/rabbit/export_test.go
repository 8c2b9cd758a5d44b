package rabbit

// SetTestHookSetup sets the hook run between the AMQP handshake and the
// channel setup, and returns a function that removes it.
func SetTestHookSetup(f func()) (restore func()) {
	testHookSetup = f
	return func() { testHookSetup = nil }
}
