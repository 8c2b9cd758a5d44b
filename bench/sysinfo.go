package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Machine describes the host the results come from.
type Machine struct {
	NumCPU    int    `json:"nproc"`
	CPUModel  string `json:"cpu_model"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	RabbitMQ  string `json:"rabbitmq"`
	MemTotal  string `json:"mem_total"`
	Disk      string `json:"disk"` // the device the outboxes were on
	Commit    string `json:"commit"`
}

func machineInfo(amqpURL string) Machine {
	m := Machine{NumCPU: numCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		l, _, _ := strings.Cut(string(b), "\n")
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(strings.TrimPrefix(l, "MemTotal:")), " kB"), 64)
		m.MemTotal = fmt.Sprintf("%.1f GiB", kb/(1<<20))
	}
	if out, err := exec.Command("df", "--output=source,fstype", os.TempDir()).Output(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		m.Disk = strings.Join(strings.Fields(lines[len(lines)-1]), " ")
	}
	m.Commit = gitCommit()
	m.RabbitMQ = rabbitVersion(amqpURL)
	return m
}

// gitCommit names the checkout clickedge is built from, with the time, as
// the working tree may differ from the commit.
func gitCommit() string {
	root, _ := repoRoot()
	git := func(args ...string) ([]byte, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir = root
		return cmd.Output()
	}
	out, err := git("rev-parse", "--short", "HEAD")
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if out, err := git("status", "--porcelain", "--untracked-files=no"); err == nil && len(out) > 0 {
		c += " with uncommitted changes"
	}
	return c + ", built " + time.Now().UTC().Format("2006-01-02 15:04 MST")
}

// rabbitVersion asks the broker itself: the server properties of the AMQP
// handshake carry its version.
func rabbitVersion(url string) string {
	conn, err := amqp.Dial(url)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	defer conn.Close()
	if v, ok := conn.Properties["version"].(string); ok {
		return v
	}
	return "unknown"
}
