package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// procSpec describes a server process to start.
type procSpec struct {
	name     string   // for logs and errors
	argv     []string // program and arguments
	env      []string // added to the environment (minus CLICKEDGE_*)
	cpus     string   // taskset CPU list; "" = not pinned
	procs    int      // GOMAXPROCS; 0 = the runtime's default
	readyURL string   // polled until it answers 200
	logFile  string   // stdout and stderr
}

// proc is a running server process.
type proc struct {
	spec procSpec
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error // Wait's result, once done is closed
}

// startProc starts a server and waits until spec.readyURL answers 200.
func startProc(spec procSpec) (*proc, error) {
	argv := spec.argv
	if spec.cpus != "" {
		argv = append([]string{"taskset", "-c", spec.cpus}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = childEnv(spec.env)
	if spec.procs > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(spec.procs))
	}
	// Its own process group, so a Ctrl-C on the bench reaches only the
	// bench, which then stops its children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	f, err := os.Create(spec.logFile)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", spec.name, err)
	}
	p := &proc{spec: spec, cmd: cmd, log: f, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := p.waitReady(20 * time.Second); err != nil {
		p.kill()
		return nil, fmt.Errorf("%s: %w\n%s", spec.name, err, p.logTail(20))
	}
	return p, nil
}

// childMark is set in the environment of every child, so that a test
// binary standing in for this program (TestMain) runs the child's
// subcommand instead of the tests.
const childMark = "BENCH_CHILD=1"

// childEnv is this process's environment without CLICKEDGE_* (clickedge
// refuses unknown ones, and the bench sets what it means) and GOMAXPROCS,
// plus childMark and extra.
func childEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "CLICKEDGE_") || strings.HasPrefix(kv, "GOMAXPROCS=") {
			continue
		}
		env = append(env, kv)
	}
	return append(append(env, childMark), extra...)
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-p.done:
			return fmt.Errorf("exited before it was ready: %v", p.err)
		default:
		}
		resp, err := c.Get(p.spec.readyURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v (last: %v)", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits; after timeout it kills. It returns an
// error when the process did not exit cleanly.
func (p *proc) stop(timeout time.Duration) error {
	defer p.log.Close()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("%s: did not stop within %v; killed", p.spec.name, timeout)
	}
	if p.err != nil {
		return fmt.Errorf("%s: %w\n%s", p.spec.name, p.err, p.logTail(20))
	}
	return nil
}

func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) logTail(n int) string {
	b, _ := os.ReadFile(p.spec.logFile)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago. The kernel does not hand the same ephemeral port out again at once,
// so the small race with other programs is acceptable for a benchmark.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// cpuTime is a process's user+system CPU time, from /proc/PID/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields start after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) // field 14, utime
	st, _ := strconv.ParseInt(f[12], 10, 64) // field 15, stime
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// clockTicks is USER_HZ, which is 100 on every Linux architecture Go
// supports.
const clockTicks = 100

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU reads the busy and total jiffies of all CPUs from /proc/stat.
func machineCPU() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, s := range f[1:] {
		v, _ := strconv.ParseInt(s, 10, 64)
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}

// cpuMeter measures the CPU used by the server, by this process (the load
// generator) and by the whole machine over an interval.
type cpuMeter struct {
	pid, broker           int
	start                 time.Time
	server, self, brokerT time.Duration
	mBusy, mTotal         int64
}

// brokerProc is the broker's process on this machine (brokerPID), 0 when
// unknown; set once before the phases run.
var brokerProc int

func newCPUMeter(pid int) *cpuMeter {
	m := &cpuMeter{pid: pid, broker: brokerProc, start: time.Now(), self: selfCPU()}
	if pid > 0 {
		m.server, _ = cpuTime(pid)
	}
	if m.broker > 0 {
		m.brokerT, _ = cpuTime(m.broker)
	}
	m.mBusy, m.mTotal = machineCPU()
	return m
}

// CPUUse is CPU time over wall time, in cores (1.0 = one core busy).
type CPUUse struct {
	Server  float64 `json:"server"`  // the server under test
	Loadgen float64 `json:"loadgen"` // this process: load generator, proxy, consumer
	Broker  float64 `json:"broker"`  // the RabbitMQ node on this machine (0 when not found)
	Machine float64 `json:"machine"` // every process on the host, out of nproc
	Other   float64 `json:"other"`   // machine minus the three: other users, the kernel's threads
}

func (m *cpuMeter) read() CPUUse {
	wall := time.Since(m.start).Seconds()
	var u CPUUse
	if m.pid > 0 {
		if t, err := cpuTime(m.pid); err == nil {
			u.Server = (t - m.server).Seconds() / wall
		}
	}
	u.Loadgen = (selfCPU() - m.self).Seconds() / wall
	if m.broker > 0 {
		if t, err := cpuTime(m.broker); err == nil {
			u.Broker = (t - m.brokerT).Seconds() / wall
		}
	}
	busy, total := machineCPU()
	if total > m.mTotal {
		u.Machine = float64(busy-m.mBusy) / float64(total-m.mTotal) * float64(numCPU())
	}
	u.Other = max(0, u.Machine-u.Server-u.Loadgen-u.Broker)
	return u
}

var numCPU = sync.OnceValue(func() int {
	// The machine's CPUs, not this process's affinity mask.
	b, _ := os.ReadFile("/proc/stat")
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "cpu") && len(l) > 3 && l[3] >= '0' && l[3] <= '9' {
			n++
		}
	}
	return max(n, 1)
})

// pinSelf binds every thread of this process to the CPUs in list (a
// taskset-style list such as "0" or "0-1"). Threads the runtime starts later
// inherit the mask from the thread that creates them.
func pinSelf(list string) error {
	var set unix.CPUSet
	for _, part := range strings.Split(list, ",") {
		lo, hi, found := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return fmt.Errorf("cpu list %q: %w", list, err)
		}
		b := a
		if found {
			if b, err = strconv.Atoi(hi); err != nil {
				return fmt.Errorf("cpu list %q: %w", list, err)
			}
		}
		for c := a; c <= b; c++ {
			set.Set(c)
		}
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return fmt.Errorf("pin thread %d to %s: %w", tid, list, err)
		}
	}
	return nil
}

// rss returns a process's resident set size and its peak, from
// /proc/PID/status.
func rss(pid int) (cur, peak int64) {
	path := "/proc/self/status"
	if pid > 0 {
		path = filepath.Join("/proc", strconv.Itoa(pid), "status")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			cur = kb << 10
		case "VmHWM":
			peak = kb << 10
		}
	}
	return cur, peak
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() [3]float64 {
	var la [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return la
	}
	f := strings.Fields(string(b))
	for i := 0; i < 3 && i < len(f); i++ {
		la[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return la
}

// sleepCtx sleeps for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
