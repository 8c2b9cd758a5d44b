//go:build e2e

package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/clickedge/clickedge/internal/faultproxy"
)

// Scenario 3a: a partition that drops packets: the fault proxy holds every
// byte both ways and closes nothing, for E2E_BLACKHOLE (60 s). The edge
// notices through missed heartbeats, keeps answering from the outbox, and
// delivers the backlog after the heal.
func TestPartitionBlackhole(t *testing.T) {
	h := newHarness(t)
	h.startEdge()
	h.runFor(3 * time.Second)
	f := h.beginFault(fmt.Sprintf("blackhole %v", blackholeFor()))
	h.proxy.SetMode(faultproxy.Blackhole)
	h.runFor(blackholeFor())
	h.proxy.SetMode(faultproxy.Pass)
	h.heal(f)
	h.runFor(5 * time.Second)
	h.settle()
	h.finish(fmt.Sprintf("3a blackhole %v", blackholeFor()), criteria{answerAll: true})
}

// Scenario 3b: connections reset: every connection gets a TCP RST and new
// ones are reset at once, for 10 s; then five short flaps (1 s reset, 2 s
// pass), which catch the edge in the middle of reconnecting.
func TestPartitionReset(t *testing.T) {
	h := newHarness(t)
	h.startEdge()
	h.runFor(3 * time.Second)
	f := h.beginFault("reset 10s")
	h.proxy.SetMode(faultproxy.Reset)
	h.runFor(10 * time.Second)
	h.proxy.SetMode(faultproxy.Pass)
	h.heal(f)
	h.runFor(3 * time.Second)
	for range 5 {
		f := h.beginFault("reset flap 1s")
		h.proxy.SetMode(faultproxy.Reset)
		h.runFor(time.Second)
		h.proxy.SetMode(faultproxy.Pass)
		h.heal(f)
		h.runFor(2 * time.Second)
	}
	h.runFor(3 * time.Second)
	h.settle()
	h.finish("3b reset + 5 flaps", criteria{answerAll: true})
}

// Scenario 3c: one-way loss for 15 s: publishes reach the broker (and the
// consumer), but confirms and heartbeats from the broker are lost. The
// edge must keep every unconfirmed click pending and publish it again
// after the heal; those are the expected duplicates, at most one window.
func TestPartitionOneWay(t *testing.T) {
	h := newHarness(t)
	h.startEdge()
	h.runFor(3 * time.Second)
	f := h.beginFault("drop broker->client 15s")
	h.proxy.SetMode(faultproxy.DropServerToClient)
	h.runFor(15 * time.Second)
	h.proxy.SetMode(faultproxy.Pass)
	h.heal(f)
	h.runFor(5 * time.Second)
	h.settle()
	h.finish("3c one-way loss 15s", criteria{answerAll: true})
}
