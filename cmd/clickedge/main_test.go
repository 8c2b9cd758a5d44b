package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
)

// runCmd runs the program in-process.
func runCmd(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut, env)
	return code, out.String(), errOut.String()
}

func TestRunUsage(t *testing.T) {
	tests := []struct {
		args       []string
		code       int
		wantStdout string // substring; "" = must be empty
		wantStderr string // substring; "" = must be empty
	}{
		{args: nil, code: 2, wantStderr: "usage: clickedge <command> [flags]"},
		{args: []string{"bogus"}, code: 2, wantStderr: "clickedge: unknown command \"bogus\"\n\nusage: clickedge <command>"},
		{args: []string{"-config", "x"}, code: 2, wantStderr: "unknown command \"-config\""},
		{args: []string{"help"}, code: 0, wantStdout: "  serve     run an edge node\n"},
		{args: []string{"-h"}, code: 0, wantStdout: "usage: clickedge <command> [flags]"},
		{args: []string{"--help"}, code: 0, wantStdout: "usage: clickedge <command> [flags]"},
		{args: []string{"help", "serve"}, code: 0, wantStdout: "-print-config"},
		{args: []string{"help", "version"}, code: 0, wantStdout: "usage: clickedge version\n\nPrint the version"},
		{args: []string{"help", "bogus"}, code: 2, wantStderr: "clickedge help: unknown command \"bogus\""},
		{args: []string{"help", "serve", "x"}, code: 2, wantStderr: "usage: clickedge help [command]"},
		{args: []string{"version", "x"}, code: 2, wantStderr: "usage: clickedge version"},
		{args: []string{"serve", "-bogus"}, code: 2, wantStderr: "flag provided but not defined: -bogus"},
		{args: []string{"serve", "extra"}, code: 2, wantStderr: "clickedge serve: unexpected argument \"extra\""},
		{args: []string{"serve", "-h"}, code: 0, wantStderr: "usage: clickedge serve [-config FILE] [-print-config]"},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCmd(t, nil, tt.args...)
		if code != tt.code {
			t.Errorf("run(%q) = %d, want %d (stderr %q)", tt.args, code, tt.code, stderr)
		}
		check := func(name, got, want string) {
			if want == "" && got != "" || !strings.Contains(got, want) {
				t.Errorf("run(%q) %s = %q, want it to contain %q", tt.args, name, got, want)
			}
		}
		check("stdout", stdout, tt.wantStdout)
		check("stderr", stderr, tt.wantStderr)
	}
}

func TestVersionCommand(t *testing.T) {
	code, stdout, stderr := runCmd(t, nil, "version")
	if code != 0 || stderr != "" {
		t.Fatalf("run(version) = %d, stderr %q; want 0 and nothing", code, stderr)
	}
	re := regexp.MustCompile(`^clickedge \S+ \(([0-9a-f]{1,12}(-dirty)?, )?go1\.\d+\S*, [a-z0-9]+/[a-z0-9]+\)\n$`)
	if !re.MatchString(stdout) {
		t.Errorf("run(version) printed %q, want match for %s", stdout, re)
	}
}

func TestFormatVersion(t *testing.T) {
	const rev = "0123456789abcdef0123456789abcdef01234567"
	bi := func(main string, settings ...string) *debug.BuildInfo {
		b := &debug.BuildInfo{GoVersion: "go1.26.9", Main: debug.Module{Version: main}}
		for i := 0; i < len(settings); i += 2 {
			b.Settings = append(b.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return b
	}
	tests := []struct {
		name    string
		version string
		bi      *debug.BuildInfo
		want    string
	}{
		{"no build info", "dev", nil, "clickedge dev (go1.26.8, linux/amd64)"},
		{"devel", "dev", bi("(devel)"), "clickedge dev (go1.26.9, linux/amd64)"},
		{"revision", "dev", bi("", "vcs.revision", rev, "vcs.modified", "false"), "clickedge dev (0123456789ab, go1.26.9, linux/amd64)"},
		{"dirty", "dev", bi("", "vcs.revision", rev, "vcs.modified", "true"), "clickedge dev (0123456789ab-dirty, go1.26.9, linux/amd64)"},
		{"short revision", "dev", bi("", "vcs.revision", "abc"), "clickedge dev (abc, go1.26.9, linux/amd64)"},
		{"ldflags", "v1.2.0", bi("v0.9.0", "vcs.revision", rev), "clickedge v1.2.0 (0123456789ab, go1.26.9, linux/amd64)"},
		{"go install", "dev", bi("v1.3.0"), "clickedge v1.3.0 (go1.26.9, linux/amd64)"},
	}
	for _, tt := range tests {
		if got := formatVersion(tt.version, tt.bi, "go1.26.8", "linux/amd64"); got != tt.want {
			t.Errorf("%s: formatVersion = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// writeFile writes a file under dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestServePrintConfig(t *testing.T) {
	dir := t.TempDir()
	cfgA := writeFile(t, dir, "a.yaml", "node:\n  region: eu-a\nadmin:\n  token: hunter2\nforwarder:\n  amqp_urls: [\"amqp://u:pw-secret@h/\"]\n")
	cfgB := writeFile(t, dir, "b.yaml", "node:\n  region: eu-b\n")

	tests := []struct {
		name       string
		args       []string
		env        []string
		wantRegion string
	}{
		{"defaults", []string{"-print-config"}, nil, "local"},
		{"-config", []string{"-config", cfgA, "-print-config"}, nil, "eu-a"},
		{"--config=", []string{"--config=" + cfgA, "--print-config"}, nil, "eu-a"},
		{"CLICKEDGE_CONFIG", []string{"-print-config"}, []string{"CLICKEDGE_CONFIG=" + cfgB}, "eu-b"},
		{"flag beats CLICKEDGE_CONFIG", []string{"-config", cfgA, "-print-config"}, []string{"CLICKEDGE_CONFIG=" + cfgB}, "eu-a"},
		{"env override", []string{"-config", cfgA, "-print-config"}, []string{"CLICKEDGE_NODE_REGION=eu-env"}, "eu-env"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, tt.env, append([]string{"serve"}, tt.args...)...)
			if code != 0 || stderr != "" {
				t.Fatalf("serve %q = %d, stderr %q; want 0 and nothing", tt.args, code, stderr)
			}
			for _, secret := range []string{"hunter2", "pw-secret"} {
				if strings.Contains(stdout, secret) {
					t.Errorf("serve %q -print-config leaks %q:\n%s", tt.args, secret, stdout)
				}
			}
			// The output is a config file itself.
			printed, err := LoadConfig(writeFile(t, t.TempDir(), "printed.yaml", stdout), nil)
			if err != nil {
				t.Fatalf("printed config does not load: %v\n%s", err, stdout)
			}
			if printed.Node.Region != tt.wantRegion {
				t.Errorf("printed node.region = %q, want %q", printed.Node.Region, tt.wantRegion)
			}
			if printed.Node.ID != testHost {
				t.Errorf("printed node.id = %q, want %q", printed.Node.ID, testHost)
			}
		})
	}
}

func TestServeBadConfig(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "clickedge.yaml", "outbox:\n  durability: fsync\nforwarder:\n  window: 0\n")
	tests := []struct {
		name string
		args []string
		env  []string
		want []string // stderr lines
	}{
		{
			name: "invalid file",
			args: []string{"-config", bad},
			want: []string{
				"clickedge serve: " + bad + `: outbox.durability: must be sync or async, got "fsync" (line 2)`,
				"clickedge serve: " + bad + `: forwarder.window: must be between 1 and 65535, got 0 (line 4)`,
			},
		},
		{
			name: "invalid file with -print-config",
			args: []string{"-config", bad, "-print-config"},
			want: []string{
				"clickedge serve: " + bad + `: outbox.durability: must be sync or async, got "fsync" (line 2)`,
				"clickedge serve: " + bad + `: forwarder.window: must be between 1 and 65535, got 0 (line 4)`,
			},
		},
		{
			name: "missing file from CLICKEDGE_CONFIG",
			env:  []string{"CLICKEDGE_CONFIG=" + filepath.Join(dir, "nope.yaml")},
			want: []string{"clickedge serve: config: open " + filepath.Join(dir, "nope.yaml") + ": no such file or directory"},
		},
		{
			name: "unknown variable",
			env:  []string{"CLICKEDGE_HTTP_LISTN=:1"},
			want: []string{"clickedge serve: env CLICKEDGE_HTTP_LISTN: unknown variable; did you mean CLICKEDGE_HTTP_LISTEN?"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, tt.env, append([]string{"serve"}, tt.args...)...)
			if code != 1 {
				t.Errorf("serve %q = %d, want 1", tt.args, code)
			}
			if stdout != "" {
				t.Errorf("serve %q stdout = %q, want nothing", tt.args, stdout)
			}
			if want := strings.Join(tt.want, "\n") + "\n"; stderr != want {
				t.Errorf("serve %q stderr:\n%s\nwant:\n%s", tt.args, stderr, want)
			}
		})
	}
}

func TestLoadServeConfig(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "clickedge.yaml", "node:\n  region: eu-a\n")
	env := []string{"CLICKEDGE_FORWARDER_WINDOW=7"}

	for _, args := range [][]string{{"-config", path}, {"--config", path}, {"-config=" + path, "-print-config"}} {
		c, err := loadServeConfig(args, env)
		if err != nil {
			t.Fatalf("loadServeConfig(%q): %v", args, err)
		}
		if c.Path() != path || c.Node.Region != "eu-a" || c.Forwarder.Window != 7 {
			t.Errorf("loadServeConfig(%q) = path %q, region %q, window %d; want %q, eu-a, 7",
				args, c.Path(), c.Node.Region, c.Forwarder.Window, path)
		}
	}

	c, err := loadServeConfig(nil, []string{"CLICKEDGE_CONFIG=" + path})
	if err != nil || c.Path() != path {
		t.Errorf("loadServeConfig with CLICKEDGE_CONFIG = %v, %v; want the file loaded", c, err)
	}
	c, err = loadServeConfig(nil, nil)
	if err != nil || c.Path() != "" {
		t.Errorf("loadServeConfig() = %v, %v; want the embedded defaults", c, err)
	}
	if _, err := loadServeConfig([]string{"-nope"}, nil); err == nil || !strings.Contains(err.Error(), "-nope") {
		t.Errorf("loadServeConfig(-nope) error = %v, want one naming the flag", err)
	}
	if _, err := loadServeConfig([]string{"-h"}, nil); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("loadServeConfig(-h) error = %v, want flag.ErrHelp", err)
	}
}

func TestLogStartup(t *testing.T) {
	c, err := LoadConfig("", []string{
		"CLICKEDGE_ADMIN_TOKEN=hunter2",
		"CLICKEDGE_FORWARDER_AMQP_URLS=amqp://u:pw-secret@h/",
		"CLICKEDGE_NODE_REGION=eu-x",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		var buf bytes.Buffer
		logStartup(newLogger(&buf, level), c)
		if strings.Contains(buf.String(), "hunter2") || strings.Contains(buf.String(), "pw-secret") {
			t.Errorf("startup log at %v leaks a secret:\n%s", level, buf.String())
		}
		lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
		var recs []map[string]any
		for _, l := range lines {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("log line %q is not JSON: %v", l, err)
			}
			recs = append(recs, m)
		}
		wantLines := map[slog.Level]int{slog.LevelDebug: 2, slog.LevelInfo: 1}[level]
		if len(recs) != wantLines {
			t.Fatalf("startup log at %v has %d lines, want %d:\n%s", level, len(recs), wantLines, buf.String())
		}
		if recs[0]["msg"] != "clickedge starting" || recs[0]["region"] != "eu-x" || recs[0]["config"] != "(embedded defaults)" {
			t.Errorf("startup line = %v", recs[0])
		}
		if level != slog.LevelDebug {
			continue
		}
		cfg, _ := recs[1]["config"].(map[string]any)
		fwd, _ := cfg["forwarder"].(map[string]any)
		admin, _ := cfg["admin"].(map[string]any)
		if got := fwd["amqp_urls"]; !reflect.DeepEqual(got, []any{"amqp://u:xxxxx@h/"}) {
			t.Errorf("logged forwarder.amqp_urls = %v, want [amqp://u:xxxxx@h/]", got)
		}
		if got := admin["token"]; got != "xxxxx" {
			t.Errorf("logged admin.token = %v, want xxxxx", got)
		}
		if got := fwd["heartbeat"]; got != "5s" {
			t.Errorf("logged forwarder.heartbeat = %v, want 5s", got)
		}
	}
}

func TestPrintError(t *testing.T) {
	var buf bytes.Buffer
	printError(&buf, "p: ", errors.Join(errors.New("a"), errors.New("b")))
	if got, want := buf.String(), "p: a\np: b\n"; got != want {
		t.Errorf("printError = %q, want %q", got, want)
	}
}

func TestLookupEnv(t *testing.T) {
	env := []string{"A=1", "B", "A=2", "AB=3", "C="}
	for name, want := range map[string]string{"A": "2", "B": "", "AB": "3", "C": "", "D": ""} {
		if got := lookupEnv(env, name); got != want {
			t.Errorf("lookupEnv(%q) = %q, want %q", name, got, want)
		}
	}
}
