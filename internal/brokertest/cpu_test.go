package brokertest

import (
	"net"
	"os"
	"strings"
	"testing"
)

// TestLocalPID listens on a port and checks that LocalPID finds this very
// process behind it, and nobody behind a port nothing listens on.
func TestLocalPID(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := strings.Cut(ln.Addr().String(), ":")
	if got := LocalPID("amqp://guest:guest@127.0.0.1:" + port + "/"); got != os.Getpid() {
		t.Errorf("LocalPID(port %s) = %d, want this process %d", port, got, os.Getpid())
	}
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	free := strings.Split(ln2.Addr().String(), ":")[1]
	ln2.Close()
	if got := LocalPID("amqp://127.0.0.1:" + free + "/"); got != 0 {
		t.Errorf("LocalPID(closed port %s) = %d, want 0", free, got)
	}
	if CPUTime(os.Getpid()) <= 0 {
		t.Error("CPUTime of this process is 0")
	}
}
