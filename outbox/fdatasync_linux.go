package outbox

import (
	"os"
	"syscall"
)

// fdatasync flushes f's data, and its metadata only where reading the data
// back needs it (the log never changes its size, so none).
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
