package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/clickedge/clickedge/internal/brokertest"
)

// brokerPID finds the process listening on the AMQP URL's port on this
// machine (the shared RabbitMQ node), so its CPU can be measured apart from
// everything else; 0 when not found.
func brokerPID(amqpURL string) int { return brokertest.LocalPID(amqpURL) }

// procName is a process's command name, for the logs.
func procName(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}
