//go:build e2e

package e2e

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clickedge/clickedge/internal/faultproxy"
)

// Scenario 6: a damaged outbox file. Guarantee 5: the node refuses to
// start on it, exits non-zero, and its message names the file and says
// what to do (clickedge outbox salvage); it never starts and silently
// skips records. Then the salvage path: the readable records are copied
// into a fresh data directory, a node started on it delivers them, and
// nothing that was never answered appears.
func TestCorruptOutbox(t *testing.T) {
	h := newHarness(t)
	// Cut off so every click stays pending in the file.
	h.proxy.SetMode(faultproxy.Blackhole)
	h.startEdge()
	h.runFor(3 * time.Second)
	st := h.stopEdge()
	if st.Pending == 0 {
		t.Fatalf("the stopped edge left nothing pending: nothing to damage")
	}
	h.cur.Store(nil)
	path := filepath.Join(h.cfg.DataDir, "outbox.db")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h.note("stopped with %d clicks pending in a %d-byte outbox file", st.Pending, len(orig))
	cfgPath := writeConfig(t, h.dir, h.cfg)

	damages := []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"truncated to half of its data", truncateHalf},
		{"one bit flipped in the middle of every data page", flipEveryPage},
	}
	for _, d := range damages {
		if err := os.WriteFile(path, d.damage(append([]byte(nil), orig...)), 0o600); err != nil {
			t.Fatal(err)
		}
		code, out := runServe(t, cfgPath, 30*time.Second)
		switch {
		case code == -1:
			t.Errorf("%s: serve was still running after 30s, want it to refuse the file", d.name)
		case code == 0:
			t.Errorf("%s: serve exited 0, want non-zero", d.name)
		case !strings.Contains(out, path) || !strings.Contains(out, "clickedge outbox salvage"):
			t.Errorf("%s: serve exited %d with a message that does not name %s and `clickedge outbox salvage`:\n%s", d.name, code, path, out)
		default:
			h.note("%s: serve refused it, exit %d", d.name, code)
		}
	}

	// Salvage the truncated copy: the readable half is what an operator
	// can still deliver.
	if err := os.WriteFile(path, truncateHalf(append([]byte(nil), orig...)), 0o600); err != nil {
		t.Fatal(err)
	}
	salvaged, recovered := false, -1
	t.Run("salvage", func(t *testing.T) {
		// harden #9: salvage ships in the binary; a build without it is a
		// failure, not a skip that hides the step.
		if !hasSalvage(t) {
			t.Fatal("`clickedge outbox salvage` is not in this binary")
		}
		newDir := filepath.Join(h.dir, "salvaged")
		// Exit 0: nothing known to be missing; 1: some records could not
		// be read, the readable ones are in NEWDIR all the same.
		code, out := runTool(t, 2*time.Minute, "outbox", "salvage", "-data", h.cfg.DataDir, "-out", newDir)
		if _, err := os.Stat(filepath.Join(newDir, "outbox.db")); code > 1 || err != nil {
			t.Fatalf("clickedge outbox salvage exited %d, salvaged file: %v:\n%s", code, err, out)
		}
		if m := recoveredRe.FindStringSubmatch(out); m != nil {
			recovered, _ = strconv.Atoi(m[1])
		}
		h.note("salvage of the half file: exit %d, %d records recovered", code, recovered)
		if code, out := runTool(t, time.Minute, "outbox", "verify", "-data", newDir); code != 0 {
			t.Errorf("clickedge outbox verify of the salvaged outbox exited %d:\n%s", code, out)
		}
		h.cfg.DataDir = newDir
		h.proxy.SetMode(faultproxy.Pass)
		start := time.Now()
		h.startEdge()
		h.load.point("") // only the salvaged clicks
		deadline := start.Add(deliverTimeout)
		for {
			if m, err := h.edge.metrics(); err == nil && m["clickedge_outbox_pending_records"] == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the node started on the salvaged outbox still has records pending after %v", deliverTimeout)
			}
			time.Sleep(100 * time.Millisecond) // polling, with a deadline
		}
		h.note("a node started on the salvaged outbox delivered it in %.1fs", time.Since(start).Seconds())
		salvaged = true
	})
	h.load.halt()
	h.central.waitQuiet(time.Second, 15*time.Second)
	r := h.compute("6 corrupt outbox")
	if salvaged {
		if r.DeliveredUnique == 0 || (recovered >= 0 && r.DeliveredUnique != recovered) {
			t.Errorf("delivered %d clicks from the salvaged outbox, salvage recovered %d", r.DeliveredUnique, recovered)
		}
		h.note("salvaged and delivered %d of %d clicks; the other %d were in the cut-off half of the file",
			r.DeliveredUnique, r.Answered, r.Answered-r.DeliveredUnique)
	} else {
		t.Errorf("the salvage step failed: nothing to deliver")
	}
	// Lost here is what the damage destroyed, not the edge: the criteria
	// are the refusals above, the salvage delivering what it recovered,
	// and no unexpected clicks. There is no heal to resume after.
	lost := r.Lost
	h.finish("6 corrupt outbox", criteria{lost: &lost, noResume: true})
}

// recoveredRe finds the record count in salvage's report.
var recoveredRe = regexp.MustCompile(`(?m)^recovered\s+(\d+) records`)

// truncateHalf cuts the file to half of its data. The file is larger than
// its data (bbolt grows it ahead in steps, leaving zeros), and cutting only
// zeros beyond the last page in use damages nothing, so the cut is made
// relative to the last non-zero byte.
func truncateHalf(b []byte) []byte {
	end := len(b)
	for end > 0 && b[end-1] == 0 {
		end--
	}
	return b[:end/2]
}

// flipEveryPage flips one bit in the middle of every page after the two
// meta pages, so that every page in use (branch, leaf, freelist) is damaged
// and an Open that read any of them without checking would misbehave.
func flipEveryPage(b []byte) []byte {
	// bbolt's meta page: a 16-byte page header, then magic, version and
	// page size (little-endian uint32s).
	ps := int(binary.LittleEndian.Uint32(b[24:28]))
	if ps < 1024 || ps > 1<<16 {
		ps = 4096
	}
	for off := 2 * ps; off+ps <= len(b); off += ps {
		b[off+ps/2] ^= 0x10
	}
	return b
}

// hasSalvage reports whether the binary has `clickedge outbox salvage`.
func hasSalvage(t testing.TB) bool {
	code, out := runTool(t, 30*time.Second, "outbox", "salvage", "-h")
	return code != 2 || !strings.Contains(out, `unknown command "outbox"`)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
