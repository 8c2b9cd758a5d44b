package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestClusterConfigChecks(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"off by default", "", ""},
		{"loopback without keyring", "cluster:\n  bind: 127.0.0.1:7946\n", ""},
		{"wildcard without keyring", "cluster:\n  bind: 0.0.0.0:7946\n", "cluster.keyring_file: required"},
		{"empty host without keyring", "cluster:\n  bind: \":7946\"\n", "cluster.keyring_file: required"},
		{"private address with keyring", "cluster:\n  bind: 10.0.0.1:7946\n  keyring_file: k.json\n", ""},
		{"bad bind", "cluster:\n  bind: nope\n", "cluster.bind: must be host:port"},
		{"wildcard advertise", "cluster:\n  bind: 127.0.0.1:7946\n  advertise: 0.0.0.0:7946\n", "cluster.advertise: must be an address peers can reach"},
		{"bad seed", "cluster:\n  bind: 127.0.0.1:7946\n  join: [\"10.0.0.2\"]\n", "cluster.join[0]: must be host:port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, t.TempDir(), "c.yaml", tc.yaml)
			_, err := LoadConfig(p, nil)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("LoadConfig: %v, want ok", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("LoadConfig = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// clusterNode starts the binary with a cluster section; the broker is
// unreachable (a closed port), as in a region cut off from the centre.
func clusterNode(t *testing.T, dir, name, bind string, join []string, keyFile string) *edgeProc {
	t.Helper()
	seeds, _ := json.Marshal(join)
	cfg := fmt.Sprintf(`node:
  id: %s
  region: eu-test
forwarder:
  amqp_urls: ["amqp://guest:guest@%s/"]
  reconnect_max: 1s
  dial_timeout: 1s
  shutdown_timeout: 1s
cluster:
  bind: %q
  join: %s
  keyring_file: %q
`, name, freePort(t), bind, seeds, keyFile)
	d := filepath.Join(dir, name)
	os.MkdirAll(d, 0o755)
	return startEdge(t, d, cfg)
}

type adminMembers struct {
	Members []map[string]any `json:"members"`
}

func members(t *testing.T, p *edgeProc) map[string]map[string]any {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+p.admin+"/admin/cluster", nil)
	req.Header.Set("Authorization", "Bearer secret-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var m adminMembers
	json.NewDecoder(resp.Body).Decode(&m)
	out := map[string]map[string]any{}
	for _, x := range m.Members {
		out[fmt.Sprint(x["name"])] = x
	}
	return out
}

func waitState(t *testing.T, p *edgeProc, name, state string, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if m := members(t, p)[name]; m != nil && m["state"] == state {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s not %s within %v: %v", name, state, d, members(t, p))
	return 0
}

func metric(t *testing.T, p *edgeProc, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m, err := parseMetricsText(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	v, ok := m[series]
	if !ok {
		t.Fatalf("metric %s not exported", series)
	}
	return v
}

// Three binaries on loopback with the default memberlist timings: they
// join, /admin/cluster has the contract's shape, `cluster members` lists
// them, a key step with a member down fails naming it, a SIGKILLed member
// is dead within 15 s, and `clickedge drain` of a node whose broker is
// unreachable hands its clicks to a peer and exits 0.
func TestClusterBinary(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "keyring.json")
	os.WriteFile(keyFile, []byte(`["`+strings.Repeat("A", 43)+`="]`), 0o600)
	binds := []string{freePort(t), freePort(t), freePort(t)}
	a := clusterNode(t, dir, "a", binds[0], nil, keyFile)
	b := clusterNode(t, dir, "b", binds[1], []string{binds[0]}, keyFile)
	c := clusterNode(t, dir, "c", binds[2], []string{binds[0], binds[1]}, keyFile)
	for _, n := range []string{"a", "b", "c"} {
		waitState(t, a, n, "alive", 15*time.Second)
		waitState(t, c, n, "alive", 15*time.Second)
	}

	// The contract's shape, exactly.
	m := members(t, a)["b"]
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if got := strings.Join(keys, ","); got != "addr,admin,age_seconds,live,name,public,region,roles,state,version" {
		t.Errorf("member keys = %s", got)
	}
	var liveKeys []string
	for k := range m["live"].(map[string]any) {
		liveKeys = append(liveKeys, k)
	}
	sort.Strings(liveKeys)
	if got := strings.Join(liveKeys, ","); got != "catalog_digest,catalog_version,forwarder,outbox_oldest_age_seconds,outbox_pending" {
		t.Errorf("live keys = %s", got)
	}
	if m["region"] != "eu-test" || m["admin"] != b.admin || m["public"] != b.http {
		t.Errorf("b's metadata = %v, want region eu-test, admin %s, public %s", m, b.admin, b.http)
	}

	code, out, errOut := runCmd(t, nil, "cluster", "members", "-admin", a.admin, "-token", "secret-token")
	if code != 0 || strings.Count(out, "alive") != 3 || !strings.Contains(out, "disconnected") {
		t.Fatalf("cluster members = %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCmd(t, []string{"CLICKEDGE_ADMIN_TOKEN=secret-token"}, "cluster", "members", "-json", "-admin", "http://"+a.admin)
	var js adminMembers
	if code != 0 || json.Unmarshal([]byte(out), &js) != nil || len(js.Members) != 3 {
		t.Fatalf("cluster members -json = %d %s", code, out)
	}
	// -admin and the token from the config file (admin.listen, admin.token).
	cfgFile := writeFile(t, dir, "client.yaml", fmt.Sprintf("admin:\n  listen: %q\n  token: secret-token\n", a.admin))
	if code, out, errOut := runCmd(t, nil, "cluster", "members", "-config", cfgFile); code != 0 || strings.Count(out, "alive") != 3 {
		t.Errorf("cluster members -config = %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := runCmd(t, nil, "cluster", "members", "-admin", a.admin, "-token", "wrong"); code != 1 || !strings.Contains(errOut, "403") {
		t.Errorf("members with a wrong token = %d %s, want 1 and the 403", code, errOut)
	}
	if v := metric(t, a, `clickedge_cluster_members{state="alive"}`); v != 3 {
		t.Errorf("clickedge_cluster_members{alive} = %v, want 3", v)
	}
	metric(t, a, `clickedge_cluster_peer_outbox_pending{peer="c"}`)
	metric(t, a, `clickedge_cluster_peer_state_age_seconds{peer="c"}`)

	// A link written on a reaches b and c through anti-entropy, with the
	// broker (and so the links feed) unreachable.
	start := time.Now()
	if code := adminWrite(t, "PUT", a, "/admin/links/ae-1", `{"url":"https://ae.example/?cid={click_id}"}`); code != 201 {
		t.Fatalf("PUT /admin/links/ae-1 on a = %d", code)
	}
	for _, p := range []*edgeProc{b, c} {
		for get(t, "http://"+p.http+"/r/ae-1").StatusCode != 302 {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("the link written on a is not served by %s within 5s", p.admin)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("a link written on a served by b and c after %v, no broker", time.Since(start))

	// Clicks on c stay pending: its broker is unreachable.
	const clicks = 40
	for range clicks {
		if r := get(t, "http://"+c.http+"/r/tv-sale?subid=x"); r.StatusCode != 302 {
			t.Fatalf("click: %d", r.StatusCode)
		}
	}
	// With the log (the default write path) an answered click is pending
	// in the file one gathered move later (at most ~10 ms and a commit).
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		v := metric(t, c, "clickedge_outbox_pending_records")
		if v >= clicks {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("c pending = %v, want at least the %d clicks", v, clicks)
		}
	}
	pendingC := metric(t, c, "clickedge_outbox_pending_records") // clicks, and a feed record on a
	pendingAB := metric(t, a, "clickedge_outbox_pending_records") + metric(t, b, "clickedge_outbox_pending_records")
	code, out, errOut = runCmd(t, nil, "drain", "-admin", c.admin, "-token", "secret-token")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("handed off %d records", int(pendingC))) {
		t.Fatalf("drain c = %d\n%s%s\nc's log:\n%s", code, out, errOut, c.Logs())
	}
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("c still running after drain")
	}
	if c.cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("drained c exited %d", c.cmd.ProcessState.ExitCode())
	}
	got := metric(t, a, "clickedge_outbox_pending_records") + metric(t, b, "clickedge_outbox_pending_records")
	recv := metric(t, a, `clickedge_cluster_handoff_records_total{direction="received"}`) +
		metric(t, b, `clickedge_cluster_handoff_records_total{direction="received"}`)
	if got != pendingAB+pendingC || recv != pendingC {
		t.Fatalf("peers hold %v pending, received %v; want %v + %v and %v", got, recv, pendingAB, pendingC, pendingC)
	}
	waitState(t, a, "c", "left", 15*time.Second)

	// b killed: dead within 15 s with the default memberlist settings.
	b.cmd.Process.Signal(syscall.SIGKILL)
	<-b.exited
	took := waitState(t, a, "b", "dead", 15*time.Second)
	t.Logf("SIGKILLed member seen dead after %v (default memberlist settings)", took)

	// A key step with b dead fails naming b.
	code, out, errOut = runCmd(t, nil, "cluster", "keys", "install", strings.Repeat("B", 43)+"=", "-admin", a.admin, "-token", "secret-token")
	if code != 1 || !strings.Contains(errOut, "member b failed") || !strings.Contains(out, "a: ok") {
		t.Fatalf("keys install with b dead = %d\n%s%s", code, out, errOut)
	}
	// list reports the dead member too: its keyring is unknown.
	code, out, errOut = runCmd(t, nil, "cluster", "keys", "list", "-admin", a.admin, "-token", "secret-token")
	if code != 1 || !strings.Contains(out, "1/1") || !strings.Contains(errOut, "member b failed: member is dead") {
		t.Errorf("keys list = %d\n%s%s", code, out, errOut)
	}
}

// A cluster node stopped while its broker is unreachable and with no live
// peer keeps its outbox, says so, and exits 1.
func TestStopWithoutPeerKeepsOutbox(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "keyring.json")
	os.WriteFile(keyFile, []byte(`["`+strings.Repeat("A", 43)+`="]`), 0o600)
	a := clusterNode(t, dir, "a", freePort(t), nil, keyFile)
	for range 5 {
		get(t, "http://"+a.http+"/r/tv-sale")
	}
	if code := a.stop(); code != 1 {
		t.Fatalf("stop with 5 pending and no peer: exit %d, want 1\n%s", code, a.Logs())
	}
	if !strings.Contains(a.Logs(), "hand-off incomplete: this node keeps its outbox") || !strings.Contains(a.Logs(), `"pending":5`) {
		t.Fatalf("log does not say the outbox is kept:\n%s", a.Logs())
	}
}

// adminWrite sends a write to p's admin API with the token and returns
// the status.
func adminWrite(t *testing.T, method string, p *edgeProc, path, body string) int {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+p.admin+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer secret-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// parseMetricsText reads the Prometheus text format into series -> value.
func parseMetricsText(r io.Reader) (map[string]float64, error) {
	m := map[string]float64{}
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

// harden: POST /admin/drain takes the one bearer check (internal/bearer):
// none configured 403, none sent 401 with a challenge, a wrong one 403, and
// only the right one reaches the drain.
func TestDrainNeedsToken(t *testing.T) {
	for _, tt := range []struct {
		name, configured, header string
		want                     int
	}{
		{"none configured", "", "Bearer x", http.StatusForbidden},
		{"none sent", "s3cret", "", http.StatusUnauthorized},
		{"wrong", "s3cret", "Bearer nope", http.StatusForbidden},
		{"right, already stopping", "s3cret", "bearer s3cret", http.StatusConflict},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := &node{cfg: &Config{Admin: AdminConfig{Token: tt.configured}}} // drainReq nil: "already stopping"
			r := httptest.NewRequest("POST", "/admin/drain", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			w := httptest.NewRecorder()
			n.serveDrain(w, r)
			if w.Code != tt.want {
				t.Fatalf("POST /admin/drain (%s) = %d %s, want %d", tt.name, w.Code, w.Body, tt.want)
			}
			if tt.want == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
		})
	}
}
