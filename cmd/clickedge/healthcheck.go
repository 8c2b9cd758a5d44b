package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"
)

// cmdHealthcheck is `clickedge healthcheck`: exit 0 when a URL (a node's
// /readyz) answers 200. For container health checks in images with no
// shell or curl (deploy/Dockerfile).
func cmdHealthcheck(args []string, stdout, stderr io.Writer, env []string) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:9090/readyz", "`URL` that must answer 200")
	timeout := fs.Duration("timeout", 2*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c := &http.Client{Timeout: *timeout}
	resp, err := c.Get(*url)
	if err != nil {
		fmt.Fprintf(stderr, "clickedge healthcheck: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "clickedge healthcheck: %s: %s: %s\n", *url, resp.Status, body)
		return 1
	}
	return 0
}
