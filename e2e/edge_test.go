//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// edgeRegion is node.region: clicks arrive with routing key click.e2e.
	edgeRegion = "e2e"
	// demoLink is the embedded demo catalog's link whose targets all carry
	// cid={click_id}.
	demoLink = "tv-sale"
	// startTimeout bounds an edge start, exec to "clickedge serving".
	startTimeout = 30 * time.Second
	// stopTimeout bounds a graceful stop: forwarder.shutdown_timeout plus
	// draining the listener, with room to spare.
	stopTimeout = 60 * time.Second
)

// edgeConfig is the part of the edge's YAML a scenario changes. Zero
// values keep the suite's defaults (see yaml).
type edgeConfig struct {
	NodeID          string
	DataDir         string
	AMQPURL         string // the fault proxy's address, as an amqp:// URL
	Window          int    // forwarder.window; 0 = windowSize
	Retention       string // outbox.retention; "" = 30s
	MaxBytes        string // outbox.max_bytes; "" = 0 (the disk is the limit)
	SpillBytes      string // outbox.spill_bytes; "" = the edge's default
	ShutdownTimeout string // forwarder.shutdown_timeout; "" = 5s
	Durability      string // outbox.durability; "" = sync
	WritePath       string // outbox.write_path; "" = E2E_WRITE_PATH, else the edge's default
}

// windowSize is forwarder.window in every scenario: the duplicate budget
// per fault.
const windowSize = 256

// yaml renders the config. Heartbeat, dial timeout and reconnect_max are
// smaller than the defaults so a dead connection is noticed in seconds and
// a healed one is used at once; that is what "forwarding resumes within
// 30 s" is measured against. A retention of 30 s keeps pruning running
// while keeping the file, which Open verifies page by page, small enough
// for a thousand restarts.
func (c edgeConfig) yaml() string {
	def := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	window := c.Window
	if window == 0 {
		window = windowSize
	}
	var b strings.Builder
	fmt.Fprintf(&b, "node:\n  id: %q\n  region: %s\n", def(c.NodeID, "e2e-edge"), edgeRegion)
	fmt.Fprintf(&b, "http:\n  listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\n")
	fmt.Fprintf(&b, "data_dir: %q\n", c.DataDir)
	fmt.Fprintf(&b, "outbox:\n  durability: %s\n  on_error: spill\n  retention: %s\n  max_bytes: %s\n",
		def(c.Durability, "sync"), def(c.Retention, "30s"), def(c.MaxBytes, "0"))
	if c.SpillBytes != "" {
		fmt.Fprintf(&b, "  spill_bytes: %s\n", c.SpillBytes)
	}
	if wp := def(c.WritePath, os.Getenv("E2E_WRITE_PATH")); wp != "" {
		fmt.Fprintf(&b, "  write_path: %s\n", wp)
	}
	fmt.Fprintf(&b, "forwarder:\n  amqp_urls: [%q]\n  exchange: clicks\n  window: %d\n", c.AMQPURL, window)
	fmt.Fprintf(&b, "  heartbeat: 2s\n  dial_timeout: 2s\n  confirm_timeout: 10s\n")
	fmt.Fprintf(&b, "  reconnect_min: 100ms\n  reconnect_max: 2s\n  shutdown_timeout: %s\n", def(c.ShutdownTimeout, "5s"))
	fmt.Fprintf(&b, "log:\n  level: info\n")
	return b.String()
}

// writeConfig writes the config into dir and returns its path.
func writeConfig(t testing.TB, dir string, c edgeConfig) string {
	t.Helper()
	path := filepath.Join(dir, "clickedge.yaml")
	if err := os.WriteFile(path, []byte(c.yaml()), 0o644); err != nil {
		t.Fatalf("write edge config: %v", err)
	}
	return path
}

// childEnv is the test's environment without CLICKEDGE_* variables: serve
// refuses unknown ones (CLICKEDGE_TEST_AMQP_URL is the test's, not the
// edge's), and a stray known one would change the config under test.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CLICKEDGE_") {
			env = append(env, kv)
		}
	}
	return env
}

// edgeProc is one run of `clickedge serve`.
type edgeProc struct {
	cmd       *exec.Cmd
	HTTP      string // public listener, host:port
	Admin     string // admin listener, host:port
	exited    chan struct{}
	exitCode  int           // valid once exited is closed; -1 when killed by a signal
	readyCh   chan struct{} // closed on the "clickedge serving" line
	stopped   chan stopLine // the "clickedge stopped" line, if it came
	readerEnd chan struct{} // closed when stderr reached EOF

	mu   sync.Mutex
	tail []string // the last lines of stderr
}

// stopLine is what serve logs when it stopped.
type stopLine struct {
	Pending     int64 `json:"pending"`
	SpillUnsent int64 `json:"spill_unsent"`
}

// logLine is the part of a JSON log line the suite reads.
type logLine struct {
	Msg   string `json:"msg"`
	HTTP  string `json:"http"`
	Admin string `json:"admin"`
	stopLine
}

// startEdge runs `clickedge serve -config cfgPath` and waits until it
// serves. Its stderr is appended to logPath. The process is SIGKILLed when
// the test ends, and by the kernel if the test binary dies first.
func startEdge(t testing.TB, cfgPath, logPath string) *edgeProc {
	t.Helper()
	e, err := spawnEdge(cfgPath, logPath)
	if err != nil {
		t.Fatalf("start edge: %v", err)
	}
	t.Cleanup(func() { e.kill() })
	select {
	case <-e.exited:
		t.Fatalf("edge exited with code %d before serving; its log:\n%s", e.exitCode, e.logTail(40))
	case <-e.readyCh:
	case <-time.After(startTimeout):
		t.Fatalf("edge not serving after %v; its log:\n%s", startTimeout, e.logTail(40))
	}
	return e
}

func spawnEdge(cfgPath, logPath string) (*edgeProc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(edgeBinary(), "serve", "-config", cfgPath)
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	e := &edgeProc{
		cmd:       cmd,
		exited:    make(chan struct{}),
		stopped:   make(chan stopLine, 1),
		readerEnd: make(chan struct{}),
		readyCh:   make(chan struct{}),
	}
	fmt.Fprintf(logf, "=== %s clickedge serve -config %s\n", time.Now().UTC().Format(time.RFC3339Nano), cfgPath)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go e.readStderr(stderr, logf)
	go func() {
		// Wait only after the reader saw EOF: Wait closes the pipe.
		<-e.readerEnd
		err := cmd.Wait()
		e.exitCode = cmd.ProcessState.ExitCode()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			e.exitCode = -2
		}
		close(e.exited)
	}()
	return e, nil
}

func (e *edgeProc) readStderr(r io.Reader, logf *os.File) {
	defer close(e.readerEnd)
	defer logf.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	ready := false
	for sc.Scan() {
		line := sc.Text()
		logf.WriteString(line + "\n")
		e.mu.Lock()
		e.tail = append(e.tail, line)
		if len(e.tail) > 200 {
			e.tail = append(e.tail[:0], e.tail[100:]...)
		}
		e.mu.Unlock()
		if !strings.Contains(line, `"msg":"clickedge s`) {
			continue
		}
		var l logLine
		if json.Unmarshal([]byte(line), &l) != nil {
			continue
		}
		switch l.Msg {
		case "clickedge serving":
			if !ready {
				e.HTTP, e.Admin = l.HTTP, l.Admin
				ready = true
				close(e.readyCh)
			}
		case "clickedge stopped":
			select {
			case e.stopped <- l.stopLine:
			default:
			}
		}
	}
	io.Copy(io.Discard, r)
}

// logTail returns the last n lines of the edge's stderr.
func (e *edgeProc) logTail(n int) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	from := max(0, len(e.tail)-n)
	return strings.Join(e.tail[from:], "\n")
}

// kill SIGKILLs the edge and waits for it to be gone. It is a no-op when
// the edge already exited.
func (e *edgeProc) kill() {
	select {
	case <-e.exited:
		return
	default:
	}
	e.cmd.Process.Signal(syscall.SIGKILL)
	<-e.exited
}

// terminate sends SIGTERM and waits for the exit. It returns the exit code
// and the "clickedge stopped" line (ok false if none was logged).
func (e *edgeProc) terminate(t testing.TB) (code int, st stopLine, ok bool) {
	t.Helper()
	e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.exited:
	case <-time.After(stopTimeout):
		e.kill()
		t.Fatalf("edge still running %v after SIGTERM; its log:\n%s", stopTimeout, e.logTail(40))
	}
	select {
	case st = <-e.stopped:
		ok = true
	default:
	}
	return e.exitCode, st, ok
}

// metricsClient scrapes the admin listener; short timeouts, since the edge
// may be gone.
var metricsClient = &http.Client{Timeout: 2 * time.Second}

// metrics scrapes /metrics into series -> value, the series written as in
// the text format: `clickedge_clicks_total{outcome="dropped"}`.
func (e *edgeProc) metrics() (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.Admin+"/metrics", nil)
	resp, err := metricsClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads the Prometheus text format: every sample line is
// "series value" (no timestamps from this exporter).
func parseMetrics(r io.Reader) (map[string]float64, error) {
	m := make(map[string]float64, 256)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// mustMetrics is metrics that fails the test.
func (e *edgeProc) mustMetrics(t testing.TB) map[string]float64 {
	t.Helper()
	m, err := e.metrics()
	if err != nil {
		t.Fatalf("scrape edge metrics: %v", err)
	}
	return m
}

// runServe runs `clickedge serve` on a config expected to be refused and
// returns its exit code and combined output. A serve that is still running
// after timeout is killed and reported as code -1.
func runServe(t testing.TB, cfgPath string, timeout time.Duration) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, edgeBinary(), "serve", "-config", cfgPath)
	cmd.Env = childEnv()
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return -1, string(out)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run serve: %v", err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// runTool runs a clickedge subcommand and returns its exit code and
// combined output.
func runTool(t testing.TB, timeout time.Duration, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, edgeBinary(), args...)
	cmd.Env = childEnv()
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("clickedge %s: still running after %v:\n%s", strings.Join(args, " "), timeout, out)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("clickedge %s: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}
