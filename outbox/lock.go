package outbox

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// lockFile takes an flock on f, exclusive or shared, waiting up to timeout.
// bbolt takes the same lock on the same open file later, which then
// succeeds at once: holding it first lets the outbox check the file before
// bbolt reads it.
func lockFile(f *os.File, exclusive bool, timeout time.Duration) error {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}
