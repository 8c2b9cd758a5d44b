//go:build e2e

package e2e

import (
	"testing"
	"time"
)

// Scenario 2a: the broker is SIGKILLed while clicks flow and comes back
// after a while on the same data. Guarantees 2 and 3: every redirect is
// answered during the outage, the outbox holds the clicks, and the
// forwarder delivers them once the broker is back; publishes whose
// confirm died with the broker are sent again (at most one window).
func TestBrokerHardKill(t *testing.T) {
	h := newHarness(t)
	h.startEdge()
	h.runFor(3 * time.Second)
	f := h.beginFault("broker kill -9")
	h.node.Kill()
	h.runFor(5 * time.Second)
	h.node.Start()
	h.heal(f)
	h.runFor(5 * time.Second)
	h.settle()
	h.finish("2a broker kill -9", criteria{answerAll: true})
}

// Scenario 2b: a graceful broker restart (rabbitmqctl shutdown, start)
// while clicks flow: the broker closes the connection politely; the same
// guarantees hold.
func TestBrokerGracefulRestart(t *testing.T) {
	h := newHarness(t)
	h.startEdge()
	h.runFor(3 * time.Second)
	f := h.beginFault("broker graceful restart")
	h.node.Restart()
	h.heal(f)
	h.runFor(5 * time.Second)
	h.settle()
	h.finish("2b broker graceful restart", criteria{answerAll: true})
}
