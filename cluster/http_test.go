package cluster_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func do(t *testing.T, method, url, auth, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The internal endpoints refuse unsigned requests and requests signed
// with a key the node does not hold.
func TestInternalEndpointsNeedSignature(t *testing.T) {
	dir := t.TempDir()
	a := startNode(t, nodeOpts{name: "a", keyFile: writeKeyFile(t, dir, "a.json", newKey(1, 32))})
	for _, p := range []string{"/cluster/v1/catalog", "/cluster/v1/handoff", "/cluster/v1/keys"} {
		method := "POST"
		if strings.HasSuffix(p, "catalog") {
			method = "GET"
		}
		code, out := do(t, method, "http://"+a.admin+p, "", `{"op":"list"}`)
		if code != 401 {
			t.Errorf("unsigned %s %s = %d %s, want 401", method, p, code, out)
		}
	}
	// A forged signature.
	req, _ := http.NewRequest("POST", "http://"+a.admin+"/cluster/v1/keys", strings.NewReader(`{"op":"list"}`))
	req.Header.Set("Clickedge-Cluster-Auth", "t="+strconv.FormatInt(time.Now().Unix(), 10)+",n=x,s=00")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("bad signature = %d, want 401", resp.StatusCode)
	}
}
