//go:build e2e

package e2e

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/clickedge/clickedge/internal/faultproxy"
)

// edgeKill is the kind of the kill -9 faults.
const edgeKill = "edge kill -9"

// Scenario 1: kill -9 of the edge under load at random moments, restarting
// on the same data directory. Guarantee 1 (answered means durable) and 2
// (durable means delivered): every answered click arrives; a click whose
// request died with the process may arrive too (recovered). The edge runs
// the suite's write path (E2E_WRITE_PATH, else the edge's default).
func TestKill9UnderLoad(t *testing.T) {
	h := newHarness(t)
	cycles := killCycles()
	h.kill9Cycles(cycles, rand.NewPCG(seed(), 1))
	h.finish(fmt.Sprintf("1 kill -9 edge x%d (%s)", cycles, writePath()), criteria{writePath: writePath()})
}

// Scenario 1b: scenario 1 on the other write path, the one the rest of
// the suite does not run, with half the cycles (at least 10), so that
// both paths are crashed in every run.
func TestKill9UnderLoadOtherPath(t *testing.T) {
	h := newHarness(t)
	path := otherWritePath()
	h.cfg.WritePath = path
	cycles := otherPathCycles()
	h.kill9Cycles(cycles, rand.NewPCG(seed(), 2))
	h.finish(fmt.Sprintf("1b kill -9 edge x%d (%s)", cycles, path), criteria{writePath: path})
}

// kill9Cycles starts the edge, then cycles times lets the load run for a
// random 0.5-2 s, SIGKILLs the edge and restarts it on the same data
// directory; then it runs a second more and settles. The edge stays
// running.
func (h *harness) kill9Cycles(cycles int, src rand.Source) {
	h.t.Helper()
	h.startEdge()
	rng := rand.New(src)
	progress := max(1, cycles/20)
	for i := range cycles {
		h.runFor(500*time.Millisecond + time.Duration(rng.Int64N(int64(1500*time.Millisecond))))
		f := h.beginEdgeFault(edgeKill)
		h.killEdge()
		h.startEdge()
		h.heal(f)
		if (i+1)%progress == 0 {
			h.t.Logf("kill -9 cycle %d/%d: %d answered, %d delivered", i+1, cycles, h.load.answeredCount(), h.central.count())
		}
	}
	h.runFor(time.Second)
	h.settle()
}

// wrongWritePath says how the running edge's figures contradict path, or
// "" when they do not: with the log clickedge_outbox_log_records_total
// counts what it answered, with the tree it stays 0. The stages that check
// it gave their last edge a second of load before settling.
func (h *harness) wrongWritePath(path string) string {
	m, err := h.edge.metrics()
	if err != nil {
		return fmt.Sprintf("write path %s: /metrics: %v", path, err)
	}
	logged := m["clickedge_outbox_log_records_total"]
	switch {
	case path == "log" && logged == 0:
		return fmt.Sprintf("write path %s: clickedge_outbox_log_records_total = 0 after a second of load, want > 0 (did the edge run the tree?)", path)
	case path == "tree" && logged != 0:
		return fmt.Sprintf("write path %s: clickedge_outbox_log_records_total = %v, want 0 (did the edge run the log?)", path, logged)
	}
	return ""
}

// Scenario 7: SIGTERM under load. A graceful stop answers every request it
// accepted, flushes the outbox and the spill (nothing is left in memory),
// and says what it left pending; a restart on the same data directory finds
// exactly that and delivers it. First with the broker reachable, then
// during a partition so that the stop has to leave clicks pending.
func TestSIGTERMUnderLoad(t *testing.T) {
	h := newHarness(t)

	h.startEdge()
	h.runFor(3 * time.Second)
	st := h.stopEdge()
	h.note("SIGTERM, broker reachable: exit 0, left %d pending, %d unsent in the spill", st.Pending, st.SpillUnsent)
	h.checkFlushed(st)
	h.proxy.SetMode(faultproxy.Pass)
	h.load.point(h.edge.HTTP)
	h.runFor(3 * time.Second)

	f := h.beginFault("blackhole, then SIGTERM")
	h.proxy.SetMode(faultproxy.Blackhole)
	h.runFor(5 * time.Second)
	// The fault's share of answered redirects is measured while the edge
	// serves; the stop's refused requests are its own business.
	h.load.inFault.Store(false)
	st = h.stopEdge()
	h.note("SIGTERM during a partition: exit 0, left %d pending, %d unsent in the spill", st.Pending, st.SpillUnsent)
	if st.Pending == 0 {
		t.Errorf("stopped during a partition with 0 pending: the scenario did not test a non-empty outbox")
	}
	h.checkFlushed(st)
	h.proxy.SetMode(faultproxy.Pass)
	h.heal(f)
	h.load.point(h.edge.HTTP)
	h.runFor(3 * time.Second)
	h.settle()
	h.finish("7 SIGTERM under load", criteria{})
}

// checkFlushed is the reopen after a graceful stop: with the broker cut
// off (so nothing moves), the edge restarted on the same data directory
// must hold exactly the pending records the stop reported, no answered
// click may be missing from "delivered or pending", and nothing may have
// stayed in the memory spill. It leaves the edge running, the load paused
// and the proxy in Blackhole.
func (h *harness) checkFlushed(st stopLine) {
	h.t.Helper()
	if st.SpillUnsent != 0 {
		h.t.Errorf("graceful stop left %d clicks in the memory spill, want 0", st.SpillUnsent)
	}
	h.proxy.SetMode(faultproxy.Blackhole)
	// Deliveries confirmed before the stop may still be on their way.
	h.central.waitQuiet(time.Second, 10*time.Second)
	e := startEdge(h.t, writeConfig(h.t, h.dir, h.cfg), h.logPath)
	h.edge = e
	h.cur.Store(e)
	m := e.mustMetrics(h.t)
	pending := int64(m["clickedge_outbox_pending_records"])
	if pending != st.Pending {
		h.t.Errorf("reopened outbox holds %d pending records, the stop reported %d", pending, st.Pending)
	}
	undelivered := 0
	for id := range h.load.answeredIDs() {
		if !h.central.has(id) {
			undelivered++
		}
	}
	if int64(undelivered) > pending {
		h.t.Errorf("%d answered clicks are neither delivered nor among the %d pending", undelivered, pending)
	}
	h.note("reopened: %d pending; %d answered clicks not yet delivered", pending, undelivered)
}
