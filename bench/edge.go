package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/clickedge/clickedge/outbox"
)

// benchLinks is the catalog every clickedge under test serves. tv-sale is
// the demo catalog's link without its time-of-day split, so every run takes
// the same path: two rules evaluated to the end, then the default URL.
const benchLinks = `links:
  - code: tv-sale
    url: "https://shop.example/tv?cid={click_id}&sub={subid}&camp={param:utm_campaign}"
    params: [subid, subid1, utm_campaign]
    rules:
      - name: de-mobile
        when: 'country == "DE" && device == "mobile"'
        url: "https://m.shop.example/de/tv?cid={click_id}&sub={subid}"
      - name: office-network
        when: 'cidr("10.0.0.0/8") || cidr("192.168.0.0/16")'
        url: "https://staging.shop.example/tv?cid={click_id}&test=1"
`

// edgeSpec is one clickedge configuration.
type edgeSpec struct {
	durability string // sync | async
	server     string // http.server: fasthttp | net; "" = clickedge's default
	amqpURL    string // the forwarder's broker (directly or through a proxy)
	exchange   string
	region     string
	window     int    // forwarder.window; 0 = clickedge's default
	writePath  string // outbox.write_path; "" = clickedge's default
}

// buildClickedge builds ./cmd/clickedge into dir and returns the binary.
func buildClickedge(dir string) (string, error) {
	bin := filepath.Join(dir, "clickedge")
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	// Built in the root module, with its own go.mod: the product as it
	// ships, not as the bench's module graph would resolve it.
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/clickedge")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/clickedge: %w", err)
	}
	return bin, nil
}

// writeEdgeConfig writes a clickedge config and catalog into dir.
func writeEdgeConfig(dir string, s edgeSpec, public, admin string) (string, error) {
	if err := os.WriteFile(filepath.Join(dir, "links.yaml"), []byte(benchLinks), 0o644); err != nil {
		return "", err
	}
	// reconnect_max is cut from 30s to 1s so that a healed partition is
	// noticed within a second: the bench measures the drain, not the
	// back-off. Everything not named keeps clickedge's default.
	server := ""
	if s.server != "" {
		server = fmt.Sprintf("\n  server: %s", s.server)
	}
	window := ""
	if s.window > 0 {
		window = fmt.Sprintf("\n  window: %d", s.window)
	}
	writePath := ""
	if s.writePath != "" {
		writePath = fmt.Sprintf("\n  write_path: %s", s.writePath)
	}
	cfg := fmt.Sprintf(`node:
  id: bench-edge
  region: %s
http:
  listen: %q%s
admin:
  listen: %q
data_dir: %q
outbox:
  durability: %s%s
forwarder:
  amqp_urls: [%q]
  exchange: %q
  reconnect_max: 1s%s
catalog:
  file: links.yaml
log:
  level: warn
`, s.region, public, server, admin, filepath.Join(dir, "data"), s.durability, writePath, s.amqpURL, s.exchange, window)
	path := filepath.Join(dir, "clickedge.yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

// edgeStatus is GET /admin/outbox: the one status shape, outbox.Status.
type edgeStatus = outbox.Status

func getJSON(url string, v any) error {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func outboxStatus(admin string) (edgeStatus, error) {
	var s edgeStatus
	err := getJSON("http://"+admin+"/admin/outbox", &s)
	return s, err
}

// scrape reads a Prometheus text exposition and returns the samples whose
// name (with labels, as written) starts with one of prefixes.
func scrape(admin string, prefixes ...string) (map[string]float64, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return parseMetrics(resp.Body, prefixes...)
}

func parseMetrics(r io.Reader, prefixes ...string) (map[string]float64, error) {
	out := map[string]float64{}
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
		name := line[:i]
		for _, p := range prefixes {
			if strings.HasPrefix(name, p) {
				v, err := strconv.ParseFloat(line[i+1:], 64)
				if err == nil {
					out[name] = v
				}
				break
			}
		}
	}
	return out, sc.Err()
}

// waitPending polls the edge until its outbox has no pending record, or
// timeout. It returns the time that took.
func waitPending(admin string, timeout time.Duration) (time.Duration, edgeStatus, error) {
	start := time.Now()
	for {
		st, err := outboxStatus(admin)
		if err == nil && st.Pending.Count == 0 && st.Spill.Records == 0 {
			return time.Since(start), st, nil
		}
		if time.Since(start) > timeout {
			if err == nil {
				err = fmt.Errorf("%d records still pending after %v", st.Pending.Count, timeout)
			}
			return time.Since(start), st, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cpuProfile takes a CPU profile of d from a pprof endpoint into path.
func cpuProfile(base string, d time.Duration, path string) error {
	c := &http.Client{Timeout: d + 30*time.Second}
	resp, err := c.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", base, int(d.Seconds())))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// pprofTop renders the top of a profile with `go tool pprof -top`, plus
// opts (such as -cum), without the header lines that name the build.
func pprofTop(profile string, n int, opts ...string) (string, error) {
	args := append([]string{"tool", "pprof", "-top", "-nodecount=" + strconv.Itoa(n)}, opts...)
	out, err := exec.Command("go", append(args, profile)...).Output()
	if err != nil {
		return "", fmt.Errorf("go tool pprof %s: %w", profile, err)
	}
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(l, "File: ") || strings.HasPrefix(l, "Build ID: ") || strings.HasPrefix(l, "Time: ") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n"), nil
}
