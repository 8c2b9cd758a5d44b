//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

var binPath string

// binary is the clickedge binary under test.
func edgeBinary() string { return binPath }

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	binPath = os.Getenv("E2E_BIN")
	if binPath == "" {
		dir, err := os.MkdirTemp("", "clickedge-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		binPath = filepath.Join(dir, "clickedge")
		start := time.Now()
		cmd := exec.Command(goTool(), "build", "-o", binPath, "github.com/clickedge/clickedge/cmd/clickedge")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: build clickedge: %v\n", err)
			return 1
		}
		fmt.Printf("e2e: built %s in %v\n", binPath, time.Since(start).Round(time.Millisecond))
	} else if abs, err := filepath.Abs(binPath); err == nil {
		binPath = abs
	}
	if _, err := os.Stat(binPath); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: E2E_BIN: %v\n", err)
		return 1
	}
	fmt.Printf("e2e: binary %s, seed %d, kill -9 cycles %d (%s; %d on %s), rate %d/s, blackhole %v\n",
		binPath, seed(), killCycles(), writePath(), otherPathCycles(), otherWritePath(), loadRate(), blackholeFor())
	code := m.Run()
	writeReport()
	return code
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// envInt reads a positive integer knob, or def.
func envInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			panic(fmt.Sprintf("e2e: %s=%q: want a number >= 0", name, v))
		}
		return n
	}
	return def
}

// killCycles is E2E_CYCLES: kill -9 cycles in scenario 1.
func killCycles() int { return max(1, envInt("E2E_CYCLES", 40)) }

// otherPathCycles is the kill -9 cycles of scenario 1b: half of
// E2E_CYCLES, at least 10.
func otherPathCycles() int { return max(10, killCycles()/2) }

// edgeDefaultWritePath is outbox.write_path when the config leaves it out
// (docs/configuration.md). The kill -9 stages check through /metrics that
// the edge ran the path their names say, so a change of the default fails
// them rather than mislabel them.
const edgeDefaultWritePath = "log"

// writePath is E2E_WRITE_PATH: the outbox.write_path of every edge but
// scenario 1b's; the edge's default when unset.
func writePath() string {
	switch v := os.Getenv("E2E_WRITE_PATH"); v {
	case "":
		return edgeDefaultWritePath
	case "tree", "log":
		return v
	default:
		panic(fmt.Sprintf("e2e: E2E_WRITE_PATH=%q: want tree or log", v))
	}
}

// otherWritePath is the write path writePath is not: scenario 1b's.
func otherWritePath() string {
	if writePath() == "log" {
		return "tree"
	}
	return "log"
}

// loadRate is E2E_RATE: the clicks per second the driver offers.
func loadRate() int { return envInt("E2E_RATE", 1000) }

// blackholeFor is E2E_BLACKHOLE: how long the partition lasts.
func blackholeFor() time.Duration {
	if v := os.Getenv("E2E_BLACKHOLE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			panic(fmt.Sprintf("e2e: E2E_BLACKHOLE=%q: want a duration > 0", v))
		}
		return d
	}
	return 60 * time.Second
}

var seedOnce = sync.OnceValue(func() uint64 {
	if v := os.Getenv("E2E_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			panic(fmt.Sprintf("e2e: E2E_SEED=%q: want a number", v))
		}
		return n
	}
	return uint64(time.Now().UnixNano())
})

// seed is E2E_SEED: the seed of the random kill moments.
func seed() uint64 { return seedOnce() }
