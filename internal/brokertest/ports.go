package brokertest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// portPair is an AMQP port and the Erlang distribution port after it,
// reserved for one node for its whole life.
//
// Ports come from below the kernel's ephemeral range, so the kernel never
// hands them to another socket on its own, and each pair is claimed with an
// abstract unix socket named after it. The claim is what keeps two test
// binaries apart: a booting node binds its ports only seconds after they
// were found free, and another binary probing in between would find them
// free too. The kernel drops the claim when the process dies, so it never
// leaks.
type portPair struct {
	amqp, dist int
	claim      net.Listener
}

func (p *portPair) release() {
	if p != nil && p.claim != nil {
		p.claim.Close()
		p.claim = nil
	}
}

// portRange is where pairs are drawn from: [lo, hi).
func portRange() (lo, hi int) {
	lo, hi = 20000, 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return lo, hi
	}
	if eph, err := strconv.Atoi(f[0]); err == nil && eph-lo >= 1000 {
		hi = eph
	}
	return lo, hi
}

// claimPorts finds and claims a free pair.
func claimPorts() (*portPair, error) {
	lo, hi := portRange()
	var lastErr error
	for range 200 {
		base := lo + 2*rand.IntN((hi-lo)/2) // even, so pairs never overlap
		p, err := claimPair(base)
		if err == nil {
			return p, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("no free port pair in [%d, %d): %w", lo, hi, lastErr)
}

func claimPair(base int) (*portPair, error) {
	claim, err := net.Listen("unix", "@clickedge-brokertest-port-"+strconv.Itoa(base))
	if err != nil {
		return nil, fmt.Errorf("port %d claimed by another test: %w", base, err)
	}
	for _, port := range []int{base, base + 1} {
		if err := probe(port); err != nil {
			claim.Close()
			return nil, err
		}
	}
	return &portPair{amqp: base, dist: base + 1, claim: claim}, nil
}

// probe checks that nothing listens on 127.0.0.1:port.
func probe(port int) error {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("port %d busy: %w", port, err)
	}
	return ln.Close()
}

// errPortClash is returned by a start that failed because a port or the node
// name was taken after all; StartNode retries with fresh ones.
var errPortClash = errors.New("port or node name already in use")
