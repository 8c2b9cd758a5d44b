package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickedge/clickedge/catalog"
	"github.com/clickedge/clickedge/edge"
	"github.com/clickedge/clickedge/outbox"
)

// LinksConfig is the links section: link management and the central feed.
type LinksConfig struct {
	Exchange       string   `yaml:"exchange"`
	StreamQueue    string   `yaml:"stream_queue"`
	StreamMaxBytes ByteSize `yaml:"stream_max_bytes"`
	Feed           string   `yaml:"feed"`
	WriteRate      float64  `yaml:"write_rate"`
	WriteBurst     int      `yaml:"write_burst"`
	EmptyFile      string   `yaml:"empty_file"`
}

func (c *LinksConfig) check() []problem {
	var ps []problem
	for key, name := range map[string]string{"links.exchange": c.Exchange, "links.stream_queue": c.StreamQueue} {
		if msg := checkAMQPName(name); msg != "" {
			ps = append(ps, problem{key, msg})
		}
	}
	if c.StreamMaxBytes < 1<<20 {
		ps = append(ps, problem{"links.stream_max_bytes", fmt.Sprintf("must be at least 1MiB, got %s", c.StreamMaxBytes)})
	}
	if c.Feed != "consume" && c.Feed != "off" {
		ps = append(ps, problem{"links.feed", fmt.Sprintf("must be consume or off, got %q", c.Feed)})
	}
	if c.EmptyFile != "refuse" && c.EmptyFile != "allow" {
		ps = append(ps, problem{"links.empty_file", fmt.Sprintf("must be refuse or allow, got %q", c.EmptyFile)})
	}
	if c.WriteRate <= 0 {
		ps = append(ps, problem{"links.write_rate", fmt.Sprintf("must be > 0, got %v", c.WriteRate)})
	}
	if c.WriteBurst < 1 {
		ps = append(ps, problem{"links.write_burst", fmt.Sprintf("must be >= 1, got %d", c.WriteBurst)})
	}
	return ps
}

// catalogDir is the replicated catalog's directory under data_dir.
const catalogDir = "catalog"

// demoMtime versions the embedded demo catalog: old, so any real write wins.
var demoMtime = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// links is a node's replicated catalog, its feed and what publishes its
// changes.
type links struct {
	cfg   *Config
	log   *slog.Logger
	store *catalog.Store
	feed  *catalog.Feed

	mu     sync.Mutex // guards srv and o, set once the node has them
	srv    *edge.Server
	o      *outbox.Outbox
	pubErr uint64
}

// openLinks opens the persisted catalog and seeds it from catalog.file (or
// the demo catalog). A restarted node serves what it persisted even when
// the file is gone; a file that exists must be valid.
func openLinks(cfg *Config, logger *slog.Logger) (*links, error) {
	l := &links{cfg: cfg, log: logger.With("component", "catalog")}
	dir := filepath.Join(cfg.DataDir, catalogDir)
	st, err := catalog.Open(dir, &catalog.Options{
		Node:     cfg.Node.ID,
		Logger:   l.log,
		OnChange: l.changed,
	})
	if err != nil {
		return nil, err
	}
	l.store = st
	if err := l.seed(true); err != nil {
		st.Close()
		return nil, err
	}
	return l, nil
}

// seed loads catalog.file into the store. At start, a missing file is
// fine when the store already holds links.
func (l *links) seed(start bool) error {
	p := l.cfg.CatalogPath()
	if p == "" {
		_, err := l.store.Seed("(embedded demo catalog)", demoCatalog, demoMtime, false)
		return err
	}
	data, err := os.ReadFile(p)
	if err != nil {
		if n, _ := l.store.Counts(); start && errors.Is(err, os.ErrNotExist) && n > 0 {
			l.log.Warn("catalog.file is missing; serving the persisted catalog", "file", p, "links", n)
			return nil
		}
		return fmt.Errorf("catalog: %w", err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	res, err := l.store.Seed(p, data, fi.ModTime(), l.cfg.Links.EmptyFile == "allow")
	if errors.Is(err, catalog.ErrEmptySeed) {
		return fmt.Errorf("%s: %w; set links.empty_file: allow to empty it on purpose", p, err)
	}
	if err != nil {
		return err
	}
	l.log.Info("catalog.file loaded", "file", p, "links", res.Links, "applied", res.Applied, "stale", res.Stale, "deleted", res.Deleted)
	return nil
}

// attach gives the links the server to update and the outbox to publish
// through.
func (l *links) attach(srv *edge.Server, o *outbox.Outbox) {
	l.mu.Lock()
	l.srv, l.o = srv, o
	l.mu.Unlock()
	srv.SetCatalog(l.store.Catalog())
}

// changed is the store's OnChange: serve the new snapshot; publish this
// node's own changes to the feed, through the outbox, so a change accepted
// while the centre is away is delivered later. Called with the store's
// lock held, never concurrently.
func (l *links) changed(es []catalog.Entry, src catalog.Source) {
	l.mu.Lock()
	srv, o := l.srv, l.o
	l.mu.Unlock()
	if srv != nil {
		srv.SetCatalog(l.store.Catalog())
	}
	if src != catalog.SourceAPI || o == nil {
		return
	}
	// Records are capped (outbox.DefaultMaxRecordBytes): a big bulk goes
	// as several messages.
	batches, err := catalog.EncodeFeedBatches(l.cfg.Node.ID, es, outbox.DefaultMaxRecordBytes/2)
	for _, b := range batches {
		if err != nil {
			break
		}
		err = o.Append(&outbox.Record{
			Exchange:   l.cfg.Links.Exchange,
			RoutingKey: catalog.FeedRoutingKey,
			MessageID:  catalog.FeedMessageID(l.cfg.Node.ID, b.Entries),
			Headers: []outbox.Header{{Key: "region", Value: l.cfg.Node.Region}, {Key: "node", Value: l.cfg.Node.ID},
				{Key: "schema", Value: int64(catalog.FeedSchema)}},
			Body: b.Body,
		})
	}
	if err != nil {
		l.mu.Lock()
		l.pubErr++
		l.mu.Unlock()
		l.log.Error("catalog: change applied here but not queued for the feed; peers get it by anti-entropy", "entries", len(es), "err", err)
	}
}

// startFeed consumes the central links feed.
func (l *links) startFeed() error {
	if l.cfg.Links.Feed == "off" {
		return nil
	}
	fc := catalog.DefaultFeedConfig()
	fc.URLs = l.cfg.Forwarder.AMQPURLs
	fc.Exchange = l.cfg.Links.Exchange
	fc.Queue = l.cfg.Links.StreamQueue
	fc.MaxBytes = int64(l.cfg.Links.StreamMaxBytes)
	fc.OffsetFile = filepath.Join(l.cfg.DataDir, catalogDir, "feed-offset")
	fc.Store = l.store
	fc.DialTimeout = time.Duration(l.cfg.Forwarder.DialTimeout)
	fc.ConnectionName = "clickedge links feed " + l.cfg.Node.ID
	fc.Logger = l.log.With("component", "links-feed")
	f, err := catalog.StartFeed(fc)
	if err != nil {
		return err
	}
	l.feed = f
	return nil
}

// adminConfig is the link management API's configuration.
func (l *links) adminConfig(logger *slog.Logger) *edge.LinksConfig {
	return &edge.LinksConfig{
		Store:      l.store,
		WriteRate:  l.cfg.Links.WriteRate,
		WriteBurst: l.cfg.Links.WriteBurst,
		Logger:     logger.With("component", "links-admin"),
	}
}

// close stops the feed and closes the store; safe to call twice.
func (l *links) close() {
	if l == nil {
		return
	}
	if l.feed != nil {
		l.feed.Close()
	}
	l.store.Close()
}

var (
	linksTombs   = desc("catalog_tombstones", "Tombstones (deleted links) the replicated catalog keeps.")
	linksVersion = desc("catalog_version_timestamp_seconds", "The wall-clock part of the catalog's highest version (HLC), in seconds.")
	linksChanges = desc("catalog_changes_total", "Changes offered to the catalog, by source and result.", "source", "result")
	linksFeed    = desc("catalog_feed_connected", "1 while the links feed is consuming.")
)

type linksCollector struct{ l *links }

func (c *linksCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- linksTombs
	ch <- linksVersion
	ch <- linksChanges
	ch <- linksFeed
}

func (c *linksCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.l.store
	_, tombs := st.Counts()
	gauge(ch, linksTombs, float64(tombs))
	gauge(ch, linksVersion, float64(st.Version()>>16)/1000)
	for _, src := range []catalog.Source{catalog.SourceAPI, catalog.SourceFeed, catalog.SourceFile, catalog.SourceCluster} {
		for _, r := range []catalog.Result{catalog.Applied, catalog.Stale, catalog.Invalid} {
			counter(ch, linksChanges, st.Changes(src, r), src.String(), r.String())
		}
	}
	gauge(ch, linksFeed, boolf(c.l.feed != nil && c.l.feed.Connected()))
}

// cmdLinks is `clickedge links validate|trace|push|export`.
func cmdLinks(args []string, stdout, stderr io.Writer, env []string) int {
	if len(args) == 0 {
		linksUsage(stderr)
		return 2
	}
	switch args[0] {
	case "validate":
		return linksValidate(args[1:], stdout, stderr)
	case "trace":
		return linksTrace(args[1:], stdout, stderr)
	case "push":
		return linksPush(args[1:], stdout, stderr, env)
	case "export":
		return linksExport(args[1:], stdout, stderr, env)
	case "import":
		return linksImport(args[1:], stdout, stderr, env)
	case "-h", "-help", "--help", "help":
		linksUsage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "clickedge links: unknown subcommand %q\n\n", args[0])
	linksUsage(stderr)
	return 2
}

func linksUsage(w io.Writer) {
	fmt.Fprint(w, `usage: clickedge links <subcommand> ...

  validate FILE                      check a catalog file; every error with line, link and field; exit 1 if any
  trace FILE CODE [name=value ...]   route a request through a link of FILE, e.g. country=DE device=mobile hour=23
                                     (also: subdivision city os browser lang bot weekday ip edge_region param.NAME rnd)
  push [-config CFG] FILE            upsert every link of FILE on every node through the links feed; exit 0 once
                                     the broker has confirmed (deletes nothing)
  import [-config CFG] [-admin URL] [-token T] FILE
                                     upsert every link of FILE through one node's admin API (bulk requests of
                                     1000 links, each atomic); the node publishes them to the feed
  export [-config CFG] [-admin URL] [-o FILE]
                                     write a node's live links as a catalog file (JSON), for validate and push
`)
}

func linksFlags(name string, env []string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("links "+name, flag.ContinueOnError)
	cfg := fs.String("config", lookupEnv(env, "CLICKEDGE_CONFIG"), "configuration `file`; default $CLICKEDGE_CONFIG, else the embedded defaults")
	return fs, cfg
}

func linksValidate(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: clickedge links validate FILE")
		return 2
	}
	data, err := os.ReadFile(args[0])
	if err != nil {
		fmt.Fprintf(stderr, "clickedge links validate: %v\n", err)
		return 1
	}
	if err := catalog.Validate(args[0], data); err != nil {
		printError(stderr, "", err)
		return 1
	}
	c, err := catalog.Parse(args[0], data)
	if err != nil {
		printError(stderr, "", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %d links, valid\n", args[0], c.Len())
	return 0
}

func linksTrace(args []string, stdout, stderr io.Writer) int {
	if len(args) < 2 {
		fmt.Fprintln(stderr, "usage: clickedge links trace FILE CODE [name=value ...]")
		return 2
	}
	c, err := catalog.Load(args[0])
	if err != nil {
		printError(stderr, "", err)
		return 1
	}
	l := c.Lookup(args[1])
	if l == nil {
		fmt.Fprintf(stderr, "clickedge links trace: %s has no link %q\n", args[0], args[1])
		return 1
	}
	q := url.Values{}
	for _, kv := range args[2:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			fmt.Fprintf(stderr, "clickedge links trace: %q: want name=value\n", kv)
			return 2
		}
		q.Set(k, v)
	}
	f, err := catalog.FactsFromQuery(q, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "clickedge links trace: %v\n", err)
		return 2
	}
	var rnd uint64
	if s := q.Get("rnd"); s != "" {
		if _, err := fmt.Sscan(s, &rnd); err != nil {
			fmt.Fprintf(stderr, "clickedge links trace: rnd %q: want an unsigned integer\n", s)
			return 2
		}
	} else {
		rnd = uint64(time.Now().UnixNano()) * 0x9E3779B97F4A7C15
	}
	out, _ := json.MarshalIndent(l.Trace(f, rnd), "", "  ")
	fmt.Fprintf(stdout, "%s\n", out)
	return 0
}

// pushClock versions pushed links: the wall clock, and a counter past it
// for the links of one push.
func pushEntries(specs []catalog.LinkSpec, node string, now time.Time) ([]catalog.Entry, error) {
	hlc := uint64(now.UnixMilli()) << 16
	es := make([]catalog.Entry, len(specs))
	for i := range specs {
		b, err := json.Marshal(&specs[i])
		if err != nil {
			return nil, err
		}
		es[i] = catalog.Entry{Code: specs[i].Code, HLC: hlc + uint64(i), Node: node, Link: b}
	}
	return es, nil
}

func linksPush(args []string, stdout, stderr io.Writer, env []string) int {
	fs, cfgPath := linksFlags("push", env)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: clickedge links push [-config CFG] FILE")
		return 2
	}
	cfg, err := LoadConfig(*cfgPath, env)
	if err != nil {
		printError(stderr, "clickedge links push: ", err)
		return 2
	}
	file := fs.Arg(0)
	data, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintf(stderr, "clickedge links push: %v\n", err)
		return 1
	}
	specs, err := catalog.ParseSpecs(file, data)
	if err != nil {
		printError(stderr, "", err)
		return 1
	}
	// The writer names the pusher, so its versions never tie with the
	// node's own.
	es, err := pushEntries(specs, "push."+cfg.Node.ID, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "clickedge links push: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := catalog.Push(ctx, cfg.Forwarder.AMQPURLs, cfg.Links.Exchange, cfg.Links.StreamQueue,
		int64(cfg.Links.StreamMaxBytes), "push."+cfg.Node.ID, es, 500); err != nil {
		fmt.Fprintf(stderr, "clickedge links push: %v\n", redactURL(err.Error()))
		return 1
	}
	fmt.Fprintf(stdout, "pushed %d links from %s to exchange %q (confirmed)\n", len(es), file, cfg.Links.Exchange)
	return 0
}

// adminBase is -admin, or http:// + admin.listen of the config.
func adminBase(admin, cfgPath string, env []string) (string, *Config, error) {
	cfg, err := LoadConfig(cfgPath, env)
	if admin != "" {
		return admin, cfg, nil
	}
	if err != nil {
		return "", nil, err
	}
	host := cfg.Admin.Listen
	if strings.HasPrefix(host, ":") || strings.HasPrefix(host, "0.0.0.0:") {
		host = "127.0.0.1" + host[strings.LastIndex(host, ":"):]
	}
	return "http://" + host, cfg, nil
}

func linksImport(args []string, stdout, stderr io.Writer, env []string) int {
	fs, cfgPath := linksFlags("import", env)
	fs.SetOutput(stderr)
	admin := fs.String("admin", "", "admin `URL` of the node; default http:// + admin.listen of -config")
	token := fs.String("token", lookupEnv(env, "CLICKEDGE_ADMIN_TOKEN"), "admin `token`; default $CLICKEDGE_ADMIN_TOKEN, else admin.token of -config")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: clickedge links import [-config CFG] [-admin URL] [-token T] FILE")
		return 2
	}
	base, cfg, err := adminBase(*admin, *cfgPath, env)
	if err != nil {
		printError(stderr, "clickedge links import: ", err)
		return 2
	}
	if *token == "" && cfg != nil {
		*token = cfg.Admin.Token
	}
	data, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "clickedge links import: %v\n", err)
		return 1
	}
	specs, err := catalog.ParseSpecs(fs.Arg(0), data)
	if err != nil {
		printError(stderr, "", err)
		return 1
	}
	client := &http.Client{Timeout: time.Minute}
	for start := 0; start < len(specs); start += 1000 {
		body, _ := json.Marshal(map[string]any{"upsert": specs[start:min(start+1000, len(specs))]})
		req, _ := http.NewRequest(http.MethodPost, strings.TrimRight(base, "/")+"/admin/links/bulk", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+*token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			fmt.Fprintf(stderr, "clickedge links import: %v\n", err)
			return 1
		}
		answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			fmt.Fprintf(stderr, "clickedge links import: links %d..%d: %s: %s\n", start, min(start+1000, len(specs))-1, resp.Status, bytes.TrimSpace(answer))
			return 1
		}
	}
	fmt.Fprintf(stdout, "imported %d links from %s into %s\n", len(specs), fs.Arg(0), base)
	return 0
}

func linksExport(args []string, stdout, stderr io.Writer, env []string) int {
	fs, cfgPath := linksFlags("export", env)
	fs.SetOutput(stderr)
	admin := fs.String("admin", "", "admin `URL` of the node to export from; default http:// + admin.listen of -config")
	out := fs.String("o", "", "write to `file` instead of stdout")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: clickedge links export [-config CFG] [-admin URL] [-o FILE]")
		return 2
	}
	base, _, err := adminBase(*admin, *cfgPath, env)
	if err != nil {
		printError(stderr, "clickedge links export: ", err)
		return 2
	}
	var buf bytes.Buffer
	if err := exportLinks(base, &buf); err != nil {
		fmt.Fprintf(stderr, "clickedge links export: %v\n", err)
		return 1
	}
	if *out == "" {
		stdout.Write(buf.Bytes())
		return 0
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		fmt.Fprintf(stderr, "clickedge links export: %v\n", err)
		return 1
	}
	return 0
}

// exportLinks pages through GET /admin/links and writes a catalog file.
func exportLinks(base string, w io.Writer) error {
	client := &http.Client{Timeout: 30 * time.Second}
	io.WriteString(w, "{\"links\": [\n")
	after, n := "", 0
	for {
		resp, err := client.Get(strings.TrimRight(base, "/") + "/admin/links?limit=5000&after=" + url.QueryEscape(after))
		if err != nil {
			return err
		}
		var page struct {
			Links []json.RawMessage `json:"links"`
			Next  string            `json:"next"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /admin/links: %s", resp.Status)
		}
		if err != nil {
			return fmt.Errorf("GET /admin/links: %w", err)
		}
		for _, l := range page.Links {
			if n > 0 {
				io.WriteString(w, ",\n")
			}
			var c bytes.Buffer
			json.Compact(&c, l)
			io.WriteString(w, "  ")
			w.Write(c.Bytes())
			n++
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	_, err := io.WriteString(w, "\n]}\n")
	return err
}
