package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// brokerPID finds the process listening on the AMQP URL's port on this
// machine (the shared RabbitMQ node), so its CPU can be measured apart from
// everything else. It reads /proc/net/tcp{,6} for the listening socket's
// inode and then the processes' file descriptors for it; 0 when not found
// (another user's process, or not on this machine).
func brokerPID(amqpURL string) int {
	host, err := amqpHost(amqpURL)
	if err != nil {
		return 0
	}
	_, portText, _ := strings.Cut(host, ":")
	port, err := strconv.Atoi(portText)
	if err != nil {
		return 0
	}
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n")[1:] {
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

// procName is a process's command name, for the logs.
func procName(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}
