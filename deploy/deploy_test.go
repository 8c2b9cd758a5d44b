package deploy

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

// tool returns the path of a command the deploy tests need, failing (never
// skipping) when it is missing: `make test` installs them
// (scripts/ensure-tools.sh).
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if _, err := os.Stat("/usr/sbin/" + name); err == nil {
			return "/usr/sbin/" + name
		}
		t.Fatalf("%s is not installed: run scripts/ensure-tools.sh (make test does)", name)
	}
	return p
}

func runTool(t *testing.T, dir string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(tool(t, name), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type ruleTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name          string `yaml:"name"`
		AlertRuleTest []struct {
			EvalTime  string           `yaml:"eval_time"`
			Alertname string           `yaml:"alertname"`
			ExpAlerts []map[string]any `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestPromtool: the rules are valid and their unit tests pass.
func TestPromtool(t *testing.T) {
	if out, err := runTool(t, "prometheus", "promtool", "check", "rules", "rules.yml", "alerts.yml"); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	if out, err := runTool(t, "prometheus", "promtool", "test", "rules", "alerts_test.yml", "rules_test.yml"); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	out, err := runTool(t, "prometheus", "promtool", "check", "config", "prometheus.yml")
	if err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
}

// TestPromtoolCatchesBrokenRules shows the promtool tests can fail: a copy
// of the rules where an alert can no longer fire fails its unit test, and
// a copy with a broken expression fails the check.
func TestPromtoolCatchesBrokenRules(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"rules.yml", "alerts.yml", "alerts_test.yml"} {
		b, err := os.ReadFile(filepath.Join("prometheus", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	alerts, _ := os.ReadFile(filepath.Join(dir, "alerts.yml"))

	// A threshold no backlog reaches: the "fires" cases must fail.
	deaf := bytes.Replace(alerts, []byte("clickedge_outbox_oldest_pending_age_seconds{job=\"clickedge\"} > 120"),
		[]byte("clickedge_outbox_oldest_pending_age_seconds{job=\"clickedge\"} > 1e9"), 1)
	if bytes.Equal(deaf, alerts) {
		t.Fatal("ClickedgeOutboxLag's expression not found; update this test")
	}
	os.WriteFile(filepath.Join(dir, "alerts.yml"), deaf, 0o644)
	out, err := runTool(t, dir, "promtool", "test", "rules", "alerts_test.yml")
	if err == nil || !strings.Contains(out, "ClickedgeOutboxLag") {
		t.Errorf("promtool test rules passed with an alert that cannot fire (err %v):\n%s", err, out)
	}

	// An alert that fires always: the "stays quiet" cases must fail.
	noisy := bytes.Replace(alerts, []byte("expr: clickedge_forwarder_connected{job=\"clickedge\"} == 0"),
		[]byte("expr: clickedge_forwarder_connected{job=\"clickedge\"} >= 0"), 1)
	os.WriteFile(filepath.Join(dir, "alerts.yml"), noisy, 0o644)
	out, err = runTool(t, dir, "promtool", "test", "rules", "alerts_test.yml")
	if err == nil || !strings.Contains(out, "ClickedgeForwarderDown") {
		t.Errorf("promtool test rules passed with an alert that always fires (err %v):\n%s", err, out)
	}

	broken := bytes.Replace(alerts, []byte("expr: up{job=\"clickedge\"} == 0"), []byte("expr: up{job=\"clickedge\" == 0"), 1)
	os.WriteFile(filepath.Join(dir, "alerts.yml"), broken, 0o644)
	if out, err := runTool(t, dir, "promtool", "check", "rules", "alerts.yml"); err == nil {
		t.Errorf("promtool check rules accepted a broken expression:\n%s", out)
	}
}

// TestEveryAlertTestedAndDocumented: each alert has a severity, summary,
// description, a runbook_url whose anchor exists in docs/runbook.md, and
// promtool cases where it fires and where it stays quiet.
func TestEveryAlertTestedAndDocumented(t *testing.T) {
	var rf ruleFile
	readYAML(t, "prometheus/alerts.yml", &rf)
	var rt ruleTests
	readYAML(t, "prometheus/alerts_test.yml", &rt)
	anchors := runbookAnchors(t, "../docs/runbook.md")

	fires, quiet := map[string]int{}, map[string]int{}
	for _, tc := range rt.Tests {
		for _, c := range tc.AlertRuleTest {
			if len(c.ExpAlerts) > 0 {
				fires[c.Alertname]++
			} else {
				quiet[c.Alertname]++
			}
		}
	}
	n := 0
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: no %s annotation", r.Alert, a)
				}
			}
			u := r.Annotations["runbook_url"]
			base, frag, _ := strings.Cut(u, "#")
			if !strings.HasSuffix(base, "/docs/runbook.md") {
				t.Errorf("%s: runbook_url %q does not point into docs/runbook.md", r.Alert, u)
			}
			if !anchors[frag] {
				t.Errorf("%s: runbook_url anchor #%s is not a heading of docs/runbook.md", r.Alert, frag)
			}
			if fires[r.Alert] == 0 {
				t.Errorf("%s: no promtool case where it fires", r.Alert)
			}
			if quiet[r.Alert] == 0 {
				t.Errorf("%s: no promtool case where it stays quiet", r.Alert)
			}
		}
	}
	if n < 15 {
		t.Errorf("%d alerts, want the full set (>= 15)", n)
	}
}

// runbookAnchors returns the GitHub anchors of a Markdown file's headings.
func runbookAnchors(t *testing.T, path string) map[string]bool {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	inCode := false
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		anchors[githubAnchor(strings.TrimLeft(line, "# "))] = true
	}
	return anchors
}

var anchorDrop = regexp.MustCompile(`[^a-z0-9 _-]`)

// githubAnchor is the id GitHub gives a heading: lower case, punctuation
// dropped, spaces to hyphens.
func githubAnchor(h string) string {
	return strings.ReplaceAll(anchorDrop.ReplaceAllString(strings.ToLower(strings.TrimSpace(h)), ""), " ", "-")
}

func TestGithubAnchor(t *testing.T) {
	for in, want := range map[string]string{
		"ClickedgeOutboxLag": "clickedgeoutboxlag",
		"1. A region was cut off from the centre for 6 hours": "1-a-region-was-cut-off-from-the-centre-for-6-hours",
		"Reading /admin/outbox":                               "reading-adminoutbox",
	} {
		if got := githubAnchor(in); got != want {
			t.Errorf("githubAnchor(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestAlertmanager: amtool accepts the configuration, and alerts route to
// Slack grouped by alertname and region, critical ones to the on-call
// channel.
func TestAlertmanager(t *testing.T) {
	cfg := "alertmanager/alertmanager.yml"
	if out, err := runTool(t, ".", "amtool", "check-config", cfg); err != nil {
		t.Fatalf("amtool check-config: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		labels []string
		want   string
	}{
		{[]string{"job=clickedge", "alertname=ClickedgeRegionCutOff", "region=eu-central", "severity=critical"}, "slack-clickedge-critical"},
		{[]string{"job=clickedge", "alertname=ClickedgeOutboxLag", "region=us-east", "severity=warning"}, "slack-clickedge"},
	} {
		args := append([]string{"config", "routes", "test", "--config.file=" + cfg}, tc.labels...)
		out, err := runTool(t, ".", "amtool", args...)
		lines := strings.Split(strings.TrimSpace(out), "\n") // a warning may come first
		if got := lines[len(lines)-1]; err != nil || got != tc.want {
			t.Errorf("amtool routes test %v = %q (%v), want %q", tc.labels, got, err, tc.want)
		}
	}
	var am struct {
		Route struct {
			GroupBy []string `yaml:"group_by"`
			Routes  []struct {
				GroupBy []string `yaml:"group_by"`
			} `yaml:"routes"`
		} `yaml:"route"`
		Receivers []struct {
			Name         string           `yaml:"name"`
			SlackConfigs []map[string]any `yaml:"slack_configs"`
		} `yaml:"receivers"`
	}
	readYAML(t, cfg, &am)
	groupings := [][]string{am.Route.GroupBy}
	for _, r := range am.Route.Routes {
		groupings = append(groupings, r.GroupBy)
	}
	for _, g := range groupings {
		if !slices.Contains(g, "alertname") || !slices.Contains(g, "region") {
			t.Errorf("group_by %v, want alertname and region", g)
		}
	}
	for _, r := range am.Receivers {
		if len(r.SlackConfigs) == 0 {
			t.Errorf("receiver %s has no slack_configs", r.Name)
		}
	}
	if raw, _ := os.ReadFile(cfg); bytes.Contains(raw, []byte("hooks.slack.com")) {
		t.Errorf("%s holds a Slack webhook URL: it is a secret (slack_api_url_file)", cfg)
	}
}

// TestSystemdUnit: systemd-analyze verifies the unit, and its hardening
// and drain settings are there.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("systemd/clickedge.service")
	if err != nil {
		t.Fatal(err)
	}
	// verify checks that ExecStart's binary exists: point it at one.
	dir := t.TempDir()
	bin := filepath.Join(dir, "clickedge")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	copyPath := filepath.Join(dir, "clickedge.service")
	os.WriteFile(copyPath, bytes.ReplaceAll(unit, []byte("/usr/local/bin/clickedge"), []byte(bin)), 0o644)
	out, err := runTool(t, dir, "systemd-analyze", "verify", copyPath)
	if err != nil || strings.Contains(out, "clickedge.service") {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, want := range []string{
		"NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/clickedge",
		"Restart=on-failure", "KillSignal=SIGTERM", "TimeoutStopSec=", "CapabilityBoundingSet=\n",
		"ExecStartPre=/usr/local/bin/clickedge serve -check", "User=clickedge",
	} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("unit lacks %q", want)
		}
	}
	// The exposure score systemd computes from the sandboxing settings.
	out, err = runTool(t, dir, "systemd-analyze", "security", "--offline=yes", copyPath)
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for clickedge.service: ([0-9.]+)`).FindStringSubmatch(out)
	if m == nil || m[1] > "2.0" && len(m[1]) == 3 {
		t.Errorf("exposure level %v, want <= 2.0:\n%s", m, out)
	}
}

// TestKubernetes: the manifests parse, and the StatefulSets have a PVC
// per pod, probes on /healthz and /readyz, a preStop hook, a non-root
// security context; a PodDisruptionBudget and a Service per role exist.
func TestKubernetes(t *testing.T) {
	b, err := os.ReadFile("kubernetes/clickedge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]any
	for i, part := range strings.Split(string(b), "\n---\n") {
		var d map[string]any
		if err := yaml.Unmarshal([]byte(part), &d); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	get := func(v any, path ...any) any {
		for _, p := range path {
			switch k := p.(type) {
			case string:
				m, _ := v.(map[string]any)
				v = m[k]
			case int:
				s, _ := v.([]any)
				if k >= len(s) {
					return nil
				}
				v = s[k]
			}
		}
		return v
	}
	kinds := map[string]int{}
	roles := map[string]bool{}
	for _, d := range docs {
		kind, _ := d["kind"].(string)
		kinds[kind]++
		name, _ := get(d, "metadata", "name").(string)
		switch kind {
		case "Service":
			if r, ok := get(d, "spec", "selector", "clickedge/role").(string); ok {
				roles[r] = true
			}
		case "StatefulSet":
			if get(d, "spec", "volumeClaimTemplates", 0, "metadata", "name") != "data" {
				t.Errorf("%s: no volumeClaimTemplate data (a PVC per pod for the outbox)", name)
			}
			c := get(d, "spec", "template", "spec", "containers", 0)
			if get(c, "livenessProbe", "httpGet", "path") != "/healthz" {
				t.Errorf("%s: liveness probe not on /healthz", name)
			}
			if get(c, "readinessProbe", "httpGet", "path") != "/readyz" {
				t.Errorf("%s: readiness probe not on /readyz", name)
			}
			if get(c, "lifecycle", "preStop") == nil {
				t.Errorf("%s: no preStop hook", name)
			}
			if get(d, "spec", "template", "spec", "securityContext", "runAsNonRoot") != true {
				t.Errorf("%s: not runAsNonRoot", name)
			}
			mounted := false
			for i := 0; get(c, "volumeMounts", i) != nil; i++ {
				if get(c, "volumeMounts", i, "name") == "data" && get(c, "volumeMounts", i, "mountPath") == "/var/lib/clickedge" {
					mounted = true
				}
			}
			if !mounted {
				t.Errorf("%s: the data PVC is not mounted at data_dir", name)
			}
			grace, _ := get(d, "spec", "template", "spec", "terminationGracePeriodSeconds").(uint64)
			if grace < 60 {
				t.Errorf("%s: terminationGracePeriodSeconds %d, want >= 60 for the drain", name, grace)
			}
		}
	}
	if kinds["StatefulSet"] < 1 || kinds["PodDisruptionBudget"] < kinds["StatefulSet"] {
		t.Errorf("kinds %v: want StatefulSets, each with a PodDisruptionBudget", kinds)
	}
	if !roles["edge"] || !roles["postback"] {
		t.Errorf("Services by role %v, want edge and postback", roles)
	}
}

// TestDockerfile: multi-stage, static, non-root, a data volume and a
// health check (the image is not built here: no registry access in CI).
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if strings.Count(s, "\nFROM ") < 2 {
		t.Errorf("Dockerfile is not multi-stage")
	}
	for _, want := range []string{"CGO_ENABLED=0", "\nUSER 65532", "\nVOLUME [\"/var/lib/clickedge\"]", "\nHEALTHCHECK ", "healthcheck"} {
		if !strings.Contains(s, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}

	// The build stage's command gives a static binary (the runtime image
	// has no libc) that runs and reports the version it was given.
	bin := filepath.Join(t.TempDir(), "clickedge")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=v0.0.0-docker", "-o", bin, "../cmd/clickedge")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary is dynamically linked (%v): CGO_ENABLED=0 must make it static", p.Type)
		}
	}
	if out, err := exec.Command(bin, "version").Output(); err != nil || !strings.Contains(string(out), "v0.0.0-docker") {
		t.Errorf("clickedge version = %q, %v", out, err)
	}
}

// TestGrafanaDashboard: valid JSON with region and node variables, every
// panel on the datasource variable and filtered by both.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana/clickedge.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID        string `json:"uid"`
		Templating struct {
			List []struct{ Name string } `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
	}
	for _, want := range []string{"datasource", "region", "node"} {
		if !slices.Contains(vars, want) {
			t.Errorf("dashboard variables %v lack %s", vars, want)
		}
	}
	all := ""
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, `region=~"$region"`) || !strings.Contains(tg.Expr, `instance=~"$node"`) {
				t.Errorf("panel %q: %s is not filtered by $region and $node", p.Title, tg.Expr)
			}
			all += tg.Expr + "\n"
		}
	}
	for _, m := range []string{
		"clickedge_http_request_duration_seconds_count", "clickedge_http_request_duration_seconds_bucket",
		"clickedge_outbox_pending_records", "clickedge_outbox_oldest_pending_age_seconds",
		"clickedge_forwarder_connected", "clickedge_clicks_total", "clickedge_postbacks_total",
		"clickedge_catalog_version_timestamp_seconds", "clickedge_cluster_members",
	} {
		if !strings.Contains(all, m) {
			t.Errorf("no panel shows %s", m)
		}
	}
}
