package brokertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// serverCandidates are tried in order when NodeOptions.ServerPath is empty.
// Debian's /usr/sbin/rabbitmq-server is a wrapper that su's to the rabbitmq
// user and loses the environment a private node needs, so the script it
// wraps comes first.
var serverCandidates = []string{
	"/usr/lib/rabbitmq/bin/rabbitmq-server",
	"/usr/lib/rabbitmq/sbin/rabbitmq-server",
}

// DefaultDiskFreeLimit is RabbitMQ's default disk free limit, which
// ClearAlarm restores.
const DefaultDiskFreeLimit = "50MB"

const (
	defaultStartTimeout = 60 * time.Second
	defaultStopTimeout  = 10 * time.Second
	ctlTimeout          = 60 * time.Second
	startAttempts       = 4
)

// NodeOptions configures StartNode. A nil *NodeOptions means all defaults.
type NodeOptions struct {
	// Config is appended to the node's rabbitmq.conf (new-style sysctl
	// format), e.g. "vm_memory_high_watermark.relative = 0.8". The node
	// always listens on 127.0.0.1 only. Zero adds nothing.
	Config string

	// StartTimeout bounds each start, from exec to a successful AMQP
	// handshake. Zero means 60 s (a node needs about 4 s on an idle
	// machine, more while other test binaries boot theirs).
	StartTimeout time.Duration

	// StopTimeout bounds a graceful stop (Stop, and cleanup before it falls
	// back to SIGKILL). Zero means 10 s.
	StopTimeout time.Duration

	// ServerPath is the rabbitmq-server start script; rabbitmqctl is taken
	// from the same directory. Zero means
	// /usr/lib/rabbitmq/bin/rabbitmq-server, then rabbitmq-server on PATH.
	ServerPath string
}

// Node is a private RabbitMQ node for one test, on its own ports, that the
// test may kill, restart and fill up. Its methods fail the test on error
// (t.Fatalf) and so must be called from the test's goroutine, except URL,
// Name, Port and Ctl, which are safe anywhere.
type Node struct {
	t      testing.TB
	opts   NodeOptions
	server string // rabbitmq-server script
	ctl    string // rabbitmqctl script
	cred   *syscall.Credential
	dir    string

	name  string
	ports *portPair

	reported bool // a start error already carried the logs' tail

	mu   sync.Mutex
	proc *nodeProc // nil while the node is down
}

// nodeProc is one run of the start script.
type nodeProc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd.Wait returns
	err    error         // cmd.Wait's result, set before exited is closed
}

var (
	nodeSeq   atomic.Int64
	sweepOnce sync.Once
)

// StartNode starts a private RabbitMQ node and shuts it down, and removes
// its data, when the test ends. It fails the test when rabbitmq-server is
// not installed or the node does not come up, and skips it only when
// CLICKEDGE_TEST_SKIP_BROKER=1.
func StartNode(t testing.TB, opts *NodeOptions) *Node {
	t.Helper()
	return startNode(t, opts, claimPorts)
}

// startNode is StartNode with the port source as a parameter, so a test can
// hand out a taken pair.
func startNode(t testing.TB, opts *NodeOptions, claim func() (*portPair, error)) *Node {
	t.Helper()
	skipIfRequested(t)
	sweepOnce.Do(sweepStale)

	n := &Node{t: t}
	if opts != nil {
		n.opts = *opts
	}
	if n.opts.StartTimeout <= 0 {
		n.opts.StartTimeout = defaultStartTimeout
	}
	if n.opts.StopTimeout <= 0 {
		n.opts.StopTimeout = defaultStopTimeout
	}
	if err := n.locate(); err != nil {
		t.Fatalf("brokertest: %v\nInstall RabbitMQ (apt-get install rabbitmq-server) or set %s=1 to skip the tests that need it.", err, EnvSkipBroker)
	}
	t.Cleanup(n.cleanup) // before anything it has to undo
	if err := n.makeDirs(); err != nil {
		t.Fatalf("brokertest: StartNode: %v", err)
	}

	var err error
	for range startAttempts {
		n.ports.release()
		if n.ports, err = claim(); err != nil {
			t.Fatalf("brokertest: StartNode: %v", err)
		}
		n.name = fmt.Sprintf("ce-%d-%d@localhost", os.Getpid(), nodeSeq.Add(1))
		if err = n.start(); !errors.Is(err, errPortClash) {
			break
		}
		t.Logf("brokertest: %s: ports %d/%d or its name were taken; retrying on fresh ones", n.name, n.ports.amqp, n.ports.dist)
	}
	if err != nil {
		t.Fatalf("brokertest: StartNode: %v", err)
	}
	return n
}

// URL is the node's AMQP URL (guest/guest on 127.0.0.1).
func (n *Node) URL() string {
	return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", n.ports.amqp)
}

// Name is the Erlang node name, e.g. "ce-1234-1@localhost".
func (n *Node) Name() string { return n.name }

// Port is the AMQP port on 127.0.0.1.
func (n *Node) Port() int { return n.ports.amqp }

// Kill SIGKILLs the node: beam.smp (from its pid file) and the helper
// processes it spawned, never epmd nor any other node. Durable queues and
// persistent messages it had confirmed survive a later Start.
func (n *Node) Kill() {
	n.t.Helper()
	p := n.takeProc()
	if p == nil {
		n.t.Fatalf("brokertest: Kill %s: not running", n.name)
	}
	if err := n.kill(p); err != nil {
		n.t.Fatalf("brokertest: Kill %s: %v", n.name, err)
	}
}

// Stop shuts the node down gracefully with rabbitmqctl shutdown.
func (n *Node) Stop() {
	n.t.Helper()
	p := n.takeProc()
	if p == nil {
		n.t.Fatalf("brokertest: Stop %s: not running", n.name)
	}
	if out, err := n.Ctl("shutdown"); err != nil {
		kerr := n.kill(p)
		n.t.Fatalf("brokertest: Stop %s: %v (killed instead: %v)\n%s", n.name, err, kerr, out)
	}
	select {
	case <-p.exited:
	case <-time.After(n.opts.StopTimeout):
		kerr := n.kill(p)
		n.t.Fatalf("brokertest: Stop %s: still running %v after rabbitmqctl shutdown (killed: %v)", n.name, n.opts.StopTimeout, kerr)
	}
}

// Start starts the node again on the same name, ports and data.
func (n *Node) Start() {
	n.t.Helper()
	n.mu.Lock()
	running := n.proc != nil
	n.mu.Unlock()
	if running {
		n.t.Fatalf("brokertest: Start %s: already running", n.name)
	}
	if err := n.start(); err != nil {
		n.t.Fatalf("brokertest: Start %s: %v", n.name, err)
	}
}

// Restart is Stop then Start.
func (n *Node) Restart() {
	n.t.Helper()
	n.Stop()
	n.Start()
}

// SetDiskFreeLimit sets the node's disk free limit (rabbitmqctl
// set_disk_free_limit), e.g. "100000GB" to raise the disk alarm at once.
// During the alarm the broker blocks each connection when it next publishes
// and sends it connection.blocked; connections that only consume go on.
func (n *Node) SetDiskFreeLimit(limit string) {
	n.t.Helper()
	if out, err := n.Ctl("set_disk_free_limit", limit); err != nil {
		n.t.Fatalf("brokertest: SetDiskFreeLimit(%q): %v\n%s", limit, err, out)
	}
}

// ClearAlarm restores the default disk free limit (DefaultDiskFreeLimit),
// clearing an alarm raised with SetDiskFreeLimit.
func (n *Node) ClearAlarm() {
	n.t.Helper()
	n.SetDiskFreeLimit(DefaultDiskFreeLimit)
}

// Ctl runs rabbitmqctl against this node ("-n" is added and may not be
// given) and returns its combined output. The node's own cookie is used, so
// it cannot reach any other node.
func (n *Node) Ctl(args ...string) (string, error) {
	for _, a := range args {
		if a == "-n" || a == "--node" || strings.HasPrefix(a, "--node=") {
			return "", fmt.Errorf("brokertest: Ctl %v: the node is fixed, do not pass %s", args, a)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), ctlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.ctl, append([]string{"-n", n.name}, args...)...)
	cmd.Dir = n.dir
	cmd.Env = append(n.baseEnv(),
		// Let the kernel pick the CLI's distribution port: the default
		// range (35672-35682) is shared by every CLI call on the host.
		"RABBITMQ_CTL_DIST_PORT_MIN=0",
		"RABBITMQ_CTL_DIST_PORT_MAX=0",
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: n.cred}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("brokertest: rabbitmqctl -n %s %s: %w", n.name, strings.Join(args, " "), err)
	}
	return string(out), nil
}

// locate finds the scripts and, when running as root, the user to run them
// as.
func (n *Node) locate() error {
	server := n.opts.ServerPath
	if server == "" {
		for _, c := range serverCandidates {
			if _, err := os.Stat(c); err == nil {
				server = c
				break
			}
		}
	}
	if server == "" {
		p, err := exec.LookPath("rabbitmq-server")
		if err != nil {
			return fmt.Errorf("rabbitmq-server is not installed (looked for %s and rabbitmq-server on PATH)", strings.Join(serverCandidates, ", "))
		}
		server = p
	}
	ctl := filepath.Join(filepath.Dir(server), "rabbitmqctl")
	for _, f := range []string{server, ctl} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("RabbitMQ is not installed completely: %w", err)
		}
	}
	n.server, n.ctl = server, ctl

	// As root, run the node as the rabbitmq user the way the packaged
	// service does; the Erlang and RabbitMQ files it reads are set up for
	// that user.
	if os.Geteuid() == 0 {
		if u, err := user.Lookup("rabbitmq"); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			n.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		}
	}
	return nil
}

// tempRoot is os.TempDir unless the node's user could not reach into it.
func (n *Node) tempRoot() string {
	root := os.TempDir()
	if n.cred == nil {
		return root
	}
	for d := root; ; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if d == filepath.Dir(d) {
			return root
		}
	}
}

// makeDirs creates the node's directory: its HOME (with a fresh Erlang
// cookie), data and log directories and the enabled plugins file.
func (n *Node) makeDirs() error {
	dir, err := os.MkdirTemp(n.tempRoot(), fmt.Sprintf("clickedge-rabbit-%d-", os.Getpid()))
	if err != nil {
		return err
	}
	n.dir = dir
	files := []struct {
		path string
		body string
		mode os.FileMode
	}{
		{"home/.erlang.cookie", strings.ToUpper(randomHex(10)), 0o400},
		{"enabled_plugins", "[].\n", 0o644},
	}
	for _, d := range []string{"home", "mnesia", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.path), []byte(f.body), f.mode); err != nil {
			return err
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	return n.chown()
}

// chown hands the node's directory to the user the node runs as.
func (n *Node) chown() error {
	if n.cred == nil {
		return nil
	}
	return filepath.WalkDir(n.dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(n.cred.Uid), int(n.cred.Gid))
	})
}

func (n *Node) pidFile() string { return filepath.Join(n.dir, "rabbit.pid") }
func (n *Node) logFile() string { return filepath.Join(n.dir, "log", n.name+".log") }
func (n *Node) outFile() string { return filepath.Join(n.dir, "stdout.log") }

// baseEnv is the environment shared by the server and rabbitmqctl. Nothing
// is inherited but PATH, so a developer's RABBITMQ_* or ERL_* variables
// cannot leak in, and the conf env file points nowhere so
// /etc/rabbitmq/rabbitmq-env.conf (which names the shared node) is ignored.
func (n *Node) baseEnv() []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	return []string{
		"PATH=" + path,
		"HOME=" + filepath.Join(n.dir, "home"), // the node's own .erlang.cookie
		"LANG=C.UTF-8",
		"LC_ALL=C.UTF-8",
		"RABBITMQ_CONF_ENV_FILE=" + filepath.Join(n.dir, "no-rabbitmq-env.conf"),
	}
}

func (n *Node) serverEnv() []string {
	d := n.dir
	return append(n.baseEnv(),
		markerEnv+"="+d,
		"ERL_EPMD_ADDRESS=127.0.0.1", // only used if this node has to start epmd
		"RABBITMQ_NODENAME="+n.name,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(n.ports.amqp),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(n.ports.dist),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(d, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(d, "log"),
		"RABBITMQ_PID_FILE="+n.pidFile(),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(d, "enabled_plugins"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(d, "rabbitmq.conf"),
		"RABBITMQ_CONFIG_FILES="+filepath.Join(d, "conf.d", "*.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(d, "advanced.config"),
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
		"ERL_CRASH_DUMP_SECONDS=0", // a failed boot exits at once instead of dumping
	)
}

func (n *Node) writeConfig() error {
	conf := fmt.Sprintf("listeners.tcp.1 = 127.0.0.1:%d\nlog.console = false\nlog.file.level = info\n", n.ports.amqp)
	if n.opts.Config != "" {
		conf += n.opts.Config + "\n"
	}
	path := filepath.Join(n.dir, "rabbitmq.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return err
	}
	if n.cred != nil {
		return os.Chown(path, int(n.cred.Uid), int(n.cred.Gid))
	}
	return nil
}

// start runs the start script and waits until the node answers an AMQP
// handshake as itself.
func (n *Node) start() error {
	n.t.Helper()
	if err := n.writeConfig(); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	out, err := os.OpenFile(n.outFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close() // the child has its own copy
	fmt.Fprintf(out, "%s%s on 127.0.0.1:%d at %s\n", startMarker, n.name, n.ports.amqp, time.Now().Format(time.RFC3339Nano))

	cmd := exec.Command(n.server)
	cmd.Dir = n.dir
	cmd.Env = n.serverEnv()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: n.cred,
		// Its own process group, so ^C on go test does not reach it
		// before cleanup does; and if the test binary dies without
		// cleaning up, the script gets SIGTERM and stops the node.
		Setpgid:   true,
		Pdeathsig: syscall.SIGTERM,
	}
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", n.server, err)
	}
	p := &nodeProc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()

	deadline := began.Add(n.opts.StartTimeout)
	for {
		err := n.handshake()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			kerr := n.kill(p)
			n.reported = true
			return fmt.Errorf("%s not up after %v (last: %v; killed: %v)\n%s", n.name, n.opts.StartTimeout, err, kerr, n.logTail(40))
		}
		select {
		case <-p.exited:
			// The script exits 0 whatever the VM did; the logs say why.
			tail := n.logTail(40)
			if isClash(tail) {
				return fmt.Errorf("%w: %s exited\n%s", errPortClash, n.name, tail)
			}
			n.reported = true
			return fmt.Errorf("%s exited during start (%v)\n%s", n.name, p.err, tail)
		case <-time.After(50 * time.Millisecond):
		}
	}
	n.mu.Lock()
	n.proc = p
	n.mu.Unlock()
	// The AMQP listener opens before the boot finishes: durable queues may
	// not be recovered yet, and a publish then would be unroutable. Wait
	// for the whole boot.
	if out, err := n.Ctl("await_startup", "--timeout", strconv.Itoa(int(max(time.Until(deadline), 5*time.Second).Seconds()))); err != nil {
		n.reported = true
		return fmt.Errorf("%s: await_startup: %v: %s\n%s", n.name, err, out, n.logTail(40))
	}
	n.t.Logf("brokertest: node %s up on 127.0.0.1:%d in %v", n.name, n.ports.amqp, time.Since(began).Round(time.Millisecond))
	return nil
}

// isClash reports whether a failed start's logs blame a port or the node
// name being taken.
func isClash(logs string) bool {
	for _, s := range []string{
		"eaddrinuse",             // AMQP listener
		"dist_port_already_used", // distribution listener
		"duplicate_node_name",    // epmd already knows the name
		"in use by another Erlang node",
	} {
		if strings.Contains(logs, s) {
			return true
		}
	}
	return false
}

// handshake checks that this node, and not some other one that took the
// port, completes an AMQP handshake. RabbitMQ's cluster_name defaults to the
// node name with the host's full name ("ce-1-1@host.example"), so only the
// part before the @ is compared; it holds our pid and sequence number.
func (n *Node) handshake() error {
	conn, err := dial(n.URL(), "brokertest.StartNode")
	if err != nil {
		return err
	}
	defer conn.Close()
	got, _ := conn.Properties["cluster_name"].(string)
	gotLocal, _, _ := strings.Cut(got, "@")
	wantLocal, _, _ := strings.Cut(n.name, "@")
	if gotLocal != wantLocal {
		return fmt.Errorf("port %d answers as %q, want node %q", n.ports.amqp, got, n.name)
	}
	return nil
}

func (n *Node) takeProc() *nodeProc {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.proc
	n.proc = nil
	return p
}

// kill SIGKILLs the node's processes and waits for the start script to
// return. The script itself is spared so that it reaps beam.smp.
func (n *Node) kill(p *nodeProc) error {
	if left := killNodeProcs(n.dir, n.pidFile(), p.cmd.Process.Pid, 10*time.Second); len(left) > 0 {
		return fmt.Errorf("processes %v survived SIGKILL", left)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
		return nil
	}
}

// cleanup stops the node (SIGTERM, which RabbitMQ handles as a graceful
// shutdown, then SIGKILL after StopTimeout) and removes its directory.
func (n *Node) cleanup() {
	if p := n.takeProc(); p != nil {
		if pid := n.beamPid(); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		} else {
			_ = p.cmd.Process.Signal(syscall.SIGTERM) // the script forwards it
		}
		select {
		case <-p.exited:
		case <-time.After(n.opts.StopTimeout):
			n.t.Logf("brokertest: %s did not stop within %v of SIGTERM; killing it", n.name, n.opts.StopTimeout)
		}
		if err := n.kill(p); err != nil {
			n.t.Errorf("brokertest: cleanup %s: %v", n.name, err)
		}
	}
	// Whatever path led here (a failed start, a Kill, a Stop), nothing of
	// the node may outlive the test.
	if n.dir != "" {
		if left := killNodeProcs(n.dir, n.pidFile(), 0, 10*time.Second); len(left) > 0 {
			n.t.Errorf("brokertest: cleanup %s: processes %v survived SIGKILL", n.name, left)
		}
	}
	if n.t.Failed() && n.name != "" && !n.reported {
		n.t.Logf("brokertest: last lines of %s's logs:\n%s", n.name, n.logTail(30))
	}
	n.ports.release()
	if n.dir == "" {
		return
	}
	if err := os.RemoveAll(n.dir); err != nil {
		n.t.Errorf("brokertest: remove %s: %v", n.dir, err)
	}
}

// beamPid returns beam.smp's pid from the pid file if that process belongs
// to this node, else 0.
func (n *Node) beamPid() int {
	b, err := os.ReadFile(n.pidFile())
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	for _, p := range nodeProcs(n.dir) {
		if p == pid {
			return pid
		}
	}
	return 0
}

// startMarker opens each start's section of stdout.log.
const startMarker = "=== brokertest: starting "

// logTail returns what the start script printed since the last start (at
// most 150 lines: with log.console off that is the banner, or the reason
// the boot failed) and the last lines of the node's log.
func (n *Node) logTail(lines int) string {
	out := tail(n.outFile(), 150)
	if i := strings.LastIndex(out, startMarker); i >= 0 {
		out = out[i:]
	}
	return fmt.Sprintf("--- %s\n%s--- %s\n%s", n.outFile(), out, n.logFile(), tail(n.logFile(), lines))
}

// tail returns up to the last n lines of a file, reading at most 64 KiB.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(%v)\n", err)
	}
	defer f.Close()
	const max = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		_, _ = f.Seek(-max, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	b = bytes.TrimRight(b, "\n")
	ls := bytes.Split(b, []byte("\n"))
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return string(bytes.Join(ls, []byte("\n"))) + "\n"
}

// sweepStale removes node directories left by test binaries that died
// without cleaning up, killing their nodes if they still run. Directories
// of live processes are left alone.
func sweepStale() {
	for _, root := range []string{os.TempDir(), "/tmp"} {
		dirs, _ := filepath.Glob(filepath.Join(root, "clickedge-rabbit-*-*"))
		for _, d := range dirs {
			f := strings.Split(filepath.Base(d), "-")
			if len(f) < 4 {
				continue
			}
			owner, err := strconv.Atoi(f[2])
			if err != nil || owner == os.Getpid() || alive(owner) {
				continue
			}
			killNodeProcs(d, filepath.Join(d, "rabbit.pid"), 0, 5*time.Second)
			_ = os.RemoveAll(d)
		}
	}
}
