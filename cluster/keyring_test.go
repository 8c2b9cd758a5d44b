package cluster_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/clickedge/clickedge/cluster"
)

func readKeyFile(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ks []string
	if err := json.Unmarshal(b, &ks); err != nil {
		t.Fatalf("keyring file %s: %v\n%s", path, err, b)
	}
	return ks
}

func TestParseKeyring(t *testing.T) {
	for _, tc := range []struct {
		in, err string
	}{
		{`["` + newKey(1, 16) + `"]`, ""},
		{`["` + newKey(1, 24) + `","` + newKey(2, 32) + `"]`, ""},
		{`[]`, "no keys"},
		{`{}`, "JSON array"},
		{`["not base64!"]`, "key 0: key is not base64"},
		{`["` + newKey(1, 32) + `","` + newKey(1, 20) + `"]`, "key 1: key must be 16, 24 or 32 bytes, got 20"},
	} {
		_, err := ParseKeyring([]byte(tc.in))
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("ParseKeyring(%s) = %v, want error containing %q", tc.in, err, tc.err)
		}
	}
}

// Keyring changes are written to the file, which a restart reads back.
func TestKeyringFileKeepsChanges(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := newKey(1, 32), newKey(2, 16)
	path := writeKeyFile(t, dir, "keyring.json", k1)
	kr, err := LoadKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := ParseKey(k2)
	b1, _ := ParseKey(k1)
	if err := kr.Install(b2); err != nil {
		t.Fatal(err)
	}
	if got := readKeyFile(t, path); !slices.Equal(got, []string{k1, k2}) {
		t.Fatalf("after install: file = %v, want [k1 k2]", got)
	}
	if err := kr.Use(b2); err != nil {
		t.Fatal(err)
	}
	if got := readKeyFile(t, path); !slices.Equal(got, []string{k2, k1}) {
		t.Fatalf("after use: file = %v, want [k2 k1]", got)
	}
	if err := kr.Remove(b2); err == nil {
		t.Fatal("removing the primary key succeeded")
	}
	if err := kr.Remove(b1); err != nil {
		t.Fatal(err)
	}
	if err := kr.Use(b1); err == nil {
		t.Fatal("using a removed key succeeded")
	}
	kr2, err := LoadKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := kr2.Keys(); !slices.Equal(got, []string{k2}) {
		t.Fatalf("reloaded keys = %v, want [k2]", got)
	}
	// No temp files left behind.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("dir holds %d files after changes, want only the keyring", len(ents))
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("keyring mode %v, want 0600", st.Mode().Perm())
	}
}

// Keys rotate across the pool with nodes down: each step reports the
// member that missed it, and run again once the member is back it
// succeeds everywhere. The keyring files keep every step, so restarts
// keep the rotated keys; a node left with only the removed key is refused
// until the new key is installed on it through its own admin API.
func TestKeyRotationWithNodeDown(t *testing.T) {
	dir := t.TempDir()
	oldKey, newK := newKey(10, 32), newKey(50, 32)
	files := map[string]string{}
	for _, n := range []string{"a", "b", "c"} {
		files[n] = writeKeyFile(t, dir, n+".json", oldKey)
	}
	a := startNode(t, nodeOpts{name: "a", keyFile: files["a"]})
	b := startNode(t, nodeOpts{name: "b", keyFile: files["b"], join: []string{a.Addr()}})
	c := startNode(t, nodeOpts{name: "c", keyFile: files["c"], join: []string{a.Addr()}})
	allAlive(t, 10*time.Second, a, b, c)
	cAddr := c.Addr()
	ctx := context.Background()
	restartC := func() {
		t.Helper()
		c.kill()
		waitFor(t, 15*time.Second, func() string { return view(a) }, func() bool { return stateOf(a, "c") == StateDead })
	}
	step := func(n *testNode, op, key string, wantFailed ...string) {
		t.Helper()
		rep := n.KeyOp(ctx, op, key)
		if !slices.Equal(rep.Failed, append([]string{}, wantFailed...)) {
			t.Fatalf("%s: failed = %v, want %v; %+v", op, rep.Failed, wantFailed, rep)
		}
	}

	// install while c is down: reported; c comes back on the old key
	// (still everyone's primary) and the install is run again.
	restartC()
	step(a, "install", newK, "c")
	if got := readKeyFile(t, files["b"]); !slices.Equal(got, []string{oldKey, newK}) {
		t.Fatalf("b's file after install = %v, want [old new]", got)
	}
	c = startNode(t, nodeOpts{name: "c", keyFile: files["c"], bind: cAddr, join: []string{a.Addr()}})
	allAlive(t, 15*time.Second, a, b, c)
	step(b, "install", newK)

	// use while c is down: c restarts from its file (both keys) and
	// rejoins the pool that now sends under the new key.
	restartC()
	step(a, "use", newK, "c")
	c = startNode(t, nodeOpts{name: "c", keyFile: files["c"], bind: cAddr, join: []string{a.Addr()}})
	allAlive(t, 15*time.Second, a, b, c)
	step(a, "use", newK)
	step(a, "remove", oldKey)

	rep := a.KeyOp(ctx, "list", "")
	for _, m := range rep.Members {
		if !m.OK || m.Primary != newK || !slices.Equal(m.Keys, []string{newK}) {
			t.Errorf("after rotation %s: %+v, want only the new key, primary", m.Name, m)
		}
	}
	for n, f := range files {
		if got := readKeyFile(t, f); !slices.Equal(got, []string{newK}) {
			t.Errorf("%s's keyring file = %v, want [new]", n, got)
		}
	}

	// Restarted from its file, c rejoins under the new key.
	restartC()
	c = startNode(t, nodeOpts{name: "c", keyFile: files["c"], bind: cAddr, join: []string{a.Addr()}})
	allAlive(t, 15*time.Second, a, b, c)

	// A node still on the old key only is refused, until the new key is
	// installed and made primary on it through its own admin API.
	stale := writeKeyFile(t, dir, "stale.json", oldKey)
	x := startNode(t, nodeOpts{name: "x", keyFile: stale})
	if _, err := x.Join([]string{a.Addr()}); err == nil {
		t.Fatal("a node with the removed key joined")
	}
	step(x, "install", newK)
	step(x, "use", newK)
	if _, err := x.Join([]string{a.Addr()}); err != nil {
		t.Fatalf("after installing the new key, join: %v", err)
	}
	allAlive(t, 15*time.Second, a, b, c, x)
}

// The admin key endpoints need the token; list works read-only with it.
func TestKeyEndpointsNeedToken(t *testing.T) {
	dir := t.TempDir()
	a := startNode(t, nodeOpts{name: "a", keyFile: writeKeyFile(t, dir, "a.json", newKey(1, 32)), token: "s3cret"})
	body := `{"op":"install","key":"` + newKey(2, 32) + `"}`
	for _, tc := range []struct {
		method, path, auth, body string
		want                     int
	}{
		{"POST", "/admin/cluster/keys", "", body, 401},
		{"POST", "/admin/cluster/keys", "Bearer nope", body, 403},
		{"POST", "/admin/cluster/keys", "Bearer s3cret", `{"op":"explode","key":"x"}`, 400},
		{"POST", "/admin/cluster/keys", "Bearer s3cret", `{"op":"install","key":"AAAA"}`, 400},
		{"POST", "/admin/cluster/keys", "Bearer s3cret", body, 200},
		{"GET", "/admin/cluster/keys", "", "", 401},
		{"GET", "/admin/cluster/keys", "Bearer s3cret", "", 200},
		{"GET", "/admin/cluster", "", "", 401},
		{"GET", "/admin/cluster", "Bearer s3cret", "", 200},
	} {
		code, out := do(t, tc.method, "http://"+a.admin+tc.path, tc.auth, tc.body)
		if code != tc.want {
			t.Errorf("%s %s (%q) = %d %s, want %d", tc.method, tc.path, tc.auth, code, out, tc.want)
		}
	}
	if got := readKeyFile(t, filepath.Join(dir, "a.json")); len(got) != 2 {
		t.Errorf("keyring after the one authorised install = %v, want 2 keys", got)
	}
}
