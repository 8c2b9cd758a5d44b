package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
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
