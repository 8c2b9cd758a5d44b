package brokertest

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// markerEnv is set in a node's environment. Every process of the node
// (start script, beam.smp, erl_child_setup and its helpers) inherits it, so
// the node's processes can be found, and only those, even after they were
// orphaned. Its value is the node's directory.
const markerEnv = "CLICKEDGE_BROKERTEST_NODE"

// nodeProcs returns the live processes carrying the marker for dir, except
// epmd: a node started when no epmd ran spawns one, and other nodes (the
// shared one among them) depend on it.
func nodeProcs(dir string) []int {
	want := []byte(markerEnv + "=" + dir + "\x00")
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(append([]byte{0}, env...), append([]byte{0}, want...)) {
			continue
		}
		comm, state := procStat(pid)
		if comm == "epmd" || state == 'Z' || state == 0 {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// procStat returns a process's command name and state letter; state 0 means
// the process is gone.
func procStat(pid int) (comm string, state byte) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0
	}
	s := string(b)
	open, shut := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || shut < open || shut+2 >= len(s) {
		return "", 0
	}
	return s[open+1 : shut], s[shut+2]
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	_, state := procStat(pid)
	return state != 0 && state != 'Z'
}

// killNodeProcs SIGKILLs every process of the node in dir, beam.smp (the
// pid in pidFile, when it carries the marker) first, except skip, and waits
// up to timeout until none is alive. It reports the processes still alive.
func killNodeProcs(dir, pidFile string, skip int, timeout time.Duration) []int {
	if b, err := os.ReadFile(pidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			for _, p := range nodeProcs(dir) {
				if p == pid {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		var left []int
		for _, p := range nodeProcs(dir) {
			if p != skip {
				_ = syscall.Kill(p, syscall.SIGKILL)
				left = append(left, p)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(10 * time.Millisecond)
	}
}
