package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// freeAddr returns a 127.0.0.1 address nothing listens on now.
func freeAddr(t *testing.T) (string, int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String(), l.Addr().(*net.TCPAddr).Port
}

// fromClient is an HTTP client whose connections come from src, as a user
// of that region would (the load balancer maps source addresses to
// regions).
func fromClient(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true},
	}
}

// TestDemoRegions runs `make demo-regions` as the Makefile does (the
// script, on spare ports and its own directory), sends a click from each
// region's client addresses through HAProxy, sees each answered by that
// region and arriving on the central broker with its region, then stops
// everything and checks nothing is left.
func TestDemoRegions(t *testing.T) {
	for _, c := range []string{"haproxy", "curl"} {
		tool(t, c)
	}
	start := time.Now()
	repo, _ := filepath.Abs("..")
	dir, err := os.MkdirTemp("/tmp", "clickedge-demo-test-") // reachable by the rabbitmq user
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "clickedge")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/clickedge").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	_, amqpPort := freeAddr(t)
	for amqpPort+20000 > 65535 {
		_, amqpPort = freeAddr(t)
	}
	lb, _ := freeAddr(t)
	demoDir := filepath.Join(dir, "demo")
	env := append(os.Environ(),
		"DEMO_DIR="+demoDir, "DEMO_BIN="+bin,
		fmt.Sprintf("DEMO_AMQP_PORT=%d", amqpPort), "DEMO_LB="+lb,
		fmt.Sprintf("DEMO_RABBIT_NAME=clickedge-demo-test-%d", os.Getpid()))
	stop := func() (string, error) {
		cmd := exec.Command(filepath.Join(repo, "deploy/demo/demo-stop.sh"))
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() { stop() }) // no-op when the test stopped it

	upStart := time.Now()
	cmd := exec.Command(filepath.Join(repo, "deploy/demo/demo-regions.sh"))
	cmd.Env = env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("demo-regions.sh: %v\n%s", err, stderr.String())
	}
	up := time.Since(upStart)
	if got := strings.TrimSpace(string(out)); got != "http://"+lb {
		t.Fatalf("demo-regions.sh printed %q, want the load balancer's URL http://%s", got, lb)
	}

	// Every pid the demo recorded, to check they are gone at the end.
	pidFiles, _ := filepath.Glob(filepath.Join(demoDir, "pids", "*.pid"))
	var pids []int
	for _, f := range pidFiles {
		b, _ := os.ReadFile(f)
		var pid int
		fmt.Sscan(string(b), &pid)
		pids = append(pids, pid)
	}
	if len(pids) < 10 { // 7 nodes, haproxy, rabbitmq and its script
		t.Errorf("demo recorded %d pids, want >= 10: %v", len(pidFiles), pidFiles)
	}

	clicks := map[string]string{} // click id -> region
	var euClick string
	for src, region := range map[string]string{"127.0.1.5": "eu-central", "127.0.2.7": "us-east", "127.0.3.9": "ap-south"} {
		resp, err := fromClient(src).Get("http://" + lb + "/c/demo?subid=test")
		if err != nil {
			t.Fatalf("GET /c/demo from %s: %v", src, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var c struct {
			ClickID string `json:"click_id"`
			URL     string `json:"url"`
		}
		if err := json.Unmarshal(body, &c); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET /c/demo from %s = %d %s", src, resp.StatusCode, body)
		}
		if !strings.Contains(c.URL, "region="+region) || resp.Header.Get("X-Clickedge-Backend") != region {
			t.Errorf("click from %s answered by %q (url %s), want %s", src, resp.Header.Get("X-Clickedge-Backend"), c.URL, region)
		}
		clicks[c.ClickID] = region
		if region == "eu-central" {
			euClick = c.ClickID
		}
	}

	// The centre: each click on the broker, with its region.
	conn, err := amqp.Dial(fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", amqpPort))
	if err != nil {
		t.Fatal(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume("demo-clicks", "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(clicks) > 0 {
		select {
		case d := <-deliveries:
			region, ok := clicks[d.MessageId]
			if !ok {
				t.Errorf("unexpected message %s", d.MessageId)
				continue
			}
			if d.Headers["region"] != region || d.RoutingKey != "click."+region {
				t.Errorf("click %s arrived with region %v, key %s; want %s", d.MessageId, d.Headers["region"], d.RoutingKey, region)
			}
			delete(clicks, d.MessageId)
		case <-ctx.Done():
			t.Fatalf("clicks never reached the broker: %v", clicks)
		}
	}

	// A postback signed for the demo advertiser, through HAProxy to the
	// registration node: 200 registered, and the action on the broker's
	// actions exchange (the registration node declares demo-actions).
	signed, err := exec.Command(bin, "postback", "sign", "-config", filepath.Join(demoDir, "nodes", "registration-1.yaml"),
		"-adv", "demo", "-url", "http://"+lb+"/postback", "click_id="+euClick, "order_id=T-1", "amount=12.50", "currency=EUR").Output()
	if err != nil {
		t.Fatalf("clickedge postback sign: %v", err)
	}
	resp, err := fromClient("127.0.2.7").Get(strings.TrimSpace(string(signed)))
	if err != nil {
		t.Fatalf("postback: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var pb struct {
		Result   string `json:"result"`
		ActionID string `json:"action_id"`
	}
	if json.Unmarshal(body, &pb) != nil || resp.StatusCode != 200 || pb.Result != "registered" || pb.ActionID == "" {
		t.Fatalf("signed postback through the load balancer = %d %s, want 200 registered", resp.StatusCode, body)
	}
	if b := resp.Header.Get("X-Clickedge-Backend"); b != "registration" {
		t.Errorf("postback answered by backend %q, want registration", b)
	}
	actions, err := ch.Consume("demo-actions", "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-actions:
		if d.Exchange != "actions" || d.MessageId != pb.ActionID || d.RoutingKey != "action.eu-central" || !strings.Contains(string(d.Body), euClick) {
			t.Errorf("action arrived as exchange %q key %q id %q (want actions, action.eu-central, %s):\n%s", d.Exchange, d.RoutingKey, d.MessageId, pb.ActionID, d.Body)
		}
	case <-ctx.Done():
		t.Fatal("the registered postback never reached the actions exchange")
	}
	conn.Close()

	// Each region's nodes form a pool: `clickedge cluster members` on one
	// node lists its region's members alive (eu-central with the
	// registration node), and no other region's.
	for _, tc := range []struct{ admin, want string }{
		{"127.0.10.1:18901", "eu-central-1,eu-central-2,registration-1"},
		{"127.0.20.2:18901", "us-east-1,us-east-2"},
		{"127.0.30.1:18901", "ap-south-1,ap-south-2"},
	} {
		deadline := time.Now().Add(15 * time.Second)
		for {
			out, err := exec.Command(bin, "cluster", "members", "-json", "-admin", tc.admin, "-token", "demo-admin-token").Output()
			var ms struct {
				Members []struct{ Name, State string } `json:"members"`
			}
			var alive []string
			if err == nil && json.Unmarshal(out, &ms) == nil {
				for _, m := range ms.Members {
					if m.State == "alive" {
						alive = append(alive, m.Name)
					}
				}
			}
			if strings.Join(alive, ",") == tc.want && len(ms.Members) == len(alive) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster members on %s: alive %v, want %s (err %v):\n%s", tc.admin, alive, tc.want, err, out)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	stopStart := time.Now()
	if out, err := stop(); err != nil {
		t.Fatalf("demo-stop.sh: %v\n%s", err, out)
	}
	down := time.Since(stopStart)
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			if stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(stat), ") Z ") {
				t.Errorf("pid %d is still running after demo-stop", pid)
			}
		}
	}
	if _, err := os.Stat(demoDir); err == nil {
		t.Errorf("demo-stop left %s", demoDir)
	}
	t.Logf("demo up in %v, down in %v (total with build %v)", up.Round(time.Millisecond), down.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if up+down > time.Minute {
		t.Errorf("demo up %v + down %v: want under a minute", up, down)
	}
}
