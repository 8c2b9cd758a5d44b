package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// harden #7: serve refuses an admin listener on a non-loopback address
// without a token, naming admin.token, and creates nothing.
func TestServeRefusesExposedAdmin(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:%s", ":%s", "[::]:%s"} {
		dir := t.TempDir()
		_, port, _ := net.SplitHostPort(freePort(t))
		admin := fmt.Sprintf(listen, port)
		cfg := filepath.Join(dir, "c.yaml")
		os.WriteFile(cfg, []byte(fmt.Sprintf("http:\n  listen: %q\nadmin:\n  listen: %q\ndata_dir: %q\n",
			freePort(t), admin, filepath.Join(dir, "data"))), 0o600)
		code, msg := runServe(t, "-config", cfg)
		if code != 1 || !strings.Contains(msg, "admin.token") || !strings.Contains(msg, admin) {
			t.Errorf("admin.listen %s without a token: exit %d, stderr %q; want 1 naming admin.token", admin, code, msg)
		}
		if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
			t.Errorf("admin.listen %s without a token: data_dir created (%v)", admin, err)
		}
	}
}

// harden #14: a start that fails after the outbox was opened (here: the
// public port is taken) removes the outbox file and the data_dir it
// created; an existing data_dir and outbox are left alone.
func TestFailedStartLeavesNoOutbox(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	data := filepath.Join(dir, "new", "data")
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("http:\n  listen: %q\nadmin:\n  listen: %q\ndata_dir: %q\n",
		taken.Addr().String(), freePort(t), data)), 0o600)
	code, msg := runServe(t, "-config", cfg)
	if code != 1 || !strings.Contains(msg, "http.listen") {
		t.Fatalf("serve on a taken port: exit %d, stderr %q; want 1 naming http.listen", code, msg)
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); !os.IsNotExist(err) {
		t.Errorf("the failed start left %s behind (%v)", filepath.Join(dir, "new"), err)
	}

	// An existing data_dir keeps what was there; only the new outbox goes.
	if code, msg := runServe(t, "-config", cfg); code != 1 {
		t.Fatalf("second try: exit %d, %s", code, msg)
	}
	os.MkdirAll(data, 0o750)
	keep := filepath.Join(data, "keep.txt")
	os.WriteFile(keep, []byte("x"), 0o600)
	runServe(t, "-config", cfg)
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("a failed start removed a file it did not create: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "outbox.db")); !os.IsNotExist(err) {
		t.Errorf("the failed start left outbox.db in an existing data_dir (%v)", err)
	}
}

// harden #14: a reload to a catalog with no links while links serve is
// refused (SIGHUP and the admin API: 409 with how to force it); with
// ?force=1 it is loaded.
func TestReloadRefusesEmptyCatalogUnlessForced(t *testing.T) {
	dir := t.TempDir()
	links := filepath.Join(dir, "links.yaml")
	os.WriteFile(links, []byte(testCatalog), 0o600)
	p := startEdge(t, dir, "forwarder:\n  amqp_urls: [\"amqp://guest:guest@127.0.0.1:1/\"]\ncatalog:\n  file: links.yaml\n")

	os.WriteFile(links, []byte("links: []\n"), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, p, "has no links and")
	if r := get(t, "http://"+p.http+"/r/tv-sale"); r.StatusCode != 302 {
		t.Fatalf("after a refused empty reload tv-sale = %d, want 302 from the last good catalog", r.StatusCode)
	}
	post := func(query string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+p.admin+"/admin/catalog/reload"+query, nil)
		req.Header.Set("Authorization", "Bearer secret-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	if code, body := post(""); code != 409 || !strings.Contains(body, "force=1") {
		t.Fatalf("admin reload of an empty catalog = %d %q, want 409 saying how to force it", code, body)
	}
	if r := get(t, "http://"+p.http+"/r/tv-sale"); r.StatusCode != 302 {
		t.Fatalf("after a refused admin reload tv-sale = %d, want 302", r.StatusCode)
	}
	if code, body := post("?force=1"); code != 200 {
		t.Fatalf("forced reload = %d %q, want 200", code, body)
	}
	if r := get(t, "http://"+p.http+"/r/tv-sale"); r.StatusCode != 404 {
		t.Fatalf("after a forced empty reload tv-sale = %d, want 404", r.StatusCode)
	}
}
