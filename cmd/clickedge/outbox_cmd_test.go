package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clickedge/clickedge/edge"
	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/outboxtest"
)

var obT0 = time.Date(2025, 11, 27, 6, 0, 0, 0, time.UTC)

// obFixture is an outbox in a data directory: n records appended one
// second apart from obT0, links "tv-sale" and "summer" alternating, the
// first acked ones delivered at obT0+1h.
type obFixture struct {
	dir, path string
	recs      []*outbox.Record
}

func makeOutbox(t *testing.T, n, acked int, exchange string) *obFixture {
	t.Helper()
	dir := t.TempDir()
	fx := &obFixture{dir: dir, path: filepath.Join(dir, outboxFile)}
	o, err := outbox.Open(fx.path, &outbox.Options{Durability: outbox.Async, Now: func() time.Time { return obT0.Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		id := fmt.Sprintf("%032x", 0xc0ffee0000+i)
		link := []string{"tv-sale", "summer"}[i%2]
		r := outboxtest.Record(id)
		r.Exchange = exchange
		r.Time = obT0.Add(time.Duration(i) * time.Second)
		r.Body = fmt.Appendf(nil, `{"v":1,"click_id":%q,"ts":%q,"link":%q,"region":"test","node":"t1","params":{"subid":"s%d"}}`,
			id, r.Time.Format(time.RFC3339Nano), link, i)
		if err := o.Append(r); err != nil {
			t.Fatal(err)
		}
		fx.recs = append(fx.recs, r)
	}
	o.Sync()
	for seq := uint64(1); seq <= uint64(acked); seq++ {
		o.Ack(seq)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	return fx
}

func TestOutboxUsage(t *testing.T) {
	tests := []struct {
		args       []string
		code       int
		wantStdout string
		wantStderr string
	}{
		{[]string{"outbox"}, 2, "", "usage: clickedge outbox <subcommand>"},
		{[]string{"outbox", "-h"}, 0, "salvage", ""},
		{[]string{"outbox", "frobnicate"}, 2, "", `unknown subcommand "frobnicate"`},
		{[]string{"help", "outbox"}, 0, "replay", ""},
		{[]string{"outbox", "stats", "-h"}, 0, "", "usage: clickedge outbox stats -data DIR"},
		{[]string{"outbox", "export", "-h"}, 0, "", "usage: clickedge outbox export"},
		{[]string{"outbox", "replay", "-h"}, 0, "", "-window N"},
		{[]string{"outbox", "verify", "-h"}, 0, "", "usage: clickedge outbox verify"},
		{[]string{"outbox", "compact", "-h"}, 0, "", "usage: clickedge outbox compact"},
		{[]string{"outbox", "salvage", "-h"}, 0, "", "-out NEWDIR"},
		{[]string{"outbox", "stats", "-bogus"}, 2, "", "flag provided but not defined: -bogus"},
		{[]string{"outbox", "verify", "extra"}, 2, "", `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCmd(t, nil, tt.args...)
		if code != tt.code {
			t.Errorf("%q: exit %d, want %d (stderr %q)", tt.args, code, tt.code, stderr)
		}
		if !strings.Contains(stdout, tt.wantStdout) || !strings.Contains(stderr, tt.wantStderr) {
			t.Errorf("%q: stdout %q, stderr %q; want them to contain %q and %q", tt.args, stdout, stderr, tt.wantStdout, tt.wantStderr)
		}
	}
}

func TestOutboxStatsOffline(t *testing.T) {
	fx := makeOutbox(t, 30, 10, "clicks")
	code, stdout, stderr := runCmd(t, nil, "outbox", "stats", "-data", fx.dir, "-json")
	if code != 0 {
		t.Fatalf("stats -json: exit %d, stderr %q", code, stderr)
	}
	var st obStats
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		t.Fatalf("stats -json output %q: %v", stdout, err)
	}
	if st.Pending.Count != 20 || st.Delivered.Count != 10 || st.NextSeq != 31 || st.Path != fx.path || st.FileSize == 0 {
		t.Errorf("stats = %+v, want 20 pending, 10 delivered, next seq 31", st)
	}
	if st.Pending.FirstSeq != 11 || st.Pending.LastSeq != 30 || !st.Pending.OldestAppend.Equal(obT0.Add(10*time.Second)) ||
		!st.Pending.NewestAppend.Equal(obT0.Add(29*time.Second)) {
		t.Errorf("pending span = %+v", st.Pending)
	}
	if !st.Delivered.OldestDelivery.Equal(obT0.Add(time.Hour)) || st.Delivered.Bytes == 0 {
		t.Errorf("delivered span = %+v", st.Delivered)
	}
	if age := time.Since(obT0.Add(10 * time.Second)).Seconds(); st.OldestPendingAgeSeconds < age-60 || st.OldestPendingAgeSeconds > age+60 {
		t.Errorf("oldest pending age = %v s, want about %v", st.OldestPendingAgeSeconds, age)
	}

	code, stdout, _ = runCmd(t, nil, "outbox", "stats", "-data", fx.path) // the file itself
	for _, want := range []string{"pending        20 records", "delivered      10 records", "next seq       31", "seqs         11 .. 30",
		"appended     2025-11-27T06:00:10Z .. 2025-11-27T06:00:29Z", "oldest age"} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("stats: exit %d, output lacks %q:\n%s", code, want, stdout)
		}
	}
	// The environment names the data directory too.
	if code, stdout, _ := runCmd(t, []string{"CLICKEDGE_DATA_DIR=" + fx.dir}, "outbox", "stats"); code != 0 || !strings.Contains(stdout, "20 records") {
		t.Errorf("stats with CLICKEDGE_DATA_DIR: exit %d, %q", code, stdout)
	}
}

func TestOutboxStatsAdmin(t *testing.T) {
	fx := makeOutbox(t, 12, 4, "clicks")
	o, err := outbox.Open(fx.path, &outbox.Options{Retention: 100 * 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	// What serve's /admin/outbox returns: outbox.Status (harden #11).
	srv := httptest.NewServer(edge.NewAdmin(edge.AdminConfig{OutboxStatus: func() any {
		st := o.Status(nil, time.Now())
		st.Node, st.Region = "eu-1", "eu-central"
		st.Forwarder = &outbox.ForwarderStatus{Connected: true, Addr: "amqp://guest:xxxxx@centre:5672/", Published: 7, Confirmed: 5, Returned: 2}
		return st
	}}))
	defer srv.Close()

	// harden #11: one schema, snake_case all the way down, the same from
	// the node and from the CLI.
	resp, err := http.Get(srv.URL + "/admin/outbox")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var tree any
	if err := json.Unmarshal(raw, &tree); err != nil {
		t.Fatal(err)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		if m, ok := v.(map[string]any); ok {
			for k, c := range m {
				if !regexp.MustCompile(`^[a-z][a-z0-9_]*$`).MatchString(k) {
					t.Errorf("/admin/outbox key %s.%s is not snake_case", path, k)
				}
				walk(path+"."+k, c)
			}
		}
	}
	walk("", tree)
	for _, k := range []string{"path", "file_size", "next_seq", "pending", "delivered", "oldest_pending_age_seconds", "counters", "forwarder", "spill"} {
		if _, ok := tree.(map[string]any)[k]; !ok {
			t.Errorf("/admin/outbox lacks %q: %s", k, raw)
		}
	}

	code, stdout, stderr := runCmd(t, nil, "outbox", "stats", "-admin", srv.URL, "-json")
	if code != 0 {
		t.Fatalf("stats -admin: exit %d, stderr %q", code, stderr)
	}
	var st obStats
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		t.Fatal(err)
	}
	var cli, node any
	json.Unmarshal([]byte(stdout), &cli)
	json.Unmarshal(raw, &node)
	for _, k := range []string{"node", "pending", "delivered", "next_seq", "forwarder", "spill", "counters"} {
		a, _ := json.Marshal(cli.(map[string]any)[k])
		b, _ := json.Marshal(node.(map[string]any)[k])
		if string(a) != string(b) {
			t.Errorf("stats -admin -json %q = %s, /admin/outbox has %s", k, a, b)
		}
	}
	if st.Node != "eu-1" || st.Pending.Count != 8 || st.Delivered.Count != 4 || st.NextSeq != 13 || st.Forwarder == nil ||
		!st.Forwarder.Connected || st.Forwarder.Returned != 2 || !st.Pending.OldestAppend.Equal(obT0.Add(4*time.Second)) {
		t.Errorf("stats -admin = %s", stdout)
	}
	code, stdout, _ = runCmd(t, nil, "outbox", "stats", "-admin", srv.URL+"/admin/outbox")
	for _, want := range []string{"node           eu-1 (region eu-central)", "pending        8 records", "connected to amqp://guest:xxxxx@centre:5672/",
		"published    7 (confirmed 5, returned 2"} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("stats -admin: exit %d, output lacks %q:\n%s", code, want, stdout)
		}
	}
}

// exportLines runs export and decodes its output.
func exportLines(t *testing.T, args ...string) []map[string]any {
	t.Helper()
	code, stdout, stderr := runCmd(t, nil, append([]string{"outbox", "export"}, args...)...)
	if code != 0 {
		t.Fatalf("export %q: exit %d, stderr %q", args, code, stderr)
	}
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func seqsOf(lines []map[string]any) []int {
	var s []int
	for _, l := range lines {
		s = append(s, int(l["seq"].(float64)))
	}
	return s
}

func ints(from, to int, keep func(int) bool) []int {
	var s []int
	for i := from; i <= to; i++ {
		if keep == nil || keep(i) {
			s = append(s, i)
		}
	}
	return s
}

func TestOutboxExport(t *testing.T) {
	fx := makeOutbox(t, 40, 15, "clicks")
	// One record whose body is not JSON.
	// A long retention: the default would prune the fixture's deliveries.
	o, _ := outbox.Open(fx.path, &outbox.Options{Retention: 100 * 365 * 24 * time.Hour})
	raw := outboxtest.Record("raw")
	raw.Time = obT0.Add(time.Hour)
	raw.Body = []byte{0xff, 0x00, 'x'}
	o.Append(raw)
	o.Close()

	all := exportLines(t, "-data", fx.dir)
	if got := seqsOf(all); !slices.Equal(got, ints(1, 41, nil)) {
		t.Fatalf("export seqs = %v", got)
	}
	first := all[0]
	if first["state"] != "delivered" || first["delivered"] != "2025-11-27T07:00:00Z" || first["appended"] != "2025-11-27T06:00:00Z" ||
		first["message_id"] != fx.recs[0].MessageID || first["exchange"] != "clicks" || first["routing_key"] != "click.test" {
		t.Errorf("first line = %v", first)
	}
	if h := first["headers"].(map[string]any); h["region"] != "test" || h["schema"] != float64(1) {
		t.Errorf("headers = %v", h)
	}
	if b, ok := first["body"].(map[string]any); !ok || b["link"] != "tv-sale" {
		t.Errorf("body = %v, want the JSON object inline", first["body"])
	}
	if p := all[20]; p["state"] != "pending" || p["delivered"] != nil {
		t.Errorf("pending line = %v", p)
	}
	if last := all[40]; last["body_b64"] != "/wB4" || last["body"] != nil {
		t.Errorf("non-JSON body line = %v, want body_b64", last)
	}

	tests := []struct {
		args []string
		want []int
	}{
		{[]string{"-pending"}, ints(16, 41, nil)},
		{[]string{"-delivered"}, ints(1, 15, nil)},
		{[]string{"-pending", "-delivered"}, ints(1, 41, nil)},
		// Record seq s was appended at obT0 + (s-1) s.
		{[]string{"-from", "2025-11-27T06:00:10Z", "-to", "2025-11-27T06:00:20Z"}, ints(11, 20, nil)},
		{[]string{"-delivered", "-from", "2025-11-27T06:00:10Z"}, ints(11, 15, nil)},
		{[]string{"-link", "summer"}, ints(2, 40, func(s int) bool { return s%2 == 0 })},
		{[]string{"-link", "summer", "-pending", "-to", "2025-11-27T06:00:20Z"}, ints(16, 20, func(s int) bool { return s%2 == 0 })},
		{[]string{"-link", "nope"}, nil},
	}
	for _, tt := range tests {
		if got := seqsOf(exportLines(t, append([]string{"-data", fx.dir}, tt.args...)...)); !slices.Equal(got, tt.want) {
			t.Errorf("export %q = %v, want %v", tt.args, got, tt.want)
		}
	}
}

func TestOutboxVerifyCmd(t *testing.T) {
	fx := makeOutbox(t, 200, 50, "clicks")
	code, stdout, stderr := runCmd(t, nil, "outbox", "verify", "-data", fx.dir)
	if code != 0 || !strings.Contains(stdout, "result         OK") || !strings.Contains(stdout, "150 pending") {
		t.Fatalf("verify: exit %d\n%s%s", code, stdout, stderr)
	}
	damageRecord(t, fx.path, fx.recs[120].MessageID)
	code, stdout, stderr = runCmd(t, nil, "outbox", "verify", "-data", fx.dir)
	if code != 1 || !strings.Contains(stdout, "DAMAGED") || !strings.Contains(stdout, "checksum mismatch") || !strings.Contains(stderr, "outbox salvage") {
		t.Fatalf("verify of a damaged file: exit %d\n%s%s", code, stdout, stderr)
	}
}

// damageRecord flips a bit in the body of every copy of the record with
// this message id.
func damageRecord(t *testing.T, path, id string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	needle := []byte(`"click_id":"` + id)
	n := 0
	for i := 0; ; n++ {
		j := bytes.Index(data[i:], needle)
		if j < 0 {
			break
		}
		data[i+j+3] ^= 0x20
		i += j + 1
	}
	if n == 0 {
		t.Fatalf("record %s not found in %s", id, path)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestOutboxCompactCmd(t *testing.T) {
	fx := makeOutbox(t, 3000, 2990, "clicks")
	before := exportLines(t, "-data", fx.dir)
	code, stdout, stderr := runCmd(t, nil, "outbox", "compact", "-data", fx.dir)
	if code != 0 || !strings.Contains(stdout, "size ") || !strings.Contains(stdout, "kept as "+fx.path+".pre-compact-") {
		t.Fatalf("compact: exit %d\n%s%s", code, stdout, stderr)
	}
	after := exportLines(t, "-data", fx.dir)
	if len(before) != len(after) {
		t.Fatalf("compact kept %d of %d records", len(after), len(before))
	}
	for i := range before {
		b, _ := json.Marshal(before[i])
		a, _ := json.Marshal(after[i])
		if !bytes.Equal(a, b) {
			t.Fatalf("record %d changed:\n%s\n%s", i, b, a)
		}
	}
	if code, _, stderr := runCmd(t, nil, "outbox", "verify", "-data", fx.dir); code != 0 {
		t.Fatalf("verify after compact: %s", stderr)
	}
}

func TestOutboxSalvageCmd(t *testing.T) {
	fx := makeOutbox(t, 500, 100, "clicks")
	damageRecord(t, fx.path, fx.recs[300].MessageID)
	out := filepath.Join(t.TempDir(), "new")
	code, stdout, stderr := runCmd(t, nil, "outbox", "salvage", "-data", fx.dir, "-out", out)
	if code != 1 {
		t.Fatalf("salvage of a file with a damaged record: exit %d, want 1\n%s%s", code, stdout, stderr)
	}
	for _, want := range []string{"recovered      499 records: 399 pending, 100 delivered", "lost           1 records seen only damaged: seq 301",
		"the file said  400 pending, 100 delivered, next seq 501", "missing      at least 1 pending"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("salvage output lacks %q:\n%s", want, stdout)
		}
	}
	if code, stdout, _ := runCmd(t, nil, "outbox", "stats", "-data", out); code != 0 || !strings.Contains(stdout, "399 records") {
		t.Errorf("stats of the salvaged outbox: exit %d\n%s", code, stdout)
	}

	// An undamaged file salvages completely: exit 0.
	fx = makeOutbox(t, 50, 10, "clicks")
	code, stdout, stderr = runCmd(t, nil, "outbox", "salvage", "-data", fx.dir, "-out", filepath.Join(t.TempDir(), "ok"))
	if code != 0 || !strings.Contains(stdout, "tree           complete") {
		t.Errorf("salvage of a sound file: exit %d\n%s%s", code, stdout, stderr)
	}
}

// Bad arguments get clear errors and the right exit code.
func TestOutboxBadArguments(t *testing.T) {
	fx := makeOutbox(t, 5, 0, "clicks")
	empty := t.TempDir()
	missing := filepath.Join(empty, "gone")
	locked := makeOutbox(t, 5, 0, "clicks")
	o, err := outbox.Open(locked.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	lockedMsg := "outbox: " + locked.path + " is locked by another process (is a clickedge node running on this data directory?)"
	amqp := "amqp://guest:guest@127.0.0.1:1/"

	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"stats"}, 1, "-data is required"},
		{[]string{"stats", "-data", missing}, 1, "data directory " + missing + " does not exist"},
		{[]string{"stats", "-data", empty}, 1, "no outbox in " + empty},
		{[]string{"stats", "-data", locked.dir}, 1, lockedMsg},
		{[]string{"stats", "-data", fx.dir, "-admin", "http://127.0.0.1:1"}, 2, "give -data or -admin, not both"},
		{[]string{"stats", "-admin", "127.0.0.1:9090"}, 1, "want the admin listener's URL"},
		{[]string{"stats", "-admin", "http://127.0.0.1:1"}, 1, "cannot reach the node's admin listener"},
		{[]string{"export", "-data", locked.dir}, 1, lockedMsg},
		{[]string{"export", "-data", fx.dir, "-from", "yesterday"}, 2, `-from "yesterday": want an RFC 3339 time`},
		{[]string{"export", "-data", fx.dir, "-to", "2025-13-01T00:00:00Z"}, 2, "-to \"2025-13-01T00:00:00Z\""},
		{[]string{"export", "-data", fx.dir, "-from", "-1h", "-to", "-2h"}, 2, "is not before -to"},
		{[]string{"export", "-data", fx.dir, "-from", "2025-11-27T07:00:00Z", "-to", "2025-11-27T07:00:00Z"}, 2, "the range is empty"},
		{[]string{"verify", "-data", missing}, 1, "does not exist"},
		{[]string{"verify", "-data", locked.dir}, 1, lockedMsg},
		{[]string{"compact", "-data", locked.dir}, 1, lockedMsg},
		{[]string{"compact", "-data", empty}, 1, "no outbox in"},
		{[]string{"salvage", "-data", fx.dir}, 2, "-out is required"},
		{[]string{"salvage", "-data", locked.dir, "-out", filepath.Join(empty, "x")}, 1, lockedMsg},
		{[]string{"salvage", "-data", fx.dir, "-out", fx.dir}, 1, "is the source file"},
		{[]string{"salvage", "-data", fx.dir, "-out", locked.dir}, 1, "never overwrites"},
		{[]string{"replay", "-data", fx.dir}, 2, "-amqp is required"},
		{[]string{"replay", "-data", fx.dir, "-amqp", amqp, "-window", "0"}, 2, "-window 0"},
		{[]string{"replay", "-data", fx.dir, "-amqp", amqp, "-from", "-1x"}, 2, `-from "-1x"`},
		{[]string{"replay", "-data", missing, "-amqp", amqp}, 1, "does not exist"},
		{[]string{"replay", "-data", locked.dir, "-amqp", amqp}, 1, lockedMsg},
		{[]string{"replay", "-data", locked.dir, "-amqp", amqp, "-from", "-1h"}, 1, lockedMsg},
		{[]string{"replay", "-data", fx.dir, "-amqp", "http://x"}, 1, "-amqp"},
	}
	for _, tt := range tests {
		start := time.Now()
		code, _, stderr := runCmd(t, nil, append([]string{"outbox"}, tt.args...)...)
		if code != tt.code || !strings.Contains(stderr, tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", tt.args, code, stderr, tt.code, tt.want)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%q took %v: a tool must not hang", tt.args, d)
		}
	}
	// Nothing was created where there was no outbox.
	if _, err := os.Stat(filepath.Join(empty, outboxFile)); err == nil {
		t.Errorf("a tool created %s", filepath.Join(empty, outboxFile))
	}
}

func TestParseTimeArg(t *testing.T) {
	now := time.Date(2025, 11, 27, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2025-11-27T10:00:00Z", time.Date(2025, 11, 27, 10, 0, 0, 0, time.UTC), true},
		{"2025-11-27T10:00:00.250+01:00", time.Date(2025, 11, 27, 9, 0, 0, 250e6, time.UTC), true},
		{"now", now, true},
		{"-2h", now.Add(-2 * time.Hour), true},
		{"-90m", now.Add(-90 * time.Minute), true},
		{"-1h30m", now.Add(-90 * time.Minute), true},
		{"-1d", now.Add(-24 * time.Hour), true},
		{"-2d12h", now.Add(-60 * time.Hour), true},
		{" -45s ", now.Add(-45 * time.Second), true},
		{"2h", time.Time{}, false},
		{"+2h", time.Time{}, false},
		{"--2h", time.Time{}, false},
		{"-0s", time.Time{}, false},
		{"-d", time.Time{}, false},
		{"-1d-2h", time.Time{}, false},
		{"-99999d", time.Time{}, false},
		{"-1y", time.Time{}, false},
		{"2025-11-27", time.Time{}, false},
		{"2025-11-27 10:00:00", time.Time{}, false},
		{"", time.Time{}, false},
		{"yesterday", time.Time{}, false},
	}
	for _, tt := range tests {
		got, err := parseTimeArg(tt.in, now)
		if (err == nil) != tt.ok || (tt.ok && !got.Equal(tt.want)) {
			t.Errorf("parseTimeArg(%q) = %v, %v; want %v (ok %v)", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "RFC 3339") {
			t.Errorf("parseTimeArg(%q) error %q does not say what is wanted", tt.in, err)
		}
	}
}

func FuzzParseTimeArg(f *testing.F) {
	for _, s := range []string{"2025-11-27T10:00:00Z", "-2h", "-1d12h", "now", "-99999d", "-1d-1h", "2h", "-9223372036854775807ns", "-106751d"} {
		f.Add(s)
	}
	now := time.Date(2025, 11, 27, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseTimeArg(s, now)
		if err != nil {
			return
		}
		if trimmed := strings.TrimSpace(s); strings.HasPrefix(trimmed, "-") {
			if !got.Before(now) || now.Sub(got) > maxAgo {
				t.Fatalf("parseTimeArg(%q) = %v: a time ago must be in the past, within %v", s, got, maxAgo)
			}
		}
		// What it accepts survives a round trip through RFC 3339.
		back, err := parseTimeArg(got.Format(time.RFC3339Nano), now)
		if err != nil || !back.Equal(got) {
			t.Fatalf("parseTimeArg(%q) = %v, which does not read back (%v, %v)", s, got, back, err)
		}
	})
}

func TestHumanBytes(t *testing.T) {
	for _, tt := range []struct {
		n    int64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {5 << 20, "5.0 MiB"}, {3 << 30, "3.0 GiB"}} {
		if got := humanBytes(tt.n); got != tt.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}
