package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
	"golang.org/x/time/rate"

	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/rabbit"
)

// `clickedge outbox replay` publishes records again, with publisher
// confirms, through outbox.Replayer (the publish engine lives in outbox/;
// this file keeps flags, selection, the checkpoint and the report) over
// the same rabbit session the forwarder uses (so the
// messages are the forwarder's: same message_id, exchange, routing key,
// headers, body and properties).
//
// Two modes:
//   - pending (the default): the pending records. Each confirmed one is
//     acknowledged in the outbox, so a re-run resumes and the node will not
//     publish it again.
//   - range (-from/-to): delivered records kept for replay, appended in the
//     range. Progress is kept in a checkpoint file: the highest sequence
//     below which every record was confirmed. A re-run with the same
//     arguments resumes after it.
//
// Either way, a re-run after a crash publishes again at most one window of
// records: publishing waits whenever the records in flight plus the ones
// confirmed but not yet made durable (acks not yet committed, checkpoint
// not yet written) would exceed the window, and makes them durable first.

type replayOptions struct {
	data, amqpURL, exchange string
	from, to, link          string
	kind                    string // only records bound for this exchange
	rate                    float64
	window                  int
	restart                 bool
	checkpoint              string
	dialTimeout             time.Duration
	confirmTimeout          time.Duration
	progress                string
}

func replayFlags(env []string, stderr io.Writer) (*flag.FlagSet, *replayOptions) {
	o := new(replayOptions)
	fs := obFlagSet("replay", "clickedge outbox replay -data DIR -amqp URL [-from T] [-to T] [-link CODE] [-rate N] [-window N]", `
Publish records of a stopped node's outbox to a broker with publisher
confirms, keeping each record's message_id, exchange, routing key, headers and
body, so consumers deduplicate.

Without -from/-to: the pending records. Each confirmed one is acknowledged in
the outbox, so a re-run resumes where this one stopped and the node will not
publish it again. With -from and/or -to: the delivered records (kept for
replay, see outbox.retention) appended in that range; progress is kept in a
checkpoint file in DIR, and a re-run with the same arguments resumes from it
(-restart starts over). Either way an interrupted replay publishes at most one
window of records twice. Times are RFC 3339 or a time ago (-2h, -1d); a
relative range is fixed when the replay starts and kept in the checkpoint.

Returned (unroutable) and nacked records are not acknowledged: pending ones
stay pending. Exit 0 when every selected record was confirmed, 1 otherwise.`, stderr)
	fs.StringVar(&o.data, "data", lookupEnv(env, "CLICKEDGE_DATA_DIR"),
		"the node's data directory `DIR` (data_dir), or an outbox file; default $CLICKEDGE_DATA_DIR")
	fs.StringVar(&o.amqpURL, "amqp", "", "the broker `URL`, e.g. amqp://user:pass@centre:5672/")
	fs.StringVar(&o.exchange, "exchange", "", "publish to this `exchange` instead of each record's own")
	fs.StringVar(&o.from, "from", "", "replay delivered records appended at or after this `time`")
	fs.StringVar(&o.to, "to", "", "replay delivered records appended before this `time`")
	fs.StringVar(&o.link, "link", "", "only records whose body's \"link\" is this `code`")
	fs.StringVar(&o.kind, "kind", "", "only records bound for this `exchange`: clicks, actions (the postback role's), ...")
	fs.Float64Var(&o.rate, "rate", 0, "at most `N` messages per second; 0 means no limit")
	fs.IntVar(&o.window, "window", 1024, "at most `N` messages awaiting their confirm")
	fs.BoolVar(&o.restart, "restart", false, "ignore the checkpoint of an earlier range replay and start over")
	fs.StringVar(&o.checkpoint, "checkpoint", "", "the checkpoint `file`; default DIR/replay-<hash of the arguments>.checkpoint")
	fs.DurationVar(&o.dialTimeout, "dial-timeout", 5*time.Second, "how long to wait for the broker to answer")
	fs.DurationVar(&o.confirmTimeout, "confirm-timeout", 30*time.Second, "how long to wait for outstanding confirms at the end")
	fs.StringVar(&o.progress, "progress", "auto", "`auto` (a bar on a terminal, else lines every 2s), bar, lines or none")
	return fs, o
}

func cmdOutboxReplay(args []string, stdout, stderr io.Writer, env []string) int {
	fs, o := replayFlags(env, stderr)
	if code := obParse(fs, args); code >= 0 {
		return code
	}
	switch {
	case o.amqpURL == "":
		return obUsageError(fs, "-amqp is required: the broker to publish to")
	case o.window < 1 || o.window > 65536:
		return obUsageError(fs, "-window %d: want 1 to 65536", o.window)
	case o.rate < 0:
		return obUsageError(fs, "-rate %v: want 0 (no limit) or more", o.rate)
	case o.dialTimeout <= 0:
		return obUsageError(fs, "-dial-timeout must be > 0")
	}
	switch o.progress {
	case "auto", "bar", "lines", "none":
	default:
		return obUsageError(fs, "-progress %q: want auto, bar, lines or none", o.progress)
	}
	now := time.Now()
	from, to, err := timeRange(o.from, o.to, now)
	if err != nil {
		return obUsageError(fs, "%v", err)
	}
	ranged := o.from != "" || o.to != ""
	if ranged && to.IsZero() {
		to = now // fixed now: records appended during the replay are not part of it
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := &replay{opts: o, out: stdout, errw: stderr, from: from, to: to, ranged: ranged, start: now}
	code, err := r.run(ctx)
	if err != nil {
		printError(stderr, "clickedge outbox replay: ", err)
	}
	return code
}

// replay is one run. Its loop is single-threaded: Scan's callback
// publishes, and waits for confirms whenever the window is full.
type replay struct {
	opts     *replayOptions
	out      io.Writer
	errw     io.Writer
	from, to time.Time
	ranged   bool
	start    time.Time

	o      *outbox.Outbox
	path   string
	eng    *outbox.Replayer // the publish engine; outbox/replay.go
	ledger outbox.ReplayLedger
	prog   progress
	match  func(*outbox.Record) bool

	skipped, total int64
}

func (r *replay) run(ctx context.Context) (int, error) {
	o := r.opts
	path, err := obOutboxPath(o.data)
	if err != nil {
		return 1, err
	}
	r.path = path
	opts := &outbox.Options{ReadOnly: true, LockTimeout: obLockTimeout}
	if !r.ranged {
		// Read-write, to acknowledge. Nothing else changes: no pruning
		// (the node prunes by its own retention when it next runs), no
		// eviction, no spill.
		opts = &outbox.Options{LockTimeout: obLockTimeout, Retention: 100 * 365 * 24 * time.Hour, SpillBytes: -1}
	}
	r.o, err = outbox.Open(path, opts)
	if errors.Is(err, outbox.ErrLogPending) {
		if err = obMoveLog(path); err == nil {
			r.o, err = outbox.Open(path, opts)
		}
	}
	if err != nil {
		return 1, obLockedError(path, err)
	}
	defer r.o.Close()
	r.match = allOf(linkMatcher(o.link), kindMatcher(o.kind))

	scan := &outbox.ScanOptions{State: outbox.StatePending}
	if r.ranged {
		cp, err := r.openCheckpoint()
		if err != nil {
			return 1, err
		}
		r.ledger = cp
		scan = &outbox.ScanOptions{State: outbox.StateDelivered, From: r.from, To: r.to, After: cp.done}
	} else {
		r.ledger = &outbox.AckLedger{O: r.o}
	}
	if err := r.count(scan); err != nil {
		return 1, err
	}

	if o.exchange != "" {
		if err := checkExchangeExists(o.amqpURL, o.exchange, o.dialTimeout); err != nil {
			return 1, err // harden #14: never create an exchange silently
		}
	}
	pub, err := rabbit.New(&rabbit.Config{
		URLs:           []string{o.amqpURL},
		Exchange:       cmpOr(o.exchange, "clicks"),
		DialTimeout:    o.dialTimeout,
		ConfirmBuffer:  max(65536, o.window),
		ConnectionName: "clickedge outbox replay",
	})
	if err != nil {
		return 1, fmt.Errorf("-amqp: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, o.dialTimeout+time.Second)
	sess, err := pub.Connect(cctx)
	cancel()
	if err != nil {
		return 1, fmt.Errorf("cannot reach the broker: %w", err)
	}
	defer sess.Close()
	r.prog = newProgress(o.progress, r.errw, r.total)
	rc := outbox.ReplayConfig{
		Session: sess, Ledger: r.ledger, Window: o.window, Exchange: o.exchange,
		OnConfirm: func() { r.prog.add(1) }, OnTick: r.prog.tick,
	}
	if o.rate > 0 {
		rc.Wait = rate.NewLimiter(rate.Limit(o.rate), max(1, min(int(o.rate/10), o.window))).Wait
	}
	if r.eng, err = outbox.NewReplayer(rc); err != nil {
		return 1, err
	}

	scanErr := r.o.Scan(scan, func(rec *outbox.Record) error {
		if r.match != nil && !r.match(rec) {
			return nil
		}
		return r.eng.Publish(ctx, rec)
	})
	drainErr := r.eng.Drain(o.confirmTimeout)
	r.prog.finish()
	st := r.eng.Stats()
	complete := scanErr == nil && drainErr == nil && st.Confirmed == st.Published && st.Returned+st.Nacked == 0
	ledgerErr := r.ledger.Finish(complete)
	r.summary(complete)
	switch {
	case scanErr != nil:
		if errors.Is(scanErr, outbox.ErrInterrupted) {
			return 1, errors.New("interrupted; run the same command again to resume")
		}
		return 1, scanErr
	case drainErr != nil:
		return 1, drainErr
	case ledgerErr != nil:
		return 1, ledgerErr
	case !complete:
		return 1, fmt.Errorf("%d records were not confirmed", st.Published-st.Confirmed)
	}
	return 0, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// count finds the records the replay will publish, for the progress bar,
// and (for a resumed range) those an earlier run confirmed.
func (r *replay) count(scan *outbox.ScanOptions) error {
	c := *scan
	c.After = 0
	after := scan.After
	return r.o.Scan(&c, func(rec *outbox.Record) error {
		if r.match != nil && !r.match(rec) {
			return nil
		}
		if rec.Seq <= after {
			r.skipped++
		} else {
			r.total++
		}
		return nil
	})
}

func (r *replay) summary(complete bool) {
	w := r.out
	elapsed := time.Since(r.start)
	st := r.eng.Stats()
	mode := "pending records"
	if r.ranged {
		mode = fmt.Sprintf("delivered records appended in [%s, %s)", fmtRangeEnd(r.from), fmtRangeEnd(r.to))
	}
	if r.opts.link != "" {
		mode += fmt.Sprintf(" of link %q", r.opts.link)
	}
	if r.opts.kind != "" {
		mode += fmt.Sprintf(" bound for exchange %q", r.opts.kind)
	}
	fmt.Fprintf(w, "replayed       %s of %s to %s\n", mode, r.path, rabbit.Redact(r.opts.amqpURL))
	fmt.Fprintf(w, "published      %d\n", st.Published)
	fmt.Fprintf(w, "confirmed      %d\n", st.Confirmed)
	ret := ""
	if st.Returned > 0 {
		ret = fmt.Sprintf(" (unroutable: %s)", st.FirstReturn)
	}
	fmt.Fprintf(w, "returned       %d%s\n", st.Returned, ret)
	fmt.Fprintf(w, "nacked         %d\n", st.Nacked)
	fmt.Fprintf(w, "skipped        %d (confirmed by an earlier run)\n", r.skipped)
	fmt.Fprintf(w, "unconfirmed    %d\n", st.Published-st.Confirmed-st.Returned-st.Nacked)
	rateS := ""
	if s := elapsed.Seconds(); s > 0 {
		rateS = fmt.Sprintf(" (%.0f msg/s)", float64(st.Confirmed)/s)
	}
	fmt.Fprintf(w, "elapsed        %s%s\n", elapsed.Round(time.Millisecond), rateS)
	switch {
	case complete:
		fmt.Fprintf(w, "result         OK: every record was confirmed\n")
	case r.ranged:
		fmt.Fprintf(w, "result         INCOMPLETE: run the same command again to resume\n")
	default:
		fmt.Fprintf(w, "result         INCOMPLETE: the records not confirmed stay pending; run again to retry\n")
	}
}

func fmtRangeEnd(t time.Time) string {
	if t.IsZero() {
		return "…"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// ---- range mode: the checkpoint file

// checkpointFile is the JSON of a range replay's checkpoint.
type checkpointFile struct {
	Version int `json:"version"`
	// Args are the arguments as given; their hash names the file.
	Args map[string]string `json:"args"`
	// From and To are the range as resolved when the replay started.
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	DoneSeq uint64    `json:"done_seq"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
}

type checkpointLedger struct {
	path    string
	file    checkpointFile
	done    uint64   // persisted: every record up to it was confirmed
	prefix  uint64   // in memory: the same, not yet written
	order   []uint64 // published seqs not yet below prefix, in order
	ok      map[uint64]bool
	broken  bool // a record failed: the prefix stops before it
	pending int  // confirmed records above done
}

func checkpointArgs(o *replayOptions) map[string]string {
	return map[string]string{
		"from": o.from, "to": o.to, "link": o.link, "exchange": o.exchange, "kind": o.kind,
		"amqp": rabbit.Redact(o.amqpURL),
	}
}

// checkpointPath names the checkpoint after a hash of the arguments that
// select what is replayed, and where to.
func checkpointPath(dir string, o *replayOptions) string {
	if o.checkpoint != "" {
		return o.checkpoint
	}
	b, _ := json.Marshal(checkpointArgs(o)) // map keys are sorted
	sum := sha256.Sum256(b)
	return filepath.Join(dir, "replay-"+hex.EncodeToString(sum[:8])+".checkpoint")
}

func (r *replay) openCheckpoint() (*checkpointLedger, error) {
	l := &checkpointLedger{path: checkpointPath(filepath.Dir(r.path), r.opts), ok: map[uint64]bool{}}
	b, err := os.ReadFile(l.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("checkpoint: %w", err)
	case r.opts.restart:
		fmt.Fprintf(r.errw, "replay: -restart: ignoring the checkpoint %s\n", l.path)
	default:
		var f checkpointFile
		if err := json.Unmarshal(b, &f); err != nil || f.Version != 1 {
			return nil, fmt.Errorf("checkpoint %s is unreadable (%v); remove it or pass -restart", l.path, err)
		}
		l.file = f
		l.done, l.prefix = f.DoneSeq, f.DoneSeq
		r.from, r.to = f.From, f.To
		fmt.Fprintf(r.errw, "replay: resuming the replay started %s of [%s, %s) after seq %d (checkpoint %s; -restart starts over)\n",
			f.Started.Format(time.RFC3339), fmtRangeEnd(f.From), fmtRangeEnd(f.To), f.DoneSeq, l.path)
		return l, nil
	}
	l.file = checkpointFile{Version: 1, Args: checkpointArgs(r.opts), From: r.from, To: r.to, Started: r.start.UTC()}
	return l, nil
}

var _ outbox.ReplayLedger = (*checkpointLedger)(nil)

func (l *checkpointLedger) Published(seq uint64) { l.order = append(l.order, seq) }

func (l *checkpointLedger) Confirmed(seq uint64) error {
	l.ok[seq] = true
	l.pending++
	for len(l.order) > 0 && l.ok[l.order[0]] {
		delete(l.ok, l.order[0])
		l.prefix = l.order[0]
		l.order = l.order[1:]
	}
	return nil
}

func (l *checkpointLedger) Failed(uint64) { l.broken = true }

func (l *checkpointLedger) Unpersisted() int {
	if l.broken {
		return 0 // the prefix cannot pass the failure; no bound to keep
	}
	return l.pending
}

func (l *checkpointLedger) Persist() error {
	if l.prefix == l.done {
		return nil
	}
	l.file.DoneSeq = l.prefix
	l.file.Updated = time.Now().UTC()
	if err := writeFileAtomic(l.path, &l.file); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	l.done = l.prefix
	l.pending = len(l.ok) // confirmed, still above the prefix
	return nil
}

// finish removes the checkpoint of a complete replay, so that the same
// arguments later start a new one, and writes it otherwise.
func (l *checkpointLedger) Finish(complete bool) error {
	if complete {
		if err := os.Remove(l.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("checkpoint: %w", err)
		}
		return nil
	}
	return l.Persist()
}

// writeFileAtomic writes v as JSON to path through a temporary file,
// fsync and rename.
func writeFileAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ---- progress

type progress interface {
	add(n int)
	tick() // called about once a second while waiting
	finish()
}

func newProgress(mode string, w io.Writer, total int64) progress {
	if mode == "auto" {
		mode = "lines"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			mode = "bar"
		}
	}
	switch mode {
	case "bar":
		return &barProgress{bar: progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("replay"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("msg"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetWidth(30),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
		)}
	case "lines":
		now := time.Now()
		return &lineProgress{w: w, total: total, start: now, last: now}
	}
	return nopProgress{}
}

type barProgress struct{ bar *progressbar.ProgressBar }

func (p *barProgress) add(n int) { _ = p.bar.Add(n) }
func (p *barProgress) tick()     {}
func (p *barProgress) finish()   { _ = p.bar.Finish() }

// lineProgress prints a line every 2 s, for logs and pipes.
type lineProgress struct {
	w           io.Writer
	total, done int64
	start, last time.Time
}

func (p *lineProgress) add(n int) { p.done += int64(n); p.tick() }

func (p *lineProgress) tick() {
	now := time.Now()
	if now.Sub(p.last) < 2*time.Second {
		return
	}
	p.last = now
	p.print(now)
}

func (p *lineProgress) print(now time.Time) {
	el := now.Sub(p.start).Seconds()
	r := 0.0
	if el > 0 {
		r = float64(p.done) / el
	}
	eta := "?"
	if r > 0 && p.total >= p.done {
		eta = time.Duration(float64(p.total-p.done) / r * float64(time.Second)).Round(time.Second).String()
	}
	pct := 100.0
	if p.total > 0 {
		pct = 100 * float64(p.done) / float64(p.total)
	}
	fmt.Fprintf(p.w, "replay: %d/%d confirmed (%.1f%%), %.0f msg/s, eta %s\n", p.done, p.total, pct, r, eta)
}

func (p *lineProgress) finish() {
	if p.done > 0 || p.total > 0 {
		p.print(time.Now())
	}
}

type nopProgress struct{}

func (nopProgress) add(int) {}
func (nopProgress) tick()   {}
func (nopProgress) finish() {}
