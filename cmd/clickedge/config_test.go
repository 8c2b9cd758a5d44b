package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

const testHost = "test-host"

func TestMain(m *testing.M) {
	hostname = func() (string, error) { return testHost, nil }
	os.Exit(m.Run())
}

// loadYAML writes src to clickedge.yaml in a fresh working directory and
// loads it, so that errors read "clickedge.yaml: ...".
func loadYAML(t *testing.T, src string, env ...string) (*Config, error) {
	t.Helper()
	t.Chdir(t.TempDir())
	if err := os.WriteFile("clickedge.yaml", []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return LoadConfig("clickedge.yaml", env)
}

func mustLoad(t *testing.T, src string, env ...string) *Config {
	t.Helper()
	c, err := loadYAML(t, src, env...)
	if err != nil {
		t.Fatalf("LoadConfig(%q, %q): %v", src, env, err)
	}
	return c
}

func d(s string) Duration {
	v, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return Duration(v)
}

// wantDefaults is the configuration the brief and DESIGN.md specify.
func wantDefaults() Config {
	return Config{
		Node: NodeConfig{ID: testHost, Region: "local", Roles: []string{"edge", "postback"}},
		HTTP: HTTPConfig{
			Listen:            ":8080",
			Server:            "fasthttp",
			TrustedProxies:    []string{},
			ReadHeaderTimeout: d("5s"),
			IdleTimeout:       d("120s"),
			MaxHeaderBytes:    64 << 10,
			MaxHeaderCount:    100,
			MaxConnections:    8192,
			BotClicks:         "record",
		},
		Admin:   AdminConfig{Listen: "127.0.0.1:9090"},
		DataDir: "./clickedge-data",
		Outbox: OutboxConfig{
			Durability:    "sync",
			MaxBytes:      0,
			Retention:     d("24h"),
			FlushInterval: d("10ms"),
			OnError:       "spill",
			SpillBytes:    32 << 20,
			WritePath:     "log",
		},
		Forwarder: ForwarderConfig{
			AMQPURLs:        []string{"amqp://guest:guest@127.0.0.1:5672/"},
			Exchange:        "clicks",
			Window:          1024,
			Heartbeat:       d("5s"),
			DialTimeout:     d("5s"),
			ConfirmTimeout:  d("30s"),
			ReconnectMin:    d("100ms"),
			ReconnectMax:    d("30s"),
			RetryMax:        d("10s"),
			DeclareQueue:    "",
			QueueType:       "quorum",
			ShutdownTimeout: d("10s"),
		},
		Catalog: CatalogConfig{File: ""},
		Links:   LinksConfig{Exchange: "links", StreamQueue: "links.stream", StreamMaxBytes: 20_000_000_000, Feed: "consume", WriteRate: 20, WriteBurst: 100, EmptyFile: "refuse"},
		GeoIP:   GeoIPConfig{Database: "", PollInterval: d("60s")},
		Log:     LogConfig{Level: "info", AccessSample: 0},
		Collector: CollectorConfig{AMQPURLs: []string{}, QueueType: "quorum", BatchSize: 2000,
			BatchInterval: d("100ms"), Writers: 2, MetricsListen: "127.0.0.1:9091", ShutdownTimeout: d("10s")},
		Cluster:  ClusterConfig{Join: []string{}},
		Postback: PostbackConfig{Exchange: "actions"},
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	got, err := LoadConfig("", nil)
	if err != nil {
		t.Fatalf("LoadConfig(\"\", nil): %v", err)
	}
	if want := wantDefaults(); !reflect.DeepEqual(*got, want) {
		t.Errorf("LoadConfig(\"\", nil) =\n%+v\nwant\n%+v", *got, want)
	}
	if got.Path() != "" {
		t.Errorf("Path() = %q, want \"\"", got.Path())
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Validate() of the defaults: %v", err)
	}
}

// Keys absent from the file, or null, keep their defaults; present ones
// replace them (lists too, never appended to).
func TestLoadConfigOverlay(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want func(*Config)
	}{
		{name: "empty file", src: "", want: func(*Config) {}},
		{name: "comments only", src: "# nothing here\n\n# at all\n", want: func(*Config) {}},
		{name: "null document", src: "~\n", want: func(*Config) {}},
		{name: "explicit document start", src: "---\nnode:\n  region: eu\n", want: func(c *Config) { c.Node.Region = "eu" }},
		{name: "null section", src: "http:\nlog: null\n", want: func(*Config) {}},
		{name: "null key", src: "http:\n  listen:\n", want: func(*Config) {}},
		{
			name: "contract example",
			src: `node:
  id: eu-1
  region: eu-central
http:
  listen: ":8080"
  trusted_proxies: []
admin:
  listen: "127.0.0.1:9090"
  token: ""
data_dir: ./clickedge-data
outbox:
  durability: sync
forwarder:
  amqp_urls: ["amqp://guest:guest@127.0.0.1:5672/"]
  exchange: clicks
catalog:
  file: links.yaml
geoip:
  database: ""
`,
			want: func(c *Config) {
				c.Node.ID, c.Node.Region = "eu-1", "eu-central"
				c.Catalog.File = "links.yaml"
			},
		},
		{
			name: "one key keeps its siblings",
			src:  "forwarder:\n  window: 64\n",
			want: func(c *Config) { c.Forwarder.Window = 64 },
		},
		{
			name: "lists are replaced",
			src:  "forwarder:\n  amqp_urls:\n    - amqp://a/\n    - amqps://b:5671/\nhttp:\n  trusted_proxies: [10.0.0.0/8]\n",
			want: func(c *Config) {
				c.Forwarder.AMQPURLs = []string{"amqp://a/", "amqps://b:5671/"}
				c.HTTP.TrustedProxies = []string{"10.0.0.0/8"}
			},
		},
		{
			name: "every type",
			src: `http:
  read_header_timeout: 2s
  max_header_bytes: 4096
outbox:
  durability: async
  max_bytes: 8GiB
  spill_bytes: "500MB"
  retention: 0
  flush_interval: 2ms
log:
  access_sample: 0.25
  level: debug
geoip:
  poll_interval: 0s
`,
			want: func(c *Config) {
				c.HTTP.ReadHeaderTimeout = d("2s")
				c.HTTP.MaxHeaderBytes = 4096
				c.Outbox.Durability = "async"
				c.Outbox.MaxBytes = 8 << 30
				c.Outbox.SpillBytes = 500_000_000
				c.Outbox.Retention = 0
				c.Outbox.FlushInterval = d("2ms")
				c.Log.AccessSample = 0.25
				c.Log.Level = "debug"
				c.GeoIP.PollInterval = 0
			},
		},
		{name: "integer for a float", src: "log:\n  access_sample: 1\n", want: func(c *Config) { c.Log.AccessSample = 1 }},
		{name: "quoted keys", src: "\"node\":\n  'region': eu\n", want: func(c *Config) { c.Node.Region = "eu" }},
		{name: "flow mapping", src: "node: {id: n1, region: eu}\n", want: func(c *Config) { c.Node.ID, c.Node.Region = "n1", "eu" }},
		{name: "explicit string tag", src: "node:\n  id: !!str 12345\n", want: func(c *Config) { c.Node.ID = "12345" }},
		{
			name: "anchor and alias",
			src:  "node:\n  region: &r eu\n  id: *r\n",
			want: func(c *Config) { c.Node.ID, c.Node.Region = "eu", "eu" },
		},
		{
			name: "literal block",
			src:  "data_dir: |-\n  /var/lib/clickedge\n",
			want: func(c *Config) { c.DataDir = "/var/lib/clickedge" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustLoad(t, tt.src)
			want := wantDefaults()
			tt.want(&want)
			want.path = "clickedge.yaml"
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("LoadConfig(%q) =\n%+v\nwant\n%+v", tt.src, *got, want)
			}
		})
	}
}

// A file that does not fit Config is refused with every problem, each
// naming the file, the key and the line.
func TestLoadConfigFileErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // the lines of the error, exactly
	}{
		{
			name: "unknown key with suggestion",
			src:  "http:\n  listn: \":80\"\n",
			want: []string{`clickedge.yaml: http.listn: unknown key; did you mean http.listen? (line 2)`},
		},
		{
			name: "unknown section with suggestion",
			src:  "htp:\n  listen: x\n",
			want: []string{`clickedge.yaml: htp: unknown key; did you mean http? (line 1)`},
		},
		{
			name: "unknown key",
			src:  "node:\n  id: a\nbogus: 1\n",
			want: []string{`clickedge.yaml: bogus: unknown key (line 3)`},
		},
		{
			name: "keys are case-sensitive",
			src:  "HTTP:\n  listen: x\n",
			want: []string{`clickedge.yaml: HTTP: unknown key; did you mean http? (line 1)`},
		},
		{
			name: "all problems at once",
			src:  "http:\n  listn: x\nlog:\n  level: [1]\n  access_sample: lots\n",
			want: []string{
				`clickedge.yaml: http.listn: unknown key; did you mean http.listen? (line 2)`,
				`clickedge.yaml: log.level: expected a string, got a list (line 4)`,
				`clickedge.yaml: log.access_sample: expected a number, got string "lots" (line 5)`,
			},
		},
		{
			name: "float for an int",
			src:  "forwarder:\n  window: 1.5\n",
			want: []string{`clickedge.yaml: forwarder.window: expected an integer, got float 1.5 (line 2)`},
		},
		{
			name: "string for an int",
			src:  "forwarder:\n  window: \"10\"\n",
			want: []string{`clickedge.yaml: forwarder.window: expected an integer, got string "10" (line 2)`},
		},
		{
			name: "int too large",
			src:  "forwarder:\n  window: 99999999999999999999\n",
			want: []string{`clickedge.yaml: forwarder.window: 99999999999999999999 is too large (line 2)`},
		},
		{
			name: "number for a string",
			src:  "http:\n  listen: 8080\n",
			want: []string{`clickedge.yaml: http.listen: expected a string, got int 8080; quote it to use it as text (line 2)`},
		},
		{
			name: "boolean for a string",
			src:  "data_dir: true\n",
			want: []string{`clickedge.yaml: data_dir: expected a string, got boolean true; quote it to use it as text (line 1)`},
		},
		{
			name: "list for a section",
			src:  "http: [1]\n",
			want: []string{`clickedge.yaml: http: expected a mapping of keys, got a list (line 1)`},
		},
		{
			name: "scalar for a section",
			src:  "http: yes please\n",
			want: []string{`clickedge.yaml: http: expected a mapping of keys, got string "yes please" (line 1)`},
		},
		{
			name: "top level list",
			src:  "- a\n- b\n",
			want: []string{`clickedge.yaml: expected a mapping of keys (node:, http:, ...), got a list (line 1)`},
		},
		{
			name: "top level scalar",
			src:  "hello\n",
			want: []string{`clickedge.yaml: expected a mapping of keys (node:, http:, ...), got string "hello" (line 1)`},
		},
		{
			name: "string for a list",
			src:  "http:\n  trusted_proxies: 10.0.0.0/8\n",
			want: []string{`clickedge.yaml: http.trusted_proxies: expected a list of strings, got string "10.0.0.0/8" (line 2)`},
		},
		{
			name: "secret not quoted",
			src:  "forwarder:\n  amqp_urls: amqp://u:secretpw@h/\nadmin:\n  token: 1234567\n",
			want: []string{
				`clickedge.yaml: forwarder.amqp_urls: expected a list of strings, got a value of type string (not shown: it may be secret) (line 2)`,
				`clickedge.yaml: admin.token: expected a string, got a value of type int (not shown: it may be secret); quote it to use it as text (line 4)`,
			},
		},
		{
			name: "nested list",
			src:  "forwarder:\n  amqp_urls: [amqp://a/, [b]]\n",
			want: []string{`clickedge.yaml: forwarder.amqp_urls[1]: expected a string, got a list (line 2)`},
		},
		{
			name: "null list element",
			src:  "http:\n  trusted_proxies:\n    - 10.0.0.0/8\n    -\n",
			want: []string{`clickedge.yaml: http.trusted_proxies[1]: expected a string, got null (line 3)`},
		},
		{
			name: "duration without unit",
			src:  "forwarder:\n  heartbeat: 5\n",
			want: []string{`clickedge.yaml: forwarder.heartbeat: invalid duration 5: missing unit (e.g. 5s or 5ms) (line 2)`},
		},
		{
			name: "bad duration",
			src:  "forwarder:\n  heartbeat: soon\n",
			want: []string{`clickedge.yaml: forwarder.heartbeat: invalid duration "soon" (want a number with a unit, e.g. 5s, 100ms, 1h30m) (line 2)`},
		},
		{
			name: "list for a duration",
			src:  "forwarder:\n  heartbeat: [5s]\n",
			want: []string{`clickedge.yaml: forwarder.heartbeat: expected a duration like 5s, got a list (line 2)`},
		},
		{
			name: "negative size",
			src:  "outbox:\n  max_bytes: -1\n",
			want: []string{`clickedge.yaml: outbox.max_bytes: invalid size -1: must not be negative (line 2)`},
		},
		{
			name: "bad size unit",
			src:  "outbox:\n  max_bytes: 8 gigs\n",
			want: []string{`clickedge.yaml: outbox.max_bytes: invalid size "8 gigs": unknown unit "gigs" (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB) (line 2)`},
		},
		{
			name: "float size",
			src:  "outbox:\n  max_bytes: 1.5\n",
			want: []string{`clickedge.yaml: outbox.max_bytes: expected a size like 32MiB, got float 1.5 (line 2)`},
		},
		{
			name: "merge key",
			src:  "http:\n  <<: {listen: \":1\"}\n",
			want: []string{`clickedge.yaml: http: merge keys (<<) are not supported (line 2)`},
		},
		{
			name: "two documents",
			src:  "node:\n  id: a\n---\nnode:\n  id: b\n",
			want: []string{`clickedge.yaml: more than one YAML document (line 4)`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadYAML(t, tt.src)
			if err == nil {
				t.Fatalf("LoadConfig(%q) = %+v, want an error", tt.src, c)
			}
			if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, tt.want) {
				t.Errorf("LoadConfig(%q) error:\n%s\nwant:\n%s", tt.src, err, strings.Join(tt.want, "\n"))
			}
			if strings.Contains(err.Error(), "secretpw") || strings.Contains(err.Error(), "1234567") {
				t.Errorf("LoadConfig(%q) error leaks a secret: %s", tt.src, err)
			}
		})
	}
}

// Errors the YAML parser finds name the file and the line too.
func TestLoadConfigSyntaxErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want *regexp.Regexp
	}{
		{"unterminated quote", "http:\n  listen: \"abc\n", regexp.MustCompile(`^clickedge\.yaml: .+ \(line \d+\)$`)},
		{"duplicate key", "http:\n  listen: a\n  listen: b\n", regexp.MustCompile(`^clickedge\.yaml: .*listen.* \(line 3\)$`)},
		{"bad indentation", "http:\n  listen: a\n bad: b\n", regexp.MustCompile(`^clickedge\.yaml: .+ \(line \d+\)$`)},
		{"tab indentation", "http:\n\tlisten: a\n", regexp.MustCompile(`^clickedge\.yaml: .+ \(line \d+\)$`)},
		{"unknown alias", "node:\n  id: *nope\n", regexp.MustCompile(`^clickedge\.yaml: .*nope.*$`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadYAML(t, tt.src)
			if err == nil {
				t.Fatalf("LoadConfig(%q) = %+v, want an error", tt.src, c)
			}
			if !tt.want.MatchString(err.Error()) {
				t.Errorf("LoadConfig(%q) error %q, want match for %s", tt.src, err, tt.want)
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "nope.yaml"), nil)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("LoadConfig(missing) error = %v, want ErrNotExist naming the file", err)
	}
}

// Every validation rule, on its own: the key named and the reason.
func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		key    string // "" = valid
		msg    string
	}{
		{"defaults", func(*Config) {}, "", ""},

		{"node.id empty", func(c *Config) { c.Node.ID = "" }, "node.id", `must match [A-Za-z0-9._-]{1,64}, got ""`},
		{"node.id space", func(c *Config) { c.Node.ID = "eu 1" }, "node.id", `must match [A-Za-z0-9._-]{1,64}, got "eu 1"`},
		{"node.id host name", func(c *Config) { c.Node.ID = "Edge-7.fra.example.net" }, "", ""},
		{"node.id 65", func(c *Config) { c.Node.ID = strings.Repeat("a", 65) }, "node.id", `must match [A-Za-z0-9._-]{1,64}, got "` + strings.Repeat("a", 65) + `"`},
		{"node.region upper", func(c *Config) { c.Node.Region = "EU" }, "node.region", `must match [a-z0-9-]{1,32}, got "EU"`},
		{"node.region dot", func(c *Config) { c.Node.Region = "eu.central" }, "node.region", `must match [a-z0-9-]{1,32}, got "eu.central"`},
		{"node.region empty", func(c *Config) { c.Node.Region = "" }, "node.region", `must match [a-z0-9-]{1,32}, got ""`},
		{"node.region 33", func(c *Config) { c.Node.Region = strings.Repeat("a", 33) }, "node.region", `must match [a-z0-9-]{1,32}, got "` + strings.Repeat("a", 33) + `"`},
		{"node.region ok", func(c *Config) { c.Node.Region = "eu-central-1" }, "", ""},

		{"http.listen no port", func(c *Config) { c.HTTP.Listen = "8080" }, "http.listen", `must be host:port (e.g. ":8080" or "127.0.0.1:9090"), got "8080"`},
		{"http.listen named port", func(c *Config) { c.HTTP.Listen = ":http" }, "http.listen", `port must be a number from 0 to 65535, got "http"`},
		{"http.listen big port", func(c *Config) { c.HTTP.Listen = ":70000" }, "http.listen", `port must be a number from 0 to 65535, got "70000"`},
		{"http.listen bad host", func(c *Config) { c.HTTP.Listen = "a_b:80" }, "http.listen", `invalid host "a_b"`},
		{"http.listen ipv6", func(c *Config) { c.HTTP.Listen = "[::1]:8080" }, "", ""},
		{"http.listen host name", func(c *Config) { c.HTTP.Listen = "localhost:8080" }, "", ""},
		{"http.listen port 0", func(c *Config) { c.HTTP.Listen = "127.0.0.1:0"; c.Admin.Listen = "127.0.0.1:0" }, "", ""},
		{"http.trusted_proxies bad", func(c *Config) { c.HTTP.TrustedProxies = []string{"10.0.0.0/8", "10.0.0/8"} }, "http.trusted_proxies[1]", `invalid CIDR "10.0.0/8"`},
		{"http.trusted_proxies bits", func(c *Config) { c.HTTP.TrustedProxies = []string{"10.0.0.0/33"} }, "http.trusted_proxies[0]", `invalid CIDR "10.0.0.0/33"`},
		{"http.trusted_proxies ok", func(c *Config) {
			c.HTTP.TrustedProxies = []string{"10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::1", "10.1.2.3/8"}
		}, "", ""},
		{"http.read_header_timeout 0", func(c *Config) { c.HTTP.ReadHeaderTimeout = 0 }, "http.read_header_timeout", "must be > 0, got 0s"},
		{"http.idle_timeout negative", func(c *Config) { c.HTTP.IdleTimeout = d("-1s") }, "http.idle_timeout", "must be > 0, got -1s"},
		{"http.max_header_bytes small", func(c *Config) { c.HTTP.MaxHeaderBytes = 512 }, "http.max_header_bytes", "must be between 1KiB and 1MiB, got 512B"},
		{"http.max_header_bytes big", func(c *Config) { c.HTTP.MaxHeaderBytes = 2 << 20 }, "http.max_header_bytes", "must be between 1KiB and 1MiB, got 2MiB"},
		{"http.max_header_bytes edges", func(c *Config) { c.HTTP.MaxHeaderBytes = 1 << 20 }, "", ""},
		// harden #7, #8: the limits' keys.
		{"http.max_header_count small", func(c *Config) { c.HTTP.MaxHeaderCount = 9 }, "http.max_header_count", "must be between 10 and 10000, got 9"},
		{"http.max_header_count big", func(c *Config) { c.HTTP.MaxHeaderCount = 10001 }, "http.max_header_count", "must be between 10 and 10000, got 10001"},
		{"http.max_connections small", func(c *Config) { c.HTTP.MaxConnections = 15 }, "http.max_connections", "must be between 16 and 1048576, got 15"},
		{"http.max_connections big", func(c *Config) { c.HTTP.MaxConnections = 1<<20 + 1 }, "http.max_connections", "must be between 16 and 1048576, got 1048577"},
		{"http.max_connections edges", func(c *Config) { c.HTTP.MaxConnections = 16; c.HTTP.MaxHeaderCount = 10 }, "", ""},
		{"http.bot_clicks", func(c *Config) { c.HTTP.BotClicks = "drop" }, "http.bot_clicks", `must be record or skip, got "drop"`},
		{"http.bot_clicks skip", func(c *Config) { c.HTTP.BotClicks = "skip" }, "", ""},
		{"http.server", func(c *Config) { c.HTTP.Server = "nginx" }, "http.server", `must be fasthttp or net, got "nginx"`},
		{"http.server net", func(c *Config) { c.HTTP.Server = "net" }, "", ""},

		{"admin.listen empty", func(c *Config) { c.Admin.Listen = "" }, "admin.listen", `must be host:port (e.g. ":8080" or "127.0.0.1:9090"), got ""`},
		{"admin.listen same", func(c *Config) { c.Admin.Listen = ":8080"; c.Admin.Token = "t0k" }, "admin.listen", `must differ from http.listen (":8080")`},
		{"admin.listen overlaps", func(c *Config) { c.Admin.Listen = "127.0.0.1:8080" }, "admin.listen", `must differ from http.listen (":8080")`},
		{"admin.listen other host", func(c *Config) { c.HTTP.Listen = "10.0.0.1:80"; c.Admin.Listen = "127.0.0.1:80" }, "", ""},
		// harden #7: a non-loopback admin listener needs a token.
		{"admin.listen all interfaces, no token", func(c *Config) { c.Admin.Listen = "0.0.0.0:9090" }, "admin.token", adminExposed("0.0.0.0:9090")},
		{"admin.listen no host, no token", func(c *Config) { c.Admin.Listen = ":9090" }, "admin.token", adminExposed(":9090")},
		{"admin.listen ipv6 any, no token", func(c *Config) { c.Admin.Listen = "[::]:9090" }, "admin.token", adminExposed("[::]:9090")},
		{"admin.listen private address, no token", func(c *Config) { c.Admin.Listen = "10.0.0.5:9090" }, "admin.token", adminExposed("10.0.0.5:9090")},
		{"admin.listen host name, no token", func(c *Config) { c.Admin.Listen = "admin.example:9090" }, "admin.token", adminExposed("admin.example:9090")},
		{"admin.listen mapped loopback", func(c *Config) { c.Admin.Listen = "[::ffff:127.0.0.1]:9090" }, "", ""},
		{"admin.listen ::1", func(c *Config) { c.Admin.Listen = "[::1]:9090" }, "", ""},
		{"admin.listen 127.0.0.2", func(c *Config) { c.Admin.Listen = "127.0.0.2:9090" }, "", ""},
		{"admin.listen localhost", func(c *Config) { c.Admin.Listen = "localhost:9090" }, "", ""},
		{"admin.listen all interfaces, token", func(c *Config) { c.Admin.Listen = "0.0.0.0:9090"; c.Admin.Token = "t0k" }, "", ""},
		{"admin.listen all interfaces, token file", func(c *Config) { c.Admin.Listen = ":9090"; c.Admin.TokenFile = "tok" }, "", ""},
		{"admin.token space", func(c *Config) { c.Admin.Token = "s3cret token" }, "admin.token", "must not contain whitespace or control characters"},
		{"admin.token newline", func(c *Config) { c.Admin.Token = "s3cret\n" }, "admin.token", "must not contain whitespace or control characters"},

		{"data_dir empty", func(c *Config) { c.DataDir = "" }, "data_dir", "must not be empty"},

		{"outbox.durability", func(c *Config) { c.Outbox.Durability = "fsync" }, "outbox.durability", `must be sync or async, got "fsync"`},
		{"outbox.durability case", func(c *Config) { c.Outbox.Durability = "Sync" }, "outbox.durability", `must be sync or async, got "Sync"`},
		{"outbox.max_bytes small", func(c *Config) { c.Outbox.MaxBytes = 1000 }, "outbox.max_bytes", "must be 0 (no limit) or at least 1MiB, got 1KB"},
		{"outbox.max_bytes negative", func(c *Config) { c.Outbox.MaxBytes = -1 }, "outbox.max_bytes", "must be 0 (no limit) or at least 1MiB, got -1"},
		{"outbox.max_bytes 1MiB", func(c *Config) { c.Outbox.MaxBytes = 1 << 20 }, "", ""},
		{"outbox.retention negative", func(c *Config) { c.Outbox.Retention = d("-1h") }, "outbox.retention", "must be >= 0, got -1h"},
		{"outbox.retention 0", func(c *Config) { c.Outbox.Retention = 0 }, "", ""},
		{"outbox.flush_interval async 0", func(c *Config) { c.Outbox.Durability = "async"; c.Outbox.FlushInterval = 0 }, "outbox.flush_interval", "must be > 0, got 0s"},
		{"outbox.flush_interval sync 0", func(c *Config) { c.Outbox.FlushInterval = 0 }, "", ""},
		{"outbox.flush_interval sync negative", func(c *Config) { c.Outbox.FlushInterval = d("-1ms") }, "outbox.flush_interval", "must be >= 0, got -1ms"},
		{"outbox.on_error", func(c *Config) { c.Outbox.OnError = "drop" }, "outbox.on_error", `must be spill or reject, got "drop"`},
		{"outbox.spill_bytes 0 spill", func(c *Config) { c.Outbox.SpillBytes = 0 }, "outbox.spill_bytes", "must be > 0 when outbox.on_error is spill"},
		{"outbox.spill_bytes 0 reject", func(c *Config) { c.Outbox.SpillBytes = 0; c.Outbox.OnError = "reject" }, "", ""},
		{"outbox.spill_bytes huge", func(c *Config) { c.Outbox.SpillBytes = 4 << 30 }, "outbox.spill_bytes", "must be between 0 and 2GiB, got 4GiB"},

		{"forwarder.amqp_urls empty", func(c *Config) { c.Forwarder.AMQPURLs = nil }, "forwarder.amqp_urls", "must list at least one URL"},
		{"forwarder.amqp_urls scheme", func(c *Config) { c.Forwarder.AMQPURLs = []string{"http://h/"} }, "forwarder.amqp_urls[0]", `scheme must be amqp or amqps, got "http"`},
		{"forwarder.amqp_urls no scheme", func(c *Config) { c.Forwarder.AMQPURLs = []string{"amqp://a/", "127.0.0.1:5672"} }, "forwarder.amqp_urls[1]", `invalid URL: first path segment in URL cannot contain colon`},
		{"forwarder.amqp_urls no host", func(c *Config) { c.Forwarder.AMQPURLs = []string{"amqp:///vhost"} }, "forwarder.amqp_urls[0]", "missing host"},
		{"forwarder.amqp_urls bad port", func(c *Config) { c.Forwarder.AMQPURLs = []string{"amqp://u:secretpw@h:port/"} }, "forwarder.amqp_urls[0]", `invalid URL: invalid port ":port" after host`},
		{"forwarder.amqp_urls ok", func(c *Config) {
			c.Forwarder.AMQPURLs = []string{"amqps://u:p@rabbit.example:5671/clicks", "amqp://[::1]:5672/", "amqp://h"}
		}, "", ""},
		{"forwarder.exchange empty", func(c *Config) { c.Forwarder.Exchange = "" }, "forwarder.exchange", `must match [A-Za-z0-9_.:-]{1,255}, got ""`},
		{"forwarder.exchange space", func(c *Config) { c.Forwarder.Exchange = "my clicks" }, "forwarder.exchange", `must match [A-Za-z0-9_.:-]{1,255}, got "my clicks"`},
		{"forwarder.exchange reserved", func(c *Config) { c.Forwarder.Exchange = "amq.topic" }, "forwarder.exchange", `must not start with "amq." (reserved by the broker), got "amq.topic"`},
		{"forwarder.window 0", func(c *Config) { c.Forwarder.Window = 0 }, "forwarder.window", "must be between 1 and 65535, got 0"},
		{"forwarder.window big", func(c *Config) { c.Forwarder.Window = 65536 }, "forwarder.window", "must be between 1 and 65535, got 65536"},
		{"forwarder.window edges", func(c *Config) { c.Forwarder.Window = 65535 }, "", ""},
		{"forwarder.window 1", func(c *Config) { c.Forwarder.Window = 1 }, "", ""},
		{"forwarder.heartbeat small", func(c *Config) { c.Forwarder.Heartbeat = d("500ms") }, "forwarder.heartbeat", "must be between 1s and 10s, got 500ms"},
		{"forwarder.heartbeat big", func(c *Config) { c.Forwarder.Heartbeat = d("11s") }, "forwarder.heartbeat", "must be between 1s and 10s, got 11s"},
		{"forwarder.heartbeat 0", func(c *Config) { c.Forwarder.Heartbeat = 0 }, "forwarder.heartbeat", "must be between 1s and 10s, got 0s"},
		{"forwarder.retry_max small", func(c *Config) { c.Forwarder.RetryMax = d("100ms") }, "forwarder.retry_max", "must be between 1s and 5m, got 100ms"},
		{"forwarder.retry_max big", func(c *Config) { c.Forwarder.RetryMax = d("1h") }, "forwarder.retry_max", "must be between 1s and 5m, got 1h"},
		{"forwarder.heartbeat 1s", func(c *Config) { c.Forwarder.Heartbeat = d("1s") }, "", ""},
		{"forwarder.heartbeat 10s", func(c *Config) { c.Forwarder.Heartbeat = d("10s") }, "", ""},
		{"forwarder.dial_timeout", func(c *Config) { c.Forwarder.DialTimeout = 0 }, "forwarder.dial_timeout", "must be > 0, got 0s"},
		{"forwarder.confirm_timeout", func(c *Config) { c.Forwarder.ConfirmTimeout = d("-1s") }, "forwarder.confirm_timeout", "must be > 0, got -1s"},
		{"forwarder.reconnect_min", func(c *Config) { c.Forwarder.ReconnectMin = 0 }, "forwarder.reconnect_min", "must be > 0, got 0s"},
		{"forwarder.reconnect_max", func(c *Config) { c.Forwarder.ReconnectMin = d("1s"); c.Forwarder.ReconnectMax = d("500ms") }, "forwarder.reconnect_max", "must be >= forwarder.reconnect_min (1s), got 500ms"},
		{"forwarder.reconnect equal", func(c *Config) { c.Forwarder.ReconnectMin = d("1s"); c.Forwarder.ReconnectMax = d("1s") }, "", ""},
		{"forwarder.declare_queue", func(c *Config) { c.Forwarder.DeclareQueue = "q x" }, "forwarder.declare_queue", `must match [A-Za-z0-9_.:-]{1,255}, got "q x"`},
		{"forwarder.declare_queue reserved", func(c *Config) { c.Forwarder.DeclareQueue = "amq.q" }, "forwarder.declare_queue", `must not start with "amq." (reserved by the broker), got "amq.q"`},
		{"forwarder.declare_queue ok", func(c *Config) { c.Forwarder.DeclareQueue = "clicks.all" }, "", ""},
		{"forwarder.queue_type", func(c *Config) { c.Forwarder.QueueType = "stream" }, "forwarder.queue_type", `must be quorum or classic, got "stream"`},
		{"forwarder.shutdown_timeout", func(c *Config) { c.Forwarder.ShutdownTimeout = 0 }, "forwarder.shutdown_timeout", "must be > 0, got 0s"},

		{"geoip.poll_interval", func(c *Config) { c.GeoIP.PollInterval = d("-1s") }, "geoip.poll_interval", "must be >= 0, got -1s"},
		{"geoip.poll_interval 0", func(c *Config) { c.GeoIP.PollInterval = 0 }, "", ""},

		{"log.level", func(c *Config) { c.Log.Level = "verbose" }, "log.level", `must be debug, info, warn or error, got "verbose"`},
		{"log.access_sample big", func(c *Config) { c.Log.AccessSample = 1.5 }, "log.access_sample", "must be between 0 and 1, got 1.5"},
		{"log.access_sample negative", func(c *Config) { c.Log.AccessSample = -0.1 }, "log.access_sample", "must be between 0 and 1, got -0.1"},
		{"log.access_sample NaN", func(c *Config) { c.Log.AccessSample = math.NaN() }, "log.access_sample", "must be between 0 and 1, got NaN"},
		{"log.access_sample 1", func(c *Config) { c.Log.AccessSample = 1 }, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := wantDefaults()
			tt.change(&c)
			err := c.Validate()
			if tt.key == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			want := tt.key + ": " + tt.msg
			if err == nil || err.Error() != want {
				t.Fatalf("Validate() = %v, want %q", err, want)
			}
			if strings.Contains(err.Error(), "secretpw") {
				t.Errorf("Validate() = %q: leaks a password", err)
			}
		})
	}
}

// Validation errors say where the bad value was set: file and line,
// variable, or the defaults.
func TestLoadConfigValidationErrors(t *testing.T) {
	tests := []struct {
		name     string
		src      string // "" = no file
		env      []string
		hostname func() (string, error)
		want     []string
	}{
		{
			name: "file",
			src:  "outbox:\n  durability: fsync\n",
			want: []string{`clickedge.yaml: outbox.durability: must be sync or async, got "fsync" (line 2)`},
		},
		{
			name: "flow list element",
			src:  "http:\n  trusted_proxies: [\"10.0.0.0/8\", \"10.0.0/8\"]\n",
			want: []string{`clickedge.yaml: http.trusted_proxies[1]: invalid CIDR "10.0.0/8" (line 2)`},
		},
		{
			name: "block list element",
			src:  "http:\n  trusted_proxies:\n    - 10.0.0.0/8\n    - 10.0.0/8\n",
			want: []string{`clickedge.yaml: http.trusted_proxies[1]: invalid CIDR "10.0.0/8" (line 4)`},
		},
		{
			name: "several",
			src:  "node:\n  region: EU\nforwarder:\n  heartbeat: 30s\n  amqp_urls: [\"http://u:secretpw@h/\"]\n",
			want: []string{
				`clickedge.yaml: node.region: must match [a-z0-9-]{1,32}, got "EU" (line 2)`,
				`clickedge.yaml: forwarder.amqp_urls[0]: scheme must be amqp or amqps, got "http" (line 5)`,
				`clickedge.yaml: forwarder.heartbeat: must be between 1s and 10s, got 30s (line 4)`,
			},
		},
		{
			name: "key not in the file",
			src:  "forwarder:\n  reconnect_min: 1m\n",
			want: []string{`clickedge.yaml: forwarder.reconnect_max: must be >= forwarder.reconnect_min (1m), got 30s`},
		},
		{
			name: "env over file",
			src:  "node:\n  region: eu\n",
			env:  []string{"CLICKEDGE_NODE_REGION=EU"},
			want: []string{`env CLICKEDGE_NODE_REGION: node.region: must match [a-z0-9-]{1,32}, got "EU"`},
		},
		{
			name: "env without file",
			env:  []string{"CLICKEDGE_OUTBOX_DURABILITY=fsync"},
			want: []string{`env CLICKEDGE_OUTBOX_DURABILITY: outbox.durability: must be sync or async, got "fsync"`},
		},
		{
			name: "env list element",
			env:  []string{"CLICKEDGE_HTTP_TRUSTED_PROXIES=10.0.0.0/8,10.0.0/8"},
			want: []string{`env CLICKEDGE_HTTP_TRUSTED_PROXIES: http.trusted_proxies[1]: invalid CIDR "10.0.0/8"`},
		},
		{
			name:     "default from the host name",
			hostname: func() (string, error) { return "bad host", nil },
			want:     []string{`default configuration: node.id: must match [A-Za-z0-9._-]{1,64}, got "bad host"`},
		},
		{
			name:     "no host name",
			hostname: func() (string, error) { return "", errors.New("boom") },
			want:     []string{`default configuration: node.id: empty and the host name is unknown: boom`},
		},
		{
			name:     "no host name but node.id set",
			src:      "node:\n  id: n1\n",
			hostname: func() (string, error) { return "", errors.New("boom") },
			env:      []string{"CLICKEDGE_NODE_REGION=UPPER"},
			want:     []string{`env CLICKEDGE_NODE_REGION: node.region: must match [a-z0-9-]{1,32}, got "UPPER"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.hostname != nil {
				defer func(h func() (string, error)) { hostname = h }(hostname)
				hostname = tt.hostname
			}
			var err error
			if tt.src == "" {
				_, err = LoadConfig("", tt.env)
			} else {
				_, err = loadYAML(t, tt.src, tt.env...)
			}
			if err == nil {
				t.Fatalf("LoadConfig: nil error, want %q", tt.want)
			}
			if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, tt.want) {
				t.Errorf("LoadConfig error:\n%s\nwant:\n%s", err, strings.Join(tt.want, "\n"))
			}
			if strings.Contains(err.Error(), "secretpw") {
				t.Errorf("LoadConfig error leaks a password: %s", err)
			}
		})
	}
}

func TestEnvOverrides(t *testing.T) {
	tests := []struct {
		name string
		src  string
		env  []string
		want func(*Config)
	}{
		{name: "none", want: func(*Config) {}},
		{name: "http.listen", env: []string{"CLICKEDGE_HTTP_LISTEN=:9000"}, want: func(c *Config) { c.HTTP.Listen = ":9000" }},
		{name: "data_dir", env: []string{"CLICKEDGE_DATA_DIR=/var/lib/clickedge"}, want: func(c *Config) { c.DataDir = "/var/lib/clickedge" }},
		{
			name: "amqp_urls comma-separated",
			env:  []string{"CLICKEDGE_FORWARDER_AMQP_URLS=amqp://a/, amqps://b:5671/"},
			want: func(c *Config) { c.Forwarder.AMQPURLs = []string{"amqp://a/", "amqps://b:5671/"} },
		},
		{name: "node.region", env: []string{"CLICKEDGE_NODE_REGION=eu-central"}, want: func(c *Config) { c.Node.Region = "eu-central" }},
		{name: "node.id", env: []string{"CLICKEDGE_NODE_ID=eu-1"}, want: func(c *Config) { c.Node.ID = "eu-1" }},
		{name: "admin.token", env: []string{"CLICKEDGE_ADMIN_TOKEN=s3cret"}, want: func(c *Config) { c.Admin.Token = "s3cret" }},
		{name: "value with =", env: []string{"CLICKEDGE_ADMIN_TOKEN=a=b=="}, want: func(c *Config) { c.Admin.Token = "a=b==" }},
		{
			name: "trusted_proxies",
			env:  []string{"CLICKEDGE_HTTP_TRUSTED_PROXIES=10.0.0.0/8,192.168.0.0/16"},
			want: func(c *Config) { c.HTTP.TrustedProxies = []string{"10.0.0.0/8", "192.168.0.0/16"} },
		},
		{
			name: "empty list clears the file's",
			src:  "http:\n  trusted_proxies: [10.0.0.0/8]\n",
			env:  []string{"CLICKEDGE_HTTP_TRUSTED_PROXIES="},
			want: func(c *Config) { c.HTTP.TrustedProxies = []string{} },
		},
		{name: "size", env: []string{"CLICKEDGE_OUTBOX_MAX_BYTES=8GiB"}, want: func(c *Config) { c.Outbox.MaxBytes = 8 << 30 }},
		{name: "size in bytes", env: []string{"CLICKEDGE_OUTBOX_SPILL_BYTES=1048576"}, want: func(c *Config) { c.Outbox.SpillBytes = 1 << 20 }},
		{name: "duration", env: []string{"CLICKEDGE_FORWARDER_HEARTBEAT=2s"}, want: func(c *Config) { c.Forwarder.Heartbeat = d("2s") }},
		{name: "int", env: []string{"CLICKEDGE_FORWARDER_WINDOW= 10 "}, want: func(c *Config) { c.Forwarder.Window = 10 }},
		{name: "float", env: []string{"CLICKEDGE_LOG_ACCESS_SAMPLE=0.5"}, want: func(c *Config) { c.Log.AccessSample = 0.5 }},
		{
			name: "env beats file",
			src:  "http:\n  listen: \":1\"\n  bot_clicks: skip\n",
			env:  []string{"CLICKEDGE_HTTP_LISTEN=:2"},
			want: func(c *Config) { c.HTTP.Listen = ":2"; c.HTTP.BotClicks = "skip" },
		},
		{
			name: "the last one wins",
			env:  []string{"CLICKEDGE_NODE_REGION=a", "CLICKEDGE_NODE_REGION=b"},
			want: func(c *Config) { c.Node.Region = "b" },
		},
		{
			name: "not keys",
			env: []string{
				"CLICKEDGE_CONFIG=/nonexistent.yaml", "CLICKEDGE_TEST_BROKER=amqp://x/",
				"PATH=/bin", "clickedge_http_listen=x", "CLICKEDGE_NO_EQUALS", "CLICKEDGEHTTP_LISTEN=x",
			},
			want: func(*Config) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustLoad(t, tt.src, tt.env...)
			want := wantDefaults()
			want.path = "clickedge.yaml"
			tt.want(&want)
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("LoadConfig(%q, %q) =\n%+v\nwant\n%+v", tt.src, tt.env, *got, want)
			}
		})
	}
}

func TestEnvErrors(t *testing.T) {
	tests := []struct {
		env  []string
		want []string
	}{
		{
			env:  []string{"CLICKEDGE_HTTP_LISTN=:1"},
			want: []string{"env CLICKEDGE_HTTP_LISTN: unknown variable; did you mean CLICKEDGE_HTTP_LISTEN?"},
		},
		{
			env:  []string{"CLICKEDGE_AMQP_URL=amqp://x/"},
			want: []string{"env CLICKEDGE_AMQP_URL: unknown variable"},
		},
		{
			env:  []string{"CLICKEDGE_HTTP="},
			want: []string{"env CLICKEDGE_HTTP: unknown variable"},
		},
		{
			env:  []string{"CLICKEDGE_FORWARDER_WINDOW=lots"},
			want: []string{`env CLICKEDGE_FORWARDER_WINDOW: forwarder.window: expected an integer, got "lots"`},
		},
		{
			env:  []string{"CLICKEDGE_FORWARDER_WINDOW=1.5"},
			want: []string{`env CLICKEDGE_FORWARDER_WINDOW: forwarder.window: expected an integer, got "1.5"`},
		},
		{
			env:  []string{"CLICKEDGE_FORWARDER_HEARTBEAT=5"},
			want: []string{`env CLICKEDGE_FORWARDER_HEARTBEAT: forwarder.heartbeat: invalid duration "5" (want a number with a unit, e.g. 5s, 100ms, 1h30m)`},
		},
		{
			env:  []string{"CLICKEDGE_OUTBOX_MAX_BYTES=8G"},
			want: []string{`env CLICKEDGE_OUTBOX_MAX_BYTES: outbox.max_bytes: invalid size "8G": unknown unit "G" (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)`},
		},
		{
			env:  []string{"CLICKEDGE_LOG_ACCESS_SAMPLE=half"},
			want: []string{`env CLICKEDGE_LOG_ACCESS_SAMPLE: log.access_sample: expected a number, got "half"`},
		},
		{
			env:  []string{"CLICKEDGE_FORWARDER_AMQP_URLS=amqp://u:secretpw@a/,,amqp://b/"},
			want: []string{`env CLICKEDGE_FORWARDER_AMQP_URLS: forwarder.amqp_urls: empty element in the comma-separated list`},
		},
		{
			env: []string{"CLICKEDGE_ZZZ=1", "CLICKEDGE_FORWARDER_WINDOW=x", "CLICKEDGE_HTTP_LISTEN=:1"},
			want: []string{
				`env CLICKEDGE_FORWARDER_WINDOW: forwarder.window: expected an integer, got "x"`,
				`env CLICKEDGE_ZZZ: unknown variable`,
			},
		},
	}
	for _, tt := range tests {
		c, err := LoadConfig("", tt.env)
		if err == nil {
			t.Errorf("LoadConfig(\"\", %q) = %+v, want an error", tt.env, c)
			continue
		}
		if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, tt.want) {
			t.Errorf("LoadConfig(\"\", %q) error:\n%s\nwant:\n%s", tt.env, err, strings.Join(tt.want, "\n"))
		}
		if strings.Contains(err.Error(), "secretpw") {
			t.Errorf("LoadConfig(\"\", %q) error leaks a password: %s", tt.env, err)
		}
	}
}

// leaf is a leaf field of Config found by walking the struct itself, not
// through configKeys, so that the tests below check configKeys too.
type leaf struct {
	path  string
	index []int
	typ   reflect.Type
}

func leaves(t reflect.Type, prefix string, index []int) []leaf {
	var out []leaf
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := strings.Split(f.Tag.Get("yaml"), ",")[0]
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		idx := append(slices.Clone(index), i)
		if f.Type.Kind() == reflect.Struct {
			out = append(out, leaves(f.Type, path, idx)...)
			continue
		}
		out = append(out, leaf{path, idx, f.Type})
	}
	return out
}

func TestEveryKeyHasEnvOverride(t *testing.T) {
	all := leaves(reflect.TypeFor[Config](), "", nil)
	if len(all) != len(configKeys) {
		t.Errorf("Config has %d leaf keys, configKeys %d", len(all), len(configKeys))
	}
	for _, lf := range all {
		env := "CLICKEDGE_" + strings.ToUpper(strings.ReplaceAll(lf.path, ".", "_"))
		var val string
		var want any
		switch lf.typ {
		case reflect.TypeFor[string]():
			val, want = "zz-"+lf.path, "zz-"+lf.path
		case reflect.TypeFor[[]string]():
			val, want = "a, b", []string{"a", "b"}
		case reflect.TypeFor[int]():
			val, want = "4242", 4242
		case reflect.TypeFor[float64]():
			val, want = "0.125", 0.125
		case reflect.TypeFor[Duration]():
			val, want = "17s", d("17s")
		case reflect.TypeFor[ByteSize]():
			val, want = "3MiB", ByteSize(3<<20)
		default:
			t.Errorf("%s: no test value for type %s", lf.path, lf.typ)
			continue
		}
		c := wantDefaults()
		l := &loader{cfg: &c, origin: map[string]string{}}
		if err := l.applyEnv([]string{env + "=" + val}); err != nil {
			t.Errorf("%s: applyEnv(%s=%s): %v", lf.path, env, val, err)
			continue
		}
		if got := reflect.ValueOf(c).FieldByIndex(lf.index).Interface(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s=%s: %s = %#v, want %#v", env, val, lf.path, got, want)
		}
		if got := l.origin[lf.path]; got != "env "+env {
			t.Errorf("%s=%s: origin of %s = %q, want %q", env, val, lf.path, got, "env "+env)
		}
	}
}

// yamlLeaves returns the key paths of the scalars and lists in a YAML
// mapping, with the line of each.
func yamlLeaves(t *testing.T, src []byte) map[string]int {
	t.Helper()
	f, err := parser.ParseBytes(src, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	var walk func(n ast.Node, prefix string)
	walk = func(n ast.Node, prefix string) {
		m, ok := n.(*ast.MappingNode)
		if !ok {
			out[prefix] = n.GetToken().Position.Line
			return
		}
		for _, mv := range m.Values {
			k := mv.Key.GetToken().Value
			if prefix != "" {
				k = prefix + "." + k
			}
			walk(mv.Value, k)
		}
	}
	walk(f.Docs[0].Body, "")
	return out
}

// default.yaml is the reference: it must hold every key, in Config's
// order, each with a comment saying what it means.
func TestDefaultYAMLIsComplete(t *testing.T) {
	inFile := yamlLeaves(t, defaultYAML)
	var structKeys []string
	for _, lf := range leaves(reflect.TypeFor[Config](), "", nil) {
		structKeys = append(structKeys, lf.path)
		if _, ok := inFile[lf.path]; !ok {
			t.Errorf("default.yaml lacks key %s", lf.path)
		}
	}
	for k := range inFile {
		if !slices.Contains(structKeys, k) {
			t.Errorf("default.yaml has key %s, which Config lacks", k)
		}
	}
	// In order, so that -print-config and the reference read alike.
	for i := 1; i < len(structKeys); i++ {
		if a, b := inFile[structKeys[i-1]], inFile[structKeys[i]]; a > b {
			t.Errorf("default.yaml: %s (line %d) comes after %s (line %d); keep Config's order", structKeys[i-1], a, structKeys[i], b)
		}
	}
	// Documented: a comment on the line above or at the end of the line.
	// reconnect_max shares reconnect_min's comment.
	lines := strings.Split(string(defaultYAML), "\n")
	for _, k := range structKeys {
		n := inFile[k]
		if n == 0 || k == "forwarder.reconnect_max" {
			continue
		}
		own, above := lines[n-1], strings.TrimSpace(lines[n-2])
		if !strings.Contains(own, " # ") && !strings.HasPrefix(above, "#") {
			t.Errorf("default.yaml:%d: key %s has no comment", n, k)
		}
	}
}

func TestRedacted(t *testing.T) {
	c := wantDefaults()
	c.Admin.Token = "tok-secret"
	c.Forwarder.AMQPURLs = []string{
		"amqp://user:pw-secret@h1:5672/vh",
		"amqps://h2/",
		"amqp://onlyuser@h3/",
		"amqp://u:pw-secret@h4:bad port/", // unparseable: hidden whole
	}
	r := c.Redacted()
	wantURLs := []string{"amqp://user:xxxxx@h1:5672/vh", "amqps://h2/", "amqp://onlyuser@h3/", "xxxxx"}
	if !slices.Equal(r.Forwarder.AMQPURLs, wantURLs) {
		t.Errorf("Redacted().Forwarder.AMQPURLs = %q, want %q", r.Forwarder.AMQPURLs, wantURLs)
	}
	if r.Admin.Token != "xxxxx" {
		t.Errorf("Redacted().Admin.Token = %q, want xxxxx", r.Admin.Token)
	}
	if c.Admin.Token != "tok-secret" || c.Forwarder.AMQPURLs[0] != "amqp://user:pw-secret@h1:5672/vh" {
		t.Errorf("Redacted changed the original: %+v", c)
	}
	if r := (&Config{}).Redacted(); r.Admin.Token != "" {
		t.Errorf("Redacted() of an empty token = %q, want \"\"", r.Admin.Token)
	}

	y, err := r.YAML()
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("cfg", "config", &c, "value", c)
	printed := fmt.Sprintf("%v %+v %s", &c, &c, &c)
	for name, out := range map[string]string{"YAML": string(y), "log": logged.String(), "fmt": printed} {
		if strings.Contains(out, "secret") {
			t.Errorf("%s output leaks a secret:\n%s", name, out)
		}
		for _, want := range []string{"amqp://user:xxxxx@h1:5672/vh", "read_header_timeout", "5s", "64KiB"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s output lacks %q:\n%s", name, want, out)
			}
		}
	}
}

func TestPaths(t *testing.T) {
	tests := []struct {
		cfgPath, file, want string
	}{
		{"", "", ""},
		{"", "links.yaml", "links.yaml"},
		{"/etc/clickedge/clickedge.yaml", "", ""},
		{"/etc/clickedge/clickedge.yaml", "links.yaml", "/etc/clickedge/links.yaml"},
		{"/etc/clickedge/clickedge.yaml", "../shared/links.yaml", "/etc/shared/links.yaml"},
		{"/etc/clickedge/clickedge.yaml", "/srv/links.yaml", "/srv/links.yaml"},
		{"conf/clickedge.yaml", "links.yaml", "conf/links.yaml"},
		{"clickedge.yaml", "links.yaml", "links.yaml"},
	}
	for _, tt := range tests {
		c := &Config{path: tt.cfgPath, Catalog: CatalogConfig{File: tt.file}, GeoIP: GeoIPConfig{Database: tt.file}}
		if got := c.CatalogPath(); got != tt.want {
			t.Errorf("config %q, catalog.file %q: CatalogPath() = %q, want %q", tt.cfgPath, tt.file, got, tt.want)
		}
		if got := c.GeoIPPath(); got != tt.want {
			t.Errorf("config %q, geoip.database %q: GeoIPPath() = %q, want %q", tt.cfgPath, tt.file, got, tt.want)
		}
	}

	// Through LoadConfig, from another working directory.
	dir := t.TempDir()
	path := filepath.Join(dir, "conf", "clickedge.yaml")
	os.MkdirAll(filepath.Dir(path), 0o755)
	os.WriteFile(path, []byte("catalog:\n  file: links.yaml\ngeoip:\n  database: geo/Country.mmdb\n"), 0o644)
	t.Chdir(t.TempDir())
	c, err := LoadConfig(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.CatalogPath(), filepath.Join(dir, "conf", "links.yaml"); got != want {
		t.Errorf("CatalogPath() = %q, want %q", got, want)
	}
	if got, want := c.GeoIPPath(), filepath.Join(dir, "conf", "geo", "Country.mmdb"); got != want {
		t.Errorf("GeoIPPath() = %q, want %q", got, want)
	}
	if c.Path() != path {
		t.Errorf("Path() = %q, want %q", c.Path(), path)
	}
}

func TestTokenFile(t *testing.T) {
	tests := []struct {
		name    string
		token   string // content of secrets/admin-token; "-" = no file
		src     string
		env     []string
		want    string
		wantErr string
	}{
		{name: "read and trimmed", token: "  t0ken-abc\n", src: "admin:\n  token_file: secrets/admin-token\n", want: "t0ken-abc"},
		{name: "from env", token: "t0ken", env: []string{"CLICKEDGE_ADMIN_TOKEN_FILE=secrets/admin-token"}, want: "t0ken"},
		{
			name: "missing", token: "-", src: "admin:\n  token_file: secrets/admin-token\n",
			wantErr: "clickedge.yaml: admin.token_file: open secrets/admin-token: no such file or directory (line 2)",
		},
		{
			name: "empty", token: "\n", src: "admin:\n  token_file: secrets/admin-token\n",
			wantErr: "clickedge.yaml: admin.token_file: the file is empty (line 2)",
		},
		{
			name: "inner space", token: "a b\n", src: "admin:\n  token_file: secrets/admin-token\n",
			wantErr: "clickedge.yaml: admin.token_file: the token must not contain whitespace or control characters (line 2)",
		},
		{
			name: "with a token", token: "t", src: "admin:\n  token_file: secrets/admin-token\n", env: []string{"CLICKEDGE_ADMIN_TOKEN=x"},
			wantErr: "clickedge.yaml: admin.token_file: cannot be combined with admin.token (set one of them) (line 2)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			if tt.token != "-" {
				os.Mkdir("secrets", 0o700)
				os.WriteFile("secrets/admin-token", []byte(tt.token), 0o600)
			}
			os.WriteFile("clickedge.yaml", []byte(tt.src), 0o644)
			c, err := LoadConfig("clickedge.yaml", tt.env)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("LoadConfig error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Admin.Token != tt.want {
				t.Errorf("Admin.Token = %q, want %q", c.Admin.Token, tt.want)
			}
			if err := c.Validate(); err != nil {
				t.Errorf("Validate() after loading a token file: %v", err)
			}
		})
	}
}

// -print-config output loads back into the same configuration.
func TestYAMLRoundTrip(t *testing.T) {
	srcs := []string{
		"",
		`node: {id: eu-1, region: eu-central}
http:
  listen: "[::1]:8080"
  trusted_proxies: [10.0.0.0/8, "::1"]
  max_header_bytes: 1536
admin: {listen: "127.0.0.1:0", token: "tok:en#1"}
data_dir: "/var/lib/clickedge data"
outbox: {durability: async, max_bytes: 500MB, retention: 90m, flush_interval: 1ms, on_error: reject, spill_bytes: 0}
forwarder:
  amqp_urls: ["amqps://u:p%40ss@h:5671/v", "amqp://h2"]
  declare_queue: "clicks:all"
  queue_type: classic
catalog: {file: "links #1.yaml"}
geoip: {database: "'quoted'.mmdb", poll_interval: 0}
log: {level: error, access_sample: 0.1}
`,
	}
	for _, src := range srcs {
		c := mustLoad(t, src)
		y, err := c.YAML()
		if err != nil {
			t.Fatalf("YAML(): %v", err)
		}
		back := mustLoad(t, string(y))
		if !reflect.DeepEqual(c, back) {
			t.Errorf("YAML round trip of %q:\n%s\ngives\n%+v\nwant\n%+v", src, y, *back, *c)
		}
	}
}

func TestSlogLevel(t *testing.T) {
	tests := map[string]slog.Level{
		"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn,
		"error": slog.LevelError, "bogus": slog.LevelInfo,
	}
	for in, want := range tests {
		if got := (LogConfig{Level: in}).SlogLevel(); got != want {
			t.Errorf("LogConfig{Level: %q}.SlogLevel() = %v, want %v", in, got, want)
		}
	}
}

func TestTrustedProxies(t *testing.T) {
	c := &Config{HTTP: HTTPConfig{TrustedProxies: []string{"10.1.2.3/8", "192.168.1.7", "::1", "bad"}}}
	var got []string
	for _, p := range c.TrustedProxies() {
		got = append(got, p.String())
	}
	want := []string{"10.0.0.0/8", "192.168.1.7/32", "::1/128"}
	if !slices.Equal(got, want) {
		t.Errorf("TrustedProxies() = %q, want %q", got, want)
	}
}

// FuzzLoadConfig: no input panics, and any accepted input gives a valid
// configuration that prints and loads back unchanged.
func FuzzLoadConfig(f *testing.F) {
	f.Add(string(defaultYAML))
	f.Add("")
	f.Add("node:\n  region: eu\nforwarder:\n  amqp_urls: [amqp://a/]\n  window: 5\n")
	f.Add("http:\n  trusted_proxies: [10.0.0.0/8]\noutbox:\n  max_bytes: 8GiB\n")
	f.Add("outbox: {durability: async, flush_interval: 1ms}\nlog: {access_sample: 0.5}\n")
	f.Add("a: &x 1\nb: *x\n")
	f.Add("- [a, {b: c}]\n")
	f.Add("http:\n  listen: !!str 80\n")
	f.Add("forwarder:\n  heartbeat: 5\n")
	dir := f.TempDir()
	path := filepath.Join(dir, "clickedge.yaml")
	f.Fuzz(func(t *testing.T, src string) {
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(path, nil)
		if err != nil {
			if !strings.Contains(err.Error(), "clickedge.yaml") {
				t.Fatalf("LoadConfig(%q) error %q does not name the file", src, err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("LoadConfig(%q) accepted an invalid config: %v", src, err)
		}
		if c.Admin.TokenFile != "" {
			return // the token is now set too; the printed config would conflict
		}
		y, err := c.YAML()
		if err != nil {
			t.Fatalf("YAML() of %q: %v", src, err)
		}
		if err := os.WriteFile(path, y, 0o644); err != nil {
			t.Fatal(err)
		}
		back, err := LoadConfig(path, nil)
		if err != nil {
			t.Fatalf("config from %q printed as\n%s\ndoes not load: %v", src, y, err)
		}
		if !reflect.DeepEqual(c, back) {
			t.Fatalf("config from %q printed as\n%s\nloads as %+v, want %+v", src, y, *back, *c)
		}
	})
}

// adminExposed is the refusal of a non-loopback admin.listen without a token.
func adminExposed(listen string) string {
	return fmt.Sprintf("must be set when admin.listen (%q) is not a loopback address: set admin.token, "+
		"CLICKEDGE_ADMIN_TOKEN or admin.token_file, or listen on 127.0.0.1", listen)
}
