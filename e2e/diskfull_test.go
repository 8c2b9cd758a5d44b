//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/clickedge/clickedge/internal/faultproxy"
)

// tmpfsSize is the filesystem the edge's data directory sits on in the
// disk-full scenarios.
const tmpfsSize = "16m"

// Scenario 5a: the disk fills up while the broker is cut off (so the
// outbox must grow, and cannot). Guarantee 4 with the default policy
// (on_error: spill): every redirect is still answered, the clicks that
// cannot be written go to the memory spill, the forwarder delivers the
// spill and the file after the heal, and the counts add up: answered =
// delivered + counted as dropped, exactly, with nothing dropped while the
// spill has room. Run in both durability modes (harden, "done when").
func TestDiskFull(t *testing.T) {
	for _, mode := range []string{"sync", "async"} {
		t.Run(mode, func(t *testing.T) {
			h := newHarness(t)
			r := h.diskFull(diskFullOptions{durability: mode})
			if r.dropped != 0 {
				t.Errorf("%v clicks dropped with a 32MiB spill, want 0", r.dropped)
			}
			dropped := int(r.dropped)
			h.finish("5a disk full (spill, "+mode+")", criteria{answerAll: true, lost: &dropped})
		})
	}
}

// Scenario 5b: as 5a with a spill of 256 KiB, which overflows: the clicks
// that fit neither on disk nor in the spill are lost, but never silently:
// each is counted in clickedge_clicks_total{outcome="dropped"} (and
// logged), the user is still redirected, and exactly those clicks are the
// ones missing at the consumer: answered = delivered + dropped. In async
// mode the losses include clicks answered before a commit that failed
// (harden #2), counted by the outbox after their answer.
func TestDiskFullSpillOverflow(t *testing.T) {
	for _, mode := range []string{"sync", "async"} {
		t.Run(mode, func(t *testing.T) {
			h := newHarness(t)
			r := h.diskFull(diskFullOptions{spillBytes: "256KiB", durability: mode})
			if r.dropped == 0 {
				t.Errorf("no click dropped with a 256KiB spill: the overflow was not exercised")
			}
			dropped := int(r.dropped)
			h.finish("5b disk full, spill overflows ("+mode+")", criteria{answerAll: true, lost: &dropped})
		})
	}
}

type diskFullOptions struct {
	spillBytes string
	durability string // "" = sync
}

// diskFullCounts are the edge's click outcomes.
type diskFullCounts struct {
	recorded, spilled, dropped, rejected float64
}

// diskFull runs the scenario and checks that the counts add up; the
// caller checks dropped and finishes.
func (h *harness) diskFull(o diskFullOptions) diskFullCounts {
	t := h.t
	t.Helper()
	mnt := filepath.Join(h.dir, "data")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	method := "tmpfs of " + tmpfsSize + " as data_dir, filled with a file"
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+tmpfsSize, "tmpfs", mnt).CombinedOutput()
	mounted := err == nil
	if mounted {
		t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	} else {
		method = fmt.Sprintf("outbox.max_bytes: 1MiB (mounting a tmpfs failed: %v: %s)", err, out)
		h.cfg.MaxBytes = "1MiB"
	}
	h.note("disk full method: %s", method)
	h.details["disk_full_method"] = method
	h.cfg.DataDir = mnt
	h.cfg.Retention = "0s" // delivered records free their space at once
	h.cfg.SpillBytes = o.spillBytes
	h.cfg.Durability = o.durability

	h.startEdge()
	h.runFor(2 * time.Second)
	f := h.beginFault("disk full, broker cut off")
	h.proxy.SetMode(faultproxy.Blackhole)
	filler := filepath.Join(mnt, "filler")
	if mounted {
		n, err := fill(filler)
		if err != nil {
			t.Fatalf("fill %s: %v", mnt, err)
		}
		h.note("filled the tmpfs with %d bytes", n)
	}
	h.runFor(8 * time.Second)
	m := h.edge.mustMetrics(t)
	if m[`clickedge_clicks_total{outcome="spilled"}`] == 0 {
		t.Errorf("no click was spilled while the disk was full: the scenario did not test the policy")
	}
	h.proxy.SetMode(faultproxy.Pass)
	h.heal(f)
	h.runFor(5 * time.Second)
	if mounted {
		// The ops answer to a full disk: free space. Records already on
		// disk are delivered either way; this lets the edge store again.
		os.Remove(filler)
	}
	h.runFor(3 * time.Second)
	h.settleMissing(int(h.edge.mustMetrics(t)[`clickedge_clicks_total{outcome="dropped"}`]))

	m = h.edge.mustMetrics(t)
	c := diskFullCounts{
		recorded: m[`clickedge_clicks_total{outcome="recorded"}`],
		spilled:  m[`clickedge_clicks_total{outcome="spilled"}`],
		dropped:  m[`clickedge_clicks_total{outcome="dropped"}`],
		rejected: m[`clickedge_clicks_total{outcome="rejected"}`],
	}
	answered := h.load.answeredCount()
	h.note("clicks: %v recorded + %v spilled + %v dropped = %v; %d answered; spill dropped counter %v, commit errors %v",
		c.recorded, c.spilled, c.dropped, c.recorded+c.spilled+c.dropped, answered,
		m["clickedge_outbox_spill_dropped_records_total"], m["clickedge_outbox_commit_errors_total"])
	h.details["recorded"], h.details["spilled"], h.details["dropped"] = c.recorded, c.spilled, c.dropped
	// Each answered click is counted once as recorded or spilled (or
	// dropped when the spill refused it). In async mode a recorded click
	// can be dropped later too (its commit failed and the spill was full),
	// so there dropped may overlap recorded.
	sum := c.recorded + c.spilled + c.dropped
	if o.durability == "async" {
		if c.recorded+c.spilled > float64(answered) || sum < float64(answered) || c.rejected != 0 {
			t.Errorf("async: recorded %v + spilled %v = %v, + dropped %v = %v; want the %d answered GETs between (rejected %v, want 0)",
				c.recorded, c.spilled, c.recorded+c.spilled, c.dropped, sum, answered, c.rejected)
		}
	} else if sum != float64(answered) || c.rejected != 0 {
		t.Errorf("recorded %v + spilled %v + dropped %v = %v, want the %d answered GETs (rejected %v, want 0)",
			c.recorded, c.spilled, c.dropped, sum, answered, c.rejected)
	}
	// The equality of the "done when": answered = delivered +
	// counted as dropped, exactly (finish checks it again as lost ==
	// dropped, with samples).
	if missing := h.waitCaughtUp(int(c.dropped), 0); missing != int(c.dropped) {
		t.Errorf("answered %d = delivered %d + dropped %v does not hold: %d answered clicks missing",
			answered, answered-missing, c.dropped, missing)
	}
	if sd := m["clickedge_outbox_spill_dropped_records_total"]; sd != c.dropped {
		t.Errorf("clickedge_outbox_spill_dropped_records_total = %v, clicks_total{dropped} = %v: want the same count", sd, c.dropped)
	}
	return c
}

// fill writes path until the filesystem is full and returns the bytes
// written.
func fill(path string) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n int64
	for _, size := range []int{1 << 20, 4 << 10, 1} {
		buf := make([]byte, size)
		for {
			w, err := f.Write(buf)
			n += int64(w)
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				return n, err
			}
		}
	}
	return n, f.Sync()
}
