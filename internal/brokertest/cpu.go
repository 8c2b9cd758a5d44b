package brokertest

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// LocalPID returns the process listening on an AMQP URL's port on this
// machine (a broker node, such as the shared one), or 0 when none is found,
// so that benchmarks can measure the broker's CPU apart from their own. It
// finds the listening socket in /proc/net/tcp{,6} and then the process
// holding it among /proc/*/fd.
func LocalPID(amqpURL string) int {
	u, err := url.Parse(amqpURL)
	if err != nil {
		return 0
	}
	port := 5672
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return 0
		}
	}
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines := strings.Split(string(b), "\n")
		for _, l := range lines[min(1, len(lines)):] {
			x := strings.Fields(l)
			if len(x) < 10 || x[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, p, _ := strings.Cut(x[1], ":")
			if v, err := strconv.ParseInt(p, 16, 32); err == nil && int(v) == port {
				inodes["socket:["+x[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if t, err := os.Readlink(filepath.Join("/proc", p.Name(), "fd", fd.Name())); err == nil && inodes[t] {
				return pid
			}
		}
	}
	return 0
}

// CPUTime returns a process's user+system CPU time from /proc/PID/stat, or
// 0 when pid is 0 or gone.
func CPUTime(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) // field 14, utime
	st, _ := strconv.ParseInt(f[12], 10, 64) // field 15, stime
	const userHZ = 100                       // USER_HZ on every Linux Go supports
	return time.Duration(ut+st) * time.Second / userHZ
}
