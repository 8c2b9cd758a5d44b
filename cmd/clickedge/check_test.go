package main

import (
	"bytes"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// deployRegions is the repository's deploy/regions, from this package.
const deployRegions = "../../deploy/regions"

// copyRegions copies deploy/regions to a temporary directory and provisions
// what a deployment provisions beside it and never commits: each region's
// secrets/ (admin token, gossip keyring, and the registration node's
// advertisers file, which holds the advertisers' signing secrets).
func copyRegions(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(deployRegions)); err != nil {
		t.Fatal(err)
	}
	regions, _ := filepath.Glob(filepath.Join(dst, "*", ""))
	for _, r := range regions {
		if fi, err := os.Stat(r); err != nil || !fi.IsDir() {
			continue
		}
		sec := filepath.Join(r, "secrets")
		if _, err := os.Stat(sec); err == nil {
			t.Fatalf("%s is committed: secrets must never be", sec)
		}
		os.MkdirAll(sec, 0o700)
		os.WriteFile(filepath.Join(sec, "admin-token"), []byte("test-token-"+filepath.Base(r)+"\n"), 0o600)
		os.WriteFile(filepath.Join(sec, "keyring.json"), []byte(`["AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="]`), 0o600)
		os.WriteFile(filepath.Join(sec, "advertisers.yaml"), []byte("- id: acme\n  secret: test-secret-0123456789abcdef\n"), 0o600)
	}
	return dst
}

// nodeConfigs lists the node config files under dir (every .yaml in a
// region directory).
func nodeConfigs(t *testing.T, dir string) []string {
	files, err := filepath.Glob(filepath.Join(dir, "*", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no node configs under %s (%v)", dir, err)
	}
	return files
}

func runCheck(t *testing.T, file string, env ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run([]string{"serve", "-config", file, "-check"}, &out, &errb, env)
	return code, out.String(), errb.String()
}

// TestDeployConfigs runs `serve -check` over every node config in
// deploy/regions and checks the layout the docs promise: three regions of
// at least two edge nodes, a registration node, ids unique and matching
// their file, regions matching their directory, no committed credentials.
func TestDeployConfigs(t *testing.T) {
	dir := copyRegions(t)
	ids := map[string]string{}
	perRegion := map[string]int{}
	registration := 0
	joins := map[string][]string{}
	for _, f := range nodeConfigs(t, dir) {
		rel, _ := filepath.Rel(dir, f)
		code, stdout, stderr := runCheck(t, f)
		if code != 0 {
			t.Errorf("serve -config %s -check = %d\n%s", rel, code, stderr)
			continue
		}
		if !strings.Contains(stdout, ": ok: node ") {
			t.Errorf("%s: -check printed %q", rel, stdout)
		}
		cfg, err := LoadConfig(f, nil)
		if err != nil {
			t.Fatal(err)
		}
		stem := strings.TrimSuffix(filepath.Base(f), ".yaml")
		region := filepath.Base(filepath.Dir(f))
		if cfg.Node.ID != stem {
			t.Errorf("%s: node.id %q, want the file's name %q", rel, cfg.Node.ID, stem)
		}
		if cfg.Node.Region != region {
			t.Errorf("%s: node.region %q, want the directory's name %q", rel, cfg.Node.Region, region)
		}
		if other, dup := ids[cfg.Node.ID]; dup {
			t.Errorf("node.id %q in both %s and %s", cfg.Node.ID, other, rel)
		}
		ids[cfg.Node.ID] = rel
		if strings.HasPrefix(stem, "registration-") {
			registration++
		} else {
			perRegion[region]++
		}
		if len(cfg.HTTP.TrustedProxies) == 0 {
			t.Errorf("%s: no http.trusted_proxies: behind the load balancer every click would come from it", rel)
		}
		if cfg.Admin.TokenFile == "" {
			t.Errorf("%s: admin.listen %s without admin.token_file", rel, cfg.Admin.Listen)
		}
		for _, s := range cfg.Forwarder.AMQPURLs {
			if u, err := url.Parse(s); err != nil || u.User != nil {
				t.Errorf("%s: forwarder.amqp_urls carries credentials; they come from CLICKEDGE_FORWARDER_AMQP_URLS", rel)
			}
		}
		// The merged features: roles, the region's encrypted pool, the
		// links exchange, the registration node's advertisers.
		wantRoles := []string{roleEdge}
		if strings.HasPrefix(stem, "registration-") {
			wantRoles = []string{rolePostback}
			if cfg.AdvertisersPath() == "" {
				t.Errorf("%s: registration node without postback.advertisers", rel)
			}
		}
		if !slices.Equal(cfg.Node.Roles, wantRoles) {
			t.Errorf("%s: node.roles %v, want %v", rel, cfg.Node.Roles, wantRoles)
		}
		if !cfg.Cluster.Enabled() || cfg.KeyringPath() == "" || len(cfg.Cluster.Join) < 2 || cfg.Cluster.Advertise == "" {
			t.Errorf("%s: cluster %+v: want bind, advertise, join of the region's edges and a keyring", rel, cfg.Cluster)
		}
		joins[region] = append(joins[region], strings.Join(cfg.Cluster.Join, ","))
		if cfg.Links.Exchange != "links" {
			t.Errorf("%s: links.exchange %q, want links", rel, cfg.Links.Exchange)
		}
		raw, _ := os.ReadFile(f)
		if bytes.Contains(raw, []byte("token:")) || bytes.Contains(raw, []byte("secret:")) || bytes.Contains(raw, []byte("dsn:")) {
			t.Errorf("%s: a secret (admin.token or sentry.dsn) is written in the file", rel)
		}
	}
	if len(perRegion) != 3 {
		t.Errorf("regions with edge nodes: %v, want 3", perRegion)
	}
	for r, n := range perRegion {
		if n < 2 {
			t.Errorf("region %s has %d edge nodes, want >= 2", r, n)
		}
	}
	if registration != 1 {
		t.Errorf("%d registration nodes, want 1", registration)
	}
	// A region's nodes join the same seeds: one pool per region.
	for r, js := range joins {
		for _, j := range js[1:] {
			if j != js[0] {
				t.Errorf("region %s: cluster.join differs between nodes: %q", r, js)
			}
		}
	}
}

// TestCheckRefuses: -check fails, naming the key and the file, for each
// kind of file a config names; and it binds nothing (it passes while the
// node's ports are taken, as they are when it checks a running node's next
// config).
func TestCheckRefuses(t *testing.T) {
	dir := copyRegions(t)
	node := filepath.Join(dir, "eu-central", "eu-central-1.yaml")
	if code, _, stderr := runCheck(t, node); code != 0 {
		t.Fatalf("baseline: -check = %d: %s", code, stderr)
	}

	var taken [2]string
	for i := range taken {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		taken[i] = ln.Addr().String()
	}
	if code, _, stderr := runCheck(t, node, "CLICKEDGE_HTTP_LISTEN="+taken[0], "CLICKEDGE_ADMIN_LISTEN="+taken[1]); code != 0 {
		t.Errorf("-check with both listen addresses already bound = %d: %s", code, stderr)
	}

	aFile := filepath.Join(t.TempDir(), "file")
	os.WriteFile(aFile, []byte("x"), 0o600)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) []string // returns env
		want  []string
	}{
		{"bad catalog rule", func(t *testing.T) []string {
			os.WriteFile(filepath.Join(dir, "links.yaml"), []byte("links:\n  - code: demo\n    url: \"https://x.example/\"\n    rules:\n      - name: broken\n        when: 'country =='\n        url: \"https://y.example/\"\n"), 0o644)
			return nil
		}, []string{"catalog.file", "links.yaml", "broken"}},
		{"missing catalog", func(t *testing.T) []string {
			os.Remove(filepath.Join(dir, "links.yaml"))
			return nil
		}, []string{"catalog.file", "links.yaml"}},
		{"missing geoip", func(t *testing.T) []string {
			return []string{"CLICKEDGE_CATALOG_FILE=", "CLICKEDGE_GEOIP_DATABASE=GeoLite2-Country.mmdb"}
		}, []string{"geoip.database", "GeoLite2-Country.mmdb"}},
		{"data_dir is a file", func(t *testing.T) []string {
			return []string{"CLICKEDGE_CATALOG_FILE=", "CLICKEDGE_DATA_DIR=" + aFile}
		}, []string{"data_dir", "not a directory"}},
		{"data_dir under a file", func(t *testing.T) []string {
			return []string{"CLICKEDGE_CATALOG_FILE=", "CLICKEDGE_DATA_DIR=" + aFile + "/data"}
		}, []string{"data_dir", "not a directory"}},
		{"bad keyring", func(t *testing.T) []string {
			os.WriteFile(filepath.Join(dir, "eu-central", "secrets", "keyring.json"), []byte(`["not base64"]`), 0o600)
			return []string{"CLICKEDGE_CATALOG_FILE="}
		}, []string{"cluster.keyring_file", "keyring.json"}},
		{"missing keyring", func(t *testing.T) []string {
			os.Remove(filepath.Join(dir, "eu-central", "secrets", "keyring.json"))
			return []string{"CLICKEDGE_CATALOG_FILE="}
		}, []string{"cluster.keyring_file", "keyring.json"}},
		{"bad advertisers", func(t *testing.T) []string {
			os.WriteFile(filepath.Join(dir, "eu-central", "secrets", "advertisers.yaml"), []byte("- id: acme\n  secret: short\n  allow: [bogus]\n"), 0o600)
			return []string{"CLICKEDGE_CATALOG_FILE=", "CLICKEDGE_NODE_ROLES=postback", "CLICKEDGE_POSTBACK_ADVERTISERS=secrets/advertisers.yaml"}
		}, []string{"postback.advertisers", "advertisers.yaml", "acme", "allow[0]"}},
		{"missing advertisers", func(t *testing.T) []string {
			os.Remove(filepath.Join(dir, "eu-central", "secrets", "advertisers.yaml"))
			return []string{"CLICKEDGE_CATALOG_FILE=", "CLICKEDGE_NODE_ROLES=postback", "CLICKEDGE_POSTBACK_ADVERTISERS=secrets/advertisers.yaml"}
		}, []string{"postback.advertisers", "advertisers.yaml"}},
		{"missing token file", func(t *testing.T) []string {
			os.Remove(filepath.Join(dir, "eu-central", "secrets", "admin-token"))
			return []string{"CLICKEDGE_CATALOG_FILE="}
		}, []string{"admin.token_file", "admin-token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := tc.setup(t)
			code, _, stderr := runCheck(t, node, env...)
			if code != 1 {
				t.Fatalf("-check = %d, want 1; stderr:\n%s", code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}
