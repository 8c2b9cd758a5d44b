package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clickedge/clickedge/outbox"
)

// `clickedge outbox ...`: the offline tools for an outbox file, and stats
// of a live node. The offline tools work on a stopped node's data
// directory: a running node holds an exclusive lock on its outbox, and
// they say so instead of waiting.

// obLockTimeout is how long an offline tool waits for the outbox's lock.
const obLockTimeout = 200 * time.Millisecond

type obSubcommand struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer, env []string) int
}

func obSubcommands() []obSubcommand {
	return []obSubcommand{
		{"stats", "counts, sizes and time ranges of an outbox (-data), or of a live node (-admin)", cmdOutboxStats},
		{"export", "write records as NDJSON, filtered by state, time range and link", cmdOutboxExport},
		{"replay", "publish the pending records, or a time range of delivered ones, to a broker", cmdOutboxReplay},
		{"verify", "check an outbox file; exit 1 on damage", cmdOutboxVerify},
		{"compact", "rewrite an outbox file without its free space", cmdOutboxCompact},
		{"salvage", "copy every readable record of a damaged outbox into a new one", cmdOutboxSalvage},
	}
}

// outboxFlags is `clickedge help outbox`: the subcommands.
func outboxFlags() *flag.FlagSet {
	fs := flag.NewFlagSet("outbox", flag.ContinueOnError)
	fs.Usage = func() { outboxUsage(fs.Output()) }
	return fs
}

func outboxUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: clickedge outbox <subcommand> [flags]\n\n"+
		"Inspect and repair outboxes. Except stats -admin, the subcommands work on a\n"+
		"stopped node's data directory (or a copy of its outbox.db).\n\nsubcommands:\n")
	for _, s := range obSubcommands() {
		fmt.Fprintf(w, "  %-8s %s\n", s.name, s.summary)
	}
	fmt.Fprintf(w, "\nRun 'clickedge outbox <subcommand> -h' for its flags. See docs/runbook.md.\n")
}

func cmdOutbox(args []string, stdout, stderr io.Writer, env []string) int {
	if len(args) == 0 {
		outboxUsage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		outboxUsage(stdout)
		return 0
	}
	for _, s := range obSubcommands() {
		if s.name == args[0] {
			return s.run(args[1:], stdout, stderr, env)
		}
	}
	fmt.Fprintf(stderr, "clickedge outbox: unknown subcommand %q\n\n", args[0])
	outboxUsage(stderr)
	return 2
}

// obFlagSet returns a flag set whose usage prints synopsis, then text,
// then the flags.
func obFlagSet(name, synopsis, text string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("outbox "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s\n\n%s\n\nflags:\n", synopsis, strings.TrimSpace(text))
		fs.PrintDefaults()
	}
	return fs
}

// obParse parses args. It returns -1 to go on, or the exit code: 0 after
// -h, 2 for bad usage (the error and the usage are printed).
func obParse(fs *flag.FlagSet, args []string) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "clickedge %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return 2
	}
	return -1
}

// obUsageError prints a usage problem and returns 2.
func obUsageError(fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(fs.Output(), "clickedge %s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fmt.Fprintf(fs.Output(), "Run 'clickedge %s -h' for its flags.\n", fs.Name())
	return 2
}

// obFail prints err and returns 1.
func obFail(stderr io.Writer, fs *flag.FlagSet, err error) int {
	printError(stderr, "clickedge "+fs.Name()+": ", err)
	return 1
}

func obDataFlag(fs *flag.FlagSet, env []string) *string {
	return fs.String("data", defaultDataDir(env),
		"the node's data directory `DIR` (data_dir), or an outbox file; default $CLICKEDGE_DATA_DIR, "+
			"else data_dir of $CLICKEDGE_CONFIG, else serve's default")
}

// defaultDataDir is where the tools look when -data is not given, the way
// serve finds its data_dir (harden #14): $CLICKEDGE_DATA_DIR, else the
// data_dir of the file $CLICKEDGE_CONFIG names, else the built-in default
// (./clickedge-data) that `clickedge serve` with no configuration uses.
func defaultDataDir(env []string) string {
	if d := lookupEnv(env, "CLICKEDGE_DATA_DIR"); d != "" {
		return d
	}
	if p := lookupEnv(env, "CLICKEDGE_CONFIG"); p != "" {
		if c, err := LoadConfig(p, env); err == nil {
			return c.DataDir
		}
	}
	c := new(Config)
	if _, err := decodeConfig("default.yaml", defaultYAML, c); err == nil && c.DataDir != "" {
		return c.DataDir
	}
	return "./clickedge-data"
}

// obOutboxPath resolves -data to the outbox file, which must exist: the
// tools never create an outbox where none was.
func obOutboxPath(data string) (string, error) {
	if data == "" {
		return "", errors.New("-data is required: the node's data_dir, or an outbox file")
	}
	fi, err := os.Stat(data)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("data directory %s does not exist (give -data DIR: the node's data_dir)", data)
	}
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return data, nil
	}
	path := filepath.Join(data, outboxFile)
	fi, err = os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("no outbox in %s: %s does not exist (is -data the node's data_dir?)", data, path)
	}
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a file", path)
	}
	return path, nil
}

// obLockedError rewords outbox.ErrLocked for the tools.
func obLockedError(path string, err error) error {
	if errors.Is(err, outbox.ErrLocked) {
		return fmt.Errorf("outbox: %s is locked by another process (is a clickedge node running on this data directory?)", path)
	}
	return err
}

// obOpenReadOnly opens the outbox at -data for reading.
func obOpenReadOnly(data string) (*outbox.Outbox, error) {
	path, err := obOutboxPath(data)
	if err != nil {
		return nil, err
	}
	o, err := outbox.Open(path, &outbox.Options{ReadOnly: true, LockTimeout: obLockTimeout})
	if errors.Is(err, outbox.ErrLogPending) {
		if err = obMoveLog(path); err == nil {
			o, err = outbox.Open(path, &outbox.Options{ReadOnly: true, LockTimeout: obLockTimeout})
		}
	}
	if err != nil {
		return nil, obLockedError(path, err)
	}
	return o, nil
}

// obMoveLog moves the records a node's log (outbox.db.log) holds and its
// file does not yet into the file, as the node does when it starts, so
// that a tool reading the file sees every answered record. Nothing else
// changes: nothing expires under the retention given, nothing is evicted.
func obMoveLog(path string) error {
	o, err := outbox.Open(path, &outbox.Options{LockTimeout: obLockTimeout, Retention: 100 * 365 * 24 * time.Hour, SpillBytes: -1})
	if err != nil {
		return err
	}
	return o.Close()
}

// parseTimeArg parses a -from or -to value: an RFC 3339 time, "now", or a
// time ago as a negative duration ("-2h", "-90m", "-1d12h"; d is 24h).
func parseTimeArg(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	bad := func() (time.Time, error) {
		return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time such as 2025-11-27T14:00:00Z, \"now\", or a time ago such as -2h, -30m or -1d", s)
	}
	switch {
	case s == "now":
		return now, nil
	case strings.HasPrefix(s, "-"):
		d, ok := parseAgo(s[1:])
		if !ok {
			return bad()
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return bad()
	}
	return t, nil
}

// maxAgo bounds a relative time: far enough for any outbox, near enough
// that now minus it is a valid time.
const maxAgo = 100 * 365 * 24 * time.Hour

// parseAgo parses "2h", "1d12h", "3d": a positive duration with an
// optional leading count of days.
func parseAgo(s string) (time.Duration, bool) {
	var days int64
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		if i == 0 || i > 5 || !isDigits(s[:i]) {
			return 0, false
		}
		n, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil {
			return 0, false
		}
		days, s = n, s[i+1:]
	}
	var d time.Duration
	if s != "" {
		if s[0] == '-' || s[0] == '+' {
			return 0, false
		}
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, false
		}
	}
	if days > int64(maxAgo/(24*time.Hour)) {
		return 0, false
	}
	d += time.Duration(days) * 24 * time.Hour
	if d <= 0 || d > maxAgo {
		return 0, false
	}
	return d, true
}

// timeRange parses -from and -to ("" leaves a side open) and checks that
// from is before to.
func timeRange(from, to string, now time.Time) (f, t time.Time, err error) {
	if from != "" {
		if f, err = parseTimeArg(from, now); err != nil {
			return f, t, fmt.Errorf("-from %w", err)
		}
	}
	if to != "" {
		if t, err = parseTimeArg(to, now); err != nil {
			return f, t, fmt.Errorf("-to %w", err)
		}
	}
	if !f.IsZero() && !t.IsZero() && !f.Before(t) {
		return f, t, fmt.Errorf("-from %s is not before -to %s: the range is empty",
			f.UTC().Format(time.RFC3339Nano), t.UTC().Format(time.RFC3339Nano))
	}
	return f, t, nil
}

// bodyLink returns the "link" field of a JSON click body, or "".
func bodyLink(body []byte) string {
	var b struct {
		Link string `json:"link"`
	}
	if json.Unmarshal(body, &b) != nil {
		return ""
	}
	return b.Link
}

// linkMatcher returns a filter on the body's link field; nil when code is
// empty.
func linkMatcher(code string) func(*outbox.Record) bool {
	if code == "" {
		return nil
	}
	quoted, _ := json.Marshal(code)
	return func(r *outbox.Record) bool {
		// Most bodies do not hold the code at all: skip decoding them.
		return bytes.Contains(r.Body, quoted[1:len(quoted)-1]) && bodyLink(r.Body) == code
	}
}

// kindMatcher returns a filter on the record's exchange, which tells the
// kinds of record apart (clicks, actions); nil when exchange is empty.
func kindMatcher(exchange string) func(*outbox.Record) bool {
	if exchange == "" {
		return nil
	}
	return func(r *outbox.Record) bool { return r.Exchange == exchange }
}

// allOf combines filters; nil ones are left out, and nil means no filter.
func allOf(fs ...func(*outbox.Record) bool) func(*outbox.Record) bool {
	var set []func(*outbox.Record) bool
	for _, f := range fs {
		if f != nil {
			set = append(set, f)
		}
	}
	if len(set) == 0 {
		return nil
	}
	return func(r *outbox.Record) bool {
		for _, f := range set {
			if !f(r) {
				return false
			}
		}
		return true
	}
}

// ---- stats

// obStats is what stats prints, offline or from a live node: the one
// status shape, outbox.Status.
type obStats = outbox.Status

type obSpan = outbox.StatusSpan

func cmdOutboxStats(args []string, stdout, stderr io.Writer, env []string) int {
	fs := obFlagSet("stats", "clickedge outbox stats -data DIR [-json]\n       clickedge outbox stats -admin URL [-json]", `
Print pending and delivered (retained) record counts, bytes, sequence and time
ranges, the file size, next sequence and the age of the oldest pending record.
With -data it reads a stopped node's outbox (read-only; it refuses a running
node's). With -admin it asks a live node's admin listener (GET /admin/outbox)
and adds the forwarder's state.`, stderr)
	data := obDataFlag(fs, env)
	admin := fs.String("admin", "", "a live node's admin `URL`, e.g. http://127.0.0.1:9090")
	token := fs.String("token", lookupEnv(env, "CLICKEDGE_ADMIN_TOKEN"), "with -admin: the admin `token`; default $CLICKEDGE_ADMIN_TOKEN")
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", 5*time.Second, "with -admin: how long to wait for the node")
	if code := obParse(fs, args); code >= 0 {
		return code
	}
	dataSet := false
	fs.Visit(func(f *flag.Flag) { dataSet = dataSet || f.Name == "data" })
	var st *obStats
	var err error
	switch {
	case *admin != "" && dataSet:
		return obUsageError(fs, "give -data or -admin, not both")
	case *admin != "":
		st, err = obAdminStats(*admin, *token, *timeout, time.Now())
	default:
		st, err = obFileStats(*data, time.Now())
	}
	if err != nil {
		return obFail(stderr, fs, err)
	}
	if *asJSON {
		b, _ := json.MarshalIndent(st, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return 0
	}
	printStats(stdout, st, time.Now())
	return 0
}

func obFileStats(data string, now time.Time) (*obStats, error) {
	o, err := obOpenReadOnly(data)
	if err != nil {
		return nil, err
	}
	defer o.Close()
	s, err := o.Summarize()
	if err != nil {
		return nil, err
	}
	st := s.Status(now)
	return &st, nil
}

func obAdminStats(raw, token string, timeout time.Duration, now time.Time) (*obStats, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("-admin %q: want the admin listener's URL, such as http://127.0.0.1:9090", raw)
	}
	if p := strings.TrimSuffix(u.Path, "/"); !strings.HasSuffix(p, "/admin/outbox") {
		u.Path = p + "/admin/outbox"
	}
	client := &http.Client{Timeout: timeout}
	req, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("-admin %q: %w", raw, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the node's admin listener: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u.Redacted(), err)
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return nil, fmt.Errorf("GET %s: %s: the node wants its admin token: give -token or set CLICKEDGE_ADMIN_TOKEN", u.Redacted(), resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", u.Redacted(), resp.Status, strings.TrimSpace(string(body[:min(len(body), 200)])))
	}
	var st obStats
	if err := json.Unmarshal(body, &st); err != nil || st.Path == "" {
		return nil, fmt.Errorf("GET %s: not an outbox status: %v", u.Redacted(), err)
	}
	return &st, nil
}

// humanBytes formats n in binary units with one decimal.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(timeFormat)
}

// timeFormat is the one way clickedge writes a time for people and tools:
// RFC 3339 in UTC to the millisecond, as the click's "ts" (harden #14).
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// msTime is a time that marshals to JSON in timeFormat.
type msTime time.Time

func (t msTime) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, len(timeFormat)+2)
	b = append(b, '"')
	b = time.Time(t).UTC().AppendFormat(b, timeFormat)
	return append(b, '"'), nil
}

func msTimePtr(t time.Time) *msTime {
	if t.IsZero() {
		return nil
	}
	m := msTime(t)
	return &m
}

func printStats(w io.Writer, st *obStats, now time.Time) {
	if st.Node != "" {
		fmt.Fprintf(w, "node           %s (region %s)\n", st.Node, st.Region)
	}
	fmt.Fprintf(w, "outbox         %s\n", st.Path)
	fmt.Fprintf(w, "file size      %s (%d bytes)\n", humanBytes(st.FileSize), st.FileSize)
	fmt.Fprintf(w, "next seq       %d\n", st.NextSeq)
	span := func(name string, s obSpan) {
		fmt.Fprintf(w, "%-14s %d records, %s\n", name, s.Count, humanBytes(s.Bytes))
		if s.Count == 0 {
			return
		}
		if s.FirstSeq != 0 {
			fmt.Fprintf(w, "  seqs         %d .. %d\n", s.FirstSeq, s.LastSeq)
		}
		if s.NewestAppend != nil {
			fmt.Fprintf(w, "  appended     %s .. %s\n", fmtTime(s.OldestAppend), fmtTime(s.NewestAppend))
		} else if s.OldestAppend != nil {
			fmt.Fprintf(w, "  oldest       appended %s\n", fmtTime(s.OldestAppend))
		}
		if s.NewestDelivery != nil {
			fmt.Fprintf(w, "  delivered    %s .. %s\n", fmtTime(s.OldestDelivery), fmtTime(s.NewestDelivery))
		} else if s.OldestDelivery != nil {
			fmt.Fprintf(w, "  oldest       delivered %s\n", fmtTime(s.OldestDelivery))
		}
	}
	span("pending", st.Pending)
	if st.Pending.Count > 0 {
		fmt.Fprintf(w, "  oldest age   %s\n", (time.Duration(st.OldestPendingAgeSeconds * float64(time.Second))).Round(time.Millisecond))
	}
	span("delivered", st.Delivered)
	printKinds(w, st.Exchanges)
	if f := st.Forwarder; f != nil {
		state := "disconnected"
		if f.Connected {
			state = "connected to " + f.Addr
		}
		if f.Blocked {
			state += ", blocked by the broker"
		}
		if f.Retrying {
			state += ", backing off after a return or nack"
		}
		fmt.Fprintf(w, "forwarder      %s\n", state)
		fmt.Fprintf(w, "  in flight    %d\n", f.InFlight)
		fmt.Fprintf(w, "  published    %d (confirmed %d, returned %d, nacked %d, republished %d)\n",
			f.Published, f.Confirmed, f.Returned, f.Nacked, f.Republished)
		fmt.Fprintf(w, "  connections  %d reconnects, %d connect errors, %d session errors\n", f.Reconnects, f.ConnectErrors, f.SessionErrors)
		if f.LastError != "" {
			fmt.Fprintf(w, "  last error   %s (%s)\n", f.LastError, fmtTime(f.LastErrorAt))
		}
	}
	if sp := st.Spill; sp != nil {
		fmt.Fprintf(w, "spill          %d records, %s in memory; %d dropped\n", sp.Records, humanBytes(int64(sp.Bytes)), sp.Dropped)
	}
}

// ---- export

// exportRecord is one line of export's NDJSON.
type exportRecord struct {
	Seq        uint64          `json:"seq"`
	State      string          `json:"state"`
	Appended   msTime          `json:"appended"`
	Delivered  *msTime         `json:"delivered"`
	Exchange   string          `json:"exchange"`
	RoutingKey string          `json:"routing_key"`
	MessageID  string          `json:"message_id"`
	Headers    map[string]any  `json:"headers"`
	Body       json.RawMessage `json:"body,omitempty"`
	BodyB64    []byte          `json:"body_b64,omitempty"`
}

func cmdOutboxExport(args []string, stdout, stderr io.Writer, env []string) int {
	fs := obFlagSet("export", "clickedge outbox export -data DIR [-pending] [-delivered] [-from T] [-to T] [-link CODE]", `
Write the outbox's records to stdout as NDJSON, one object per record, in
sequence order:
  {"seq","state":"pending|delivered","appended","delivered","exchange",
   "routing_key","message_id","headers":{},"body":{...}}
A body that is not JSON is written base64-encoded as "body_b64" instead.
Times (-from, -to) are RFC 3339 or a time ago (-2h, -30m, -1d) and select on
the append time; -from is inclusive, -to exclusive. The file is read in
batches, never whole.`, stderr)
	data := obDataFlag(fs, env)
	pendingOnly := fs.Bool("pending", false, "pending records (alone: only those; with -delivered: both)")
	deliveredOnly := fs.Bool("delivered", false, "delivered (retained) records (alone: only those; with -pending: both)")
	from := fs.String("from", "", "only records appended at or after this `time`")
	to := fs.String("to", "", "only records appended before this `time`")
	link := fs.String("link", "", "only records whose body's \"link\" is this `code`")
	kind := fs.String("kind", "", "only records bound for this `exchange`: clicks, actions (the postback role's), ...")
	if code := obParse(fs, args); code >= 0 {
		return code
	}
	f, t, err := timeRange(*from, *to, time.Now())
	if err != nil {
		return obUsageError(fs, "%v", err)
	}
	state := outbox.StateAll
	switch {
	case *pendingOnly && !*deliveredOnly:
		state = outbox.StatePending
	case *deliveredOnly && !*pendingOnly:
		state = outbox.StateDelivered
	}
	o, err := obOpenReadOnly(*data)
	if err != nil {
		return obFail(stderr, fs, err)
	}
	defer o.Close()

	bw := bufio.NewWriterSize(stdout, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	match := allOf(linkMatcher(*link), kindMatcher(*kind))
	err = o.Scan(&outbox.ScanOptions{State: state, From: f, To: t}, func(r *outbox.Record) error {
		if match != nil && !match(r) {
			return nil
		}
		return enc.Encode(toExport(r))
	})
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return obFail(stderr, fs, err)
	}
	return 0
}

func toExport(r *outbox.Record) *exportRecord {
	e := &exportRecord{
		Seq: r.Seq, State: "pending", Appended: msTime(r.Time),
		Exchange: r.Exchange, RoutingKey: r.RoutingKey, MessageID: r.MessageID,
		Headers: make(map[string]any, len(r.Headers)),
	}
	if !r.Pending() {
		e.State = "delivered"
		e.Delivered = msTimePtr(r.Delivered)
	}
	for _, h := range r.Headers {
		e.Headers[h.Key] = h.Value
	}
	if json.Valid(r.Body) {
		e.Body = r.Body
	} else {
		e.BodyB64 = r.Body
		if e.BodyB64 == nil {
			e.BodyB64 = []byte{}
		}
	}
	return e
}

// ---- verify

func cmdOutboxVerify(args []string, stdout, stderr io.Writer, env []string) int {
	fs := obFlagSet("verify", "clickedge outbox verify -data DIR", `
Check an outbox file without changing it: both meta pages, every page
reachable from the root, the freelist, every record's checksum and the
counters. Exit 0 when the file is sound, 1 on damage (then salvage it).`, stderr)
	data := obDataFlag(fs, env)
	if code := obParse(fs, args); code >= 0 {
		return code
	}
	path, err := obOutboxPath(*data)
	if err != nil {
		return obFail(stderr, fs, err)
	}
	rep, err := outbox.Verify(path)
	if rep == nil {
		return obFail(stderr, fs, obLockedError(path, err))
	}
	fmt.Fprintf(stdout, "file           %s (%s, %d bytes)\n", path, humanBytes(rep.FileSize), rep.FileSize)
	fmt.Fprintf(stdout, "pages          %d of %d bytes, txid %d; %d free, %d leaked\n", rep.Pages, rep.PageSize, rep.TxID, rep.FreePages, rep.LeakedPages)
	if err == nil {
		fmt.Fprintf(stdout, "records        %d pending (%s), %d delivered (%s)\n",
			rep.Pending, humanBytes(rep.PendingBytes), rep.Retained, humanBytes(rep.RetainedBytes))
		fmt.Fprintf(stdout, "next seq       %d\n", rep.NextSeq)
	}
	if rep.Log != nil {
		fmt.Fprintf(stdout, "log            %s: generation %d, %d records, %d not yet in the file (moved into it when the node or a tool opens it)\n",
			rep.Log.Path, rep.Log.Generation, rep.Log.Records, rep.LogUnmoved)
	}
	if err != nil {
		fmt.Fprintf(stdout, "result         DAMAGED: %d problem(s)\n", len(rep.Problems))
		for _, p := range rep.Problems {
			fmt.Fprintf(stdout, "  - %s\n", p)
		}
		return obFail(stderr, fs, err)
	}
	fmt.Fprintf(stdout, "result         OK\n")
	return 0
}

// ---- compact

func cmdOutboxCompact(args []string, stdout, stderr io.Writer, env []string) int {
	fs := obFlagSet("compact", "clickedge outbox compact -data DIR", `
Rewrite a stopped node's outbox without its free pages, after a long backlog
drained. The copy keeps every record with its sequence, state and times; it is
fsynced and verified, then takes the file's name in one atomic rename. The
original is kept as outbox.db.pre-compact-<time>; remove it once the node runs.
A damaged file is refused: salvage it instead.`, stderr)
	data := obDataFlag(fs, env)
	if code := obParse(fs, args); code >= 0 {
		return code
	}
	path, err := obOutboxPath(*data)
	if err != nil {
		return obFail(stderr, fs, err)
	}
	rep, err := outbox.Compact(path, &outbox.CompactOptions{LockTimeout: obLockTimeout})
	if err != nil {
		return obFail(stderr, fs, obLockedError(path, err))
	}
	fmt.Fprintf(stdout, "compacted      %s\n", path)
	fmt.Fprintf(stdout, "size           %s -> %s (%d -> %d bytes)\n", humanBytes(rep.SizeBefore), humanBytes(rep.SizeAfter), rep.SizeBefore, rep.SizeAfter)
	fmt.Fprintf(stdout, "records        %d pending, %d delivered, next seq %d\n", rep.Pending, rep.Retained, rep.NextSeq)
	fmt.Fprintf(stdout, "original       kept as %s; remove it once the node runs on the compacted file\n", rep.Backup)
	return 0
}

// ---- salvage

func cmdOutboxSalvage(args []string, stdout, stderr io.Writer, env []string) int {
	fs := obFlagSet("salvage", "clickedge outbox salvage -data DIR -out NEWDIR", `
Copy every readable record of a damaged outbox into a fresh one at
NEWDIR/outbox.db, keeping sequences, states and times, and report what could
not be read. The damaged file is only read, never changed; it works when the
node refuses to open the file (truncated, flipped bits, broken meta pages).
Exit 0 when nothing is known to be missing, 1 otherwise.`, stderr)
	data := obDataFlag(fs, env)
	out := fs.String("out", "", "the new data directory `NEWDIR`; NEWDIR/outbox.db must not exist")
	if code := obParse(fs, args); code >= 0 {
		return code
	}
	if *out == "" {
		return obUsageError(fs, "-out is required: the directory for the salvaged outbox")
	}
	src, err := obOutboxPath(*data)
	if err != nil {
		return obFail(stderr, fs, err)
	}
	dst := filepath.Join(*out, outboxFile)
	rep, err := outbox.Salvage(src, dst, &outbox.SalvageOptions{LockTimeout: obLockTimeout})
	if err != nil {
		return obFail(stderr, fs, obLockedError(src, err))
	}
	complete := printSalvage(stdout, rep)
	if !complete {
		fmt.Fprintf(stderr, "clickedge outbox salvage: %s: some records could not be read; see the report above\n", src)
		return 1
	}
	return 0
}

// printSalvage prints the report and says whether nothing is known to be
// missing.
func printSalvage(w io.Writer, rep *outbox.SalvageReport) bool {
	fmt.Fprintf(w, "salvaged       %s\n", rep.Source)
	fmt.Fprintf(w, "into           %s\n", rep.Dest)
	guess := ""
	if rep.PageSizeGuessed {
		guess = ", inferred"
	}
	fmt.Fprintf(w, "file           %s, page size %d%s\n", humanBytes(rep.FileSize), rep.PageSize, guess)
	fmt.Fprintf(w, "meta pages     0: %s; 1: %s\n", rep.Meta[0], rep.Meta[1])
	switch {
	case rep.TxID == 0:
		fmt.Fprintf(w, "tree           not walked: no usable meta page or root; every page was scanned\n")
	case rep.TreeComplete:
		fmt.Fprintf(w, "tree           complete (txid %d, %d pages)\n", rep.TxID, rep.TreePages)
	default:
		fmt.Fprintf(w, "tree           damaged (txid %d): %d pages read, %d unreadable\n", rep.TxID, rep.TreePages, rep.UnreadablePages)
	}
	if len(rep.LostRanges) > 0 {
		rs := make([]string, 0, len(rep.LostRanges))
		for _, r := range rep.LostRanges[:min(len(rep.LostRanges), 10)] {
			rs = append(rs, r.String())
		}
		more := ""
		if n := len(rep.LostRanges) - len(rs); n > 0 {
			more = fmt.Sprintf(" and %d more", n)
		}
		fmt.Fprintf(w, "  seq ranges   the tree could not vouch for: %s%s\n", strings.Join(rs, " "), more)
	}
	fmt.Fprintf(w, "page scan      %d pages scanned, %d searched byte by byte\n", rep.PagesScanned, rep.PagesCarved)
	fmt.Fprintf(w, "recovered      %d records: %d pending, %d delivered (%d from the tree, %d from the page scan, %d from the log)\n",
		rep.Pending+rep.Delivered, rep.Pending, rep.Delivered, rep.FromTree, rep.FromScan, rep.FromLog)
	if rep.LogDamage != "" {
		fmt.Fprintf(w, "log            read up to damage: %s\n", rep.LogDamage)
	}
	fmt.Fprintf(w, "  copies       %d duplicate copies dropped, %d records given a new sequence\n", rep.Copies, rep.Reassigned)
	fmt.Fprintf(w, "bad checksums  %d record copies\n", rep.BadChecksums)
	if rep.LostCount > 0 {
		seqs := make([]string, len(rep.Lost))
		for i, s := range rep.Lost {
			seqs[i] = strconv.FormatUint(s, 10)
		}
		more := ""
		if n := rep.LostCount - int64(len(rep.Lost)); n > 0 {
			more = fmt.Sprintf(" and %d more", n)
		}
		fmt.Fprintf(w, "lost           %d records seen only damaged: seq %s%s\n", rep.LostCount, strings.Join(seqs, " "), more)
	} else {
		fmt.Fprintf(w, "lost           no record was seen only damaged\n")
	}
	complete := rep.LostCount == 0 && rep.LogDamage == ""
	if rep.CountersOK {
		fmt.Fprintf(w, "the file said  %d pending, %d delivered, next seq %d\n", rep.ExpectedPending, rep.ExpectedDelivered, rep.ExpectedNextSeq)
		if rep.Pending < rep.ExpectedPending {
			fmt.Fprintf(w, "  missing      at least %d pending records could not be read\n", rep.ExpectedPending-rep.Pending)
			complete = false
		}
		if rep.Pending+rep.Delivered < rep.ExpectedPending+rep.ExpectedDelivered {
			complete = false
		}
	} else {
		fmt.Fprintf(w, "the file said  unknown: its counters could not be read, so losses cannot be ruled out\n")
		complete = false
	}
	fmt.Fprintf(w, "next seq       %d\n", rep.NextSeq)
	for i, p := range rep.Problems {
		if i == 0 {
			fmt.Fprintf(w, "problems:\n")
		}
		fmt.Fprintf(w, "  - %s\n", p)
	}
	if !rep.TreeComplete {
		fmt.Fprintf(w, "note: where the tree was damaged, old copies from free pages were used. They\n"+
			"may bring back records that were delivered and then pruned (kept as delivered,\n"+
			"or as pending when only a pending copy survived): a pending one is published\n"+
			"again, a duplicate that consumers drop by message_id. A loss would be worse.\n")
	}
	fmt.Fprintf(w, "next: clickedge outbox verify -data %s; then start the node with data_dir %s\n"+
		"(or stop it and move the file into place). Keep the damaged file.\n", filepath.Dir(rep.Dest), filepath.Dir(rep.Dest))
	return complete
}

// printKinds prints the records by exchange (kind), one line each.
func printKinds(w io.Writer, ex map[string]*outbox.ExchangeCount) {
	if len(ex) == 0 {
		return
	}
	names := make([]string, 0, len(ex))
	for name := range ex {
		names = append(names, name)
	}
	slices.Sort(names)
	fmt.Fprintf(w, "by exchange\n")
	for _, name := range names {
		c := ex[name]
		fmt.Fprintf(w, "  %-12s %d pending (%s), %d delivered (%s)\n", name, c.Pending, humanBytes(c.PendingBytes),
			c.Delivered, humanBytes(c.DeliveredBytes))
	}
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
