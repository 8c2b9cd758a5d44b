package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvBin names the directory of initdb and postgres, overriding the search
// of /usr/lib/postgresql/*/bin.
const EnvBin = "CLICKEDGE_TEST_PG_BIN"

const (
	startTimeout = 60 * time.Second
	stopTimeout  = 30 * time.Second
	dirPrefix    = "clickedge-pg-"
)

// Options configures Start. A nil *Options means all defaults.
type Options struct {
	// Durable runs with fsync on, as production does; for benchmarks.
	// Zero runs with fsync off: the tests crash the server, never the
	// kernel, so committed data still survives, and CI is faster.
	Durable bool
}

// Cluster is a private PostgreSQL server. Its methods fail the test on
// error and so must be called from the test's goroutine, except URL,
// DatabaseURL and Port, which are safe anywhere.
type Cluster struct {
	t    testing.TB
	opts Options
	bin  string
	cred *syscall.Credential
	dir  string // root: data/, sock/, log
	port int

	mu   sync.Mutex
	proc *proc // nil while down
}

type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

var (
	templateOnce sync.Once
	templateDir  string // a data directory made by initdb, copied per cluster
	templateErr  error
	sweepOnce    sync.Once
)

// Start initialises and starts a private cluster, and stops it and removes
// its files when the test ends. It fails the test when PostgreSQL is not
// installed or does not come up. Use it for tests that stop or crash the
// server; SharedDatabase is cheaper for the others.
func Start(t testing.TB, opts *Options) *Cluster {
	t.Helper()
	c, err := launch(opts)
	if c != nil {
		c.t = t
		t.Cleanup(c.cleanup)
	}
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return c
}

var shared struct {
	once sync.Once
	c    *Cluster
	err  error
	seq  atomic.Int64
}

// SharedDatabase returns the URL of a fresh database on a cluster shared
// by the test binary, started on first use. Tests must not stop or crash
// that cluster (use Start for those). Main stops it.
func SharedDatabase(t testing.TB) string {
	t.Helper()
	shared.once.Do(func() { shared.c, shared.err = launch(nil) })
	if shared.err != nil {
		t.Fatalf("pgtest: shared cluster: %v", shared.err)
	}
	name := fmt.Sprintf("shared_%d", shared.seq.Add(1))
	if err := shared.c.createDatabase(name); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return shared.c.DatabaseURL(name)
}

// Main runs the tests, then stops the shared cluster and removes initdb's
// template directory. Call it from TestMain: os.Exit(pgtest.Main(m)).
// Without it the parent-death signal stops the server and the next test
// binary removes the files.
func Main(m *testing.M) int {
	code := m.Run()
	if shared.c != nil {
		shared.c.cleanup()
	}
	if templateDir != "" {
		os.RemoveAll(filepath.Dir(templateDir))
	}
	return code
}

// launch makes and starts a cluster. A non-nil cluster is returned even
// with an error once it has files to clean up.
func launch(opts *Options) (*Cluster, error) {
	c := &Cluster{}
	if opts != nil {
		c.opts = *opts
	}
	var err error
	if c.bin, err = findBin(); err != nil {
		return nil, fmt.Errorf("%v\nInstall PostgreSQL (scripts/ensure-postgres.sh, which `make test` runs, or apt-get install postgresql).", err)
	}
	if c.cred, err = credential(); err != nil {
		return nil, err
	}
	sweepOnce.Do(sweepStale)
	templateOnce.Do(func() { templateDir, templateErr = makeTemplate(c.bin, c.cred) })
	if templateErr != nil {
		return nil, fmt.Errorf("initdb: %v", templateErr)
	}
	if c.dir, err = makeRoot(); err != nil {
		return nil, err
	}
	if out, err := exec.Command("cp", "-a", templateDir, c.dataDir()).CombinedOutput(); err != nil {
		return c, fmt.Errorf("copy template: %v: %s", err, out)
	}
	if err := os.Mkdir(c.sockDir(), 0o700); err != nil {
		return c, err
	}
	if err := c.chown(c.sockDir()); err != nil {
		return c, err
	}
	for attempt := 0; ; attempt++ {
		if c.port, err = freePort(); err != nil {
			return c, err
		}
		err = c.start()
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			return c, fmt.Errorf("start: %w", err)
		}
	}
}

// Port is the server's TCP port on 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// URL is the libpq URL of the postgres database.
func (c *Cluster) URL() string { return c.DatabaseURL("postgres") }

// DatabaseURL is the libpq URL of database name on this cluster.
func (c *Cluster) DatabaseURL(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, name)
}

// CreateDatabase creates a database and returns its URL.
func (c *Cluster) CreateDatabase(name string) string {
	c.t.Helper()
	if err := c.createDatabase(name); err != nil {
		c.t.Fatalf("pgtest: %v", err)
	}
	return c.DatabaseURL(name)
}

func (c *Cluster) createDatabase(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// Stop shuts the server down cleanly (fast shutdown: sessions are ended,
// a checkpoint is written).
func (c *Cluster) Stop() {
	c.t.Helper()
	if err := c.stop(syscall.SIGINT); err != nil {
		c.t.Fatalf("pgtest: stop: %v", err)
	}
}

// Crash stops the server as a crash would (immediate shutdown: no
// checkpoint, recovery from the WAL at the next start).
func (c *Cluster) Crash() {
	c.t.Helper()
	if err := c.stop(syscall.SIGQUIT); err != nil {
		c.t.Fatalf("pgtest: crash: %v", err)
	}
}

// Restart starts a stopped or crashed server again on the same port.
func (c *Cluster) Restart() {
	c.t.Helper()
	if err := c.start(); err != nil {
		c.t.Fatalf("pgtest: restart: %v", err)
	}
}

var errPortTaken = errors.New("port taken")

func (c *Cluster) dataDir() string { return filepath.Join(c.dir, "data") }
func (c *Cluster) sockDir() string { return filepath.Join(c.dir, "sock") }
func (c *Cluster) logFile() string { return filepath.Join(c.dir, "postgres.log") }

func (c *Cluster) start() error {
	c.mu.Lock()
	running := c.proc != nil
	c.mu.Unlock()
	if running {
		return errors.New("already running")
	}
	logf, err := os.OpenFile(c.logFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "%s port %d at %s\n", startMarker, c.port, time.Now().Format(time.RFC3339Nano))
	fsync := "off"
	if c.opts.Durable {
		fsync = "on"
	}
	cmd := exec.Command(filepath.Join(c.bin, "postgres"),
		"-D", c.dataDir(),
		"-p", strconv.Itoa(c.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+c.sockDir(),
		"-c", "fsync="+fsync,
		"-c", "max_connections=100",
		"-c", "shared_buffers=64MB",
		"-c", "max_locks_per_transaction=256", // many partitions in one transaction
	)
	cmd.Dir = c.dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C", "LC_ALL=C"}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: c.cred,
		Setpgid:    true,            // ^C on go test reaches cleanup, not the server
		Pdeathsig:  syscall.SIGQUIT, // the test binary died: stop at once
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec postgres: %w", err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	deadline := time.Now().Add(startTimeout)
	for {
		err := ping(c.URL())
		if err == nil {
			break
		}
		select {
		case <-p.exited:
			logs := c.logTail()
			if strings.Contains(logs, "Address already in use") {
				return fmt.Errorf("%w: %d", errPortTaken, c.port)
			}
			return fmt.Errorf("postgres exited during start (%v)\n%s", p.err, logs)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
			return fmt.Errorf("not up after %v (last: %v)\n%s", startTimeout, err, c.logTail())
		}
	}
	c.mu.Lock()
	c.proc = p
	c.mu.Unlock()
	return nil
}

func ping(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

// stop signals the postmaster and waits for it to exit.
func (c *Cluster) stop(sig syscall.Signal) error {
	c.mu.Lock()
	p := c.proc
	c.proc = nil
	c.mu.Unlock()
	if p == nil {
		return errors.New("not running")
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
		return nil
	case <-time.After(stopTimeout):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
		return fmt.Errorf("postgres did not stop within %v of %v; killed", stopTimeout, sig)
	}
}

// cleanup stops the server and removes its files; c.t is nil for the
// shared cluster.
func (c *Cluster) cleanup() {
	report := func(format string, args ...any) {
		if c.t != nil {
			c.t.Errorf(format, args...)
		} else {
			fmt.Fprintf(os.Stderr, format+"\n", args...)
		}
	}
	c.mu.Lock()
	running := c.proc != nil
	c.mu.Unlock()
	if running {
		if err := c.stop(syscall.SIGQUIT); err != nil {
			report("pgtest: cleanup: %v", err)
		}
	}
	if c.t != nil && c.t.Failed() {
		c.t.Logf("pgtest: last lines of the server log:\n%s", c.logTail())
	}
	if c.dir != "" {
		if err := os.RemoveAll(c.dir); err != nil {
			report("pgtest: remove %s: %v", c.dir, err)
		}
	}
}

const startMarker = "=== pgtest: starting"

// logTail returns the server log since the last start, at most 40 lines.
func (c *Cluster) logTail() string {
	b, err := os.ReadFile(c.logFile())
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	if i := bytes.LastIndex(b, []byte(startMarker)); i >= 0 {
		b = b[i:]
	}
	ls := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(ls) > 40 {
		ls = ls[len(ls)-40:]
	}
	return string(bytes.Join(ls, []byte("\n")))
}

// chown hands path to the server's user.
func (c *Cluster) chown(path string) error {
	if c.cred == nil {
		return nil
	}
	return os.Chown(path, int(c.cred.Uid), int(c.cred.Gid))
}

// findBin returns the directory holding initdb and postgres.
func findBin() (string, error) {
	if d := os.Getenv(EnvBin); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Newest major version first: "9.6" < "15" numerically.
	sort.Slice(dirs, func(i, j int) bool { return majorOf(dirs[i]) > majorOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL is not installed: no /usr/lib/postgresql/*/bin/initdb and no initdb on PATH")
}

func majorOf(binDir string) float64 {
	f, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return f
}

// credential is the postgres user's when running as root, else nil (run as
// ourselves).
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and there is no postgres user to run the server as: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// makeRoot makes a directory the server's user can enter, named after this
// process so that sweepStale can tell whose it is.
func makeRoot() (string, error) {
	dir, err := os.MkdirTemp(tempRoot(), fmt.Sprintf("%s%d-", dirPrefix, os.Getpid()))
	if err != nil {
		return "", err
	}
	return dir, os.Chmod(dir, 0o755)
}

// tempRoot is os.TempDir when every directory above it lets others in,
// else /tmp.
func tempRoot() string {
	root := os.TempDir()
	for d := root; ; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if d == filepath.Dir(d) {
			return root
		}
	}
}

// makeTemplate runs initdb once for the test binary.
func makeTemplate(bin string, cred *syscall.Credential) (string, error) {
	root, err := makeRoot()
	if err != nil {
		return "", err
	}
	data := filepath.Join(root, "template")
	if err := os.Mkdir(data, 0o700); err != nil {
		return "", err
	}
	if cred != nil {
		if err := os.Chown(data, int(cred.Uid), int(cred.Gid)); err != nil {
			return "", err
		}
	}
	cmd := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	cmd.Dir = root
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C", "LC_ALL=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%v: %s", err, lastLines(out.Bytes(), 20))
	}
	return data, nil
}

func lastLines(b []byte, n int) string {
	ls := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return string(bytes.Join(ls, []byte("\n")))
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago;
// Start retries on a clash.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// sweepStale removes directories left by test binaries that died before
// their cleanup ran; their servers died with them (parent-death signal).
func sweepStale() {
	for _, root := range []string{os.TempDir(), "/tmp"} {
		dirs, _ := filepath.Glob(filepath.Join(root, dirPrefix+"*-*"))
		for _, d := range dirs {
			rest := strings.TrimPrefix(filepath.Base(d), dirPrefix)
			pidStr, _, _ := strings.Cut(rest, "-")
			pid, err := strconv.Atoi(pidStr)
			if err != nil || pid == os.Getpid() || alive(pid) {
				continue
			}
			_ = os.RemoveAll(d)
		}
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// CPUTime is the CPU time (user and system) the server's processes have
// used so far: the postmaster and its live children. For benchmarks.
func (c *Cluster) CPUTime() time.Duration {
	c.mu.Lock()
	p := c.proc
	c.mu.Unlock()
	if p == nil {
		return 0
	}
	root := p.cmd.Process.Pid
	ents, _ := os.ReadDir("/proc")
	var ticks int64
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, t, ok := procTimes(pid)
		if ok && (pid == root || ppid == root) {
			ticks += t
		}
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

// procTimes returns a process's parent and its utime+stime in clock ticks.
func procTimes(pid int) (ppid int, ticks int64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:])
	// f[0] is the state; ppid is field 4 of stat, utime 14, stime 15.
	if len(f) < 13 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ppid, ut + st, true
}
