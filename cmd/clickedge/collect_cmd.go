package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"regexp"
	"runtime/debug"
	"slices"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clickedge/clickedge/collect"
)

// CollectorConfig configures `clickedge collect`, the central consumer
// into PostgreSQL (docs/collector.md). serve ignores it.
type CollectorConfig struct {
	DatabaseURL     string   `yaml:"database_url"`
	AMQPURLs        []string `yaml:"amqp_urls"`
	QueueType       string   `yaml:"queue_type"`
	BatchSize       int      `yaml:"batch_size"`
	BatchInterval   Duration `yaml:"batch_interval"`
	Writers         int      `yaml:"writers"`
	MetricsListen   string   `yaml:"metrics_listen"`
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
}

const maxCollectorBatch = 50000

// check validates the collector section. database_url may be empty here
// (serve has no use for it); collect insists on it.
func (cc *CollectorConfig) check() []problem {
	var ps []problem
	bad := func(key, format string, args ...any) {
		ps = append(ps, problem{key, fmt.Sprintf(format, args...)})
	}
	if cc.DatabaseURL != "" {
		if _, err := pgx.ParseConfig(cc.DatabaseURL); err != nil {
			// pgx's message quotes nothing of the URL's password.
			bad("collector.database_url", "invalid: %s", redactDSN(err.Error()))
		}
	}
	for i, s := range cc.AMQPURLs {
		if msg := checkAMQPURL(s); msg != "" {
			bad(fmt.Sprintf("collector.amqp_urls[%d]", i), "%s", msg)
		}
	}
	if !slices.Contains([]string{"quorum", "classic"}, cc.QueueType) {
		bad("collector.queue_type", "must be quorum or classic, got %q", cc.QueueType)
	}
	if cc.BatchSize < 1 || cc.BatchSize > maxCollectorBatch {
		bad("collector.batch_size", "must be between 1 and %d, got %d", maxCollectorBatch, cc.BatchSize)
	}
	if cc.BatchInterval <= 0 {
		bad("collector.batch_interval", "must be > 0, got %s", cc.BatchInterval)
	}
	if cc.Writers < 1 || cc.Writers > 16 {
		bad("collector.writers", "must be between 1 and 16, got %d", cc.Writers)
	}
	if msg := checkListen(cc.MetricsListen); msg != "" {
		bad("collector.metrics_listen", "%s", msg)
	}
	if cc.ShutdownTimeout <= 0 {
		bad("collector.shutdown_timeout", "must be > 0, got %s", cc.ShutdownTimeout)
	}
	return ps
}

// redacted returns a copy with the passwords in its URLs hidden.
func (cc CollectorConfig) redacted() CollectorConfig {
	cc.DatabaseURL = redactDSN(cc.DatabaseURL)
	urls := make([]string, len(cc.AMQPURLs))
	for i, s := range cc.AMQPURLs {
		urls[i] = redactURL(s)
	}
	cc.AMQPURLs = urls
	return cc
}

var dsnPasswordRe = regexp.MustCompile(`(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// redactDSN hides the password of a libpq URL or key=value string.
func redactDSN(s string) string {
	if s == "" {
		return s
	}
	if dsnPasswordRe.MatchString(s) {
		s = dsnPasswordRe.ReplaceAllString(s, "${1}"+redactedSecret)
	}
	if u := redactURL(s); u != s {
		return u
	}
	return s
}

// amqpURLs returns collector.amqp_urls, or forwarder.amqp_urls when empty.
func (c *Config) collectorAMQPURLs() []string {
	if len(c.Collector.AMQPURLs) > 0 {
		return c.Collector.AMQPURLs
	}
	return c.Forwarder.AMQPURLs
}

func collectFlags(env []string) (*flag.FlagSet, *serveOptions) {
	o := new(serveOptions)
	fs := flag.NewFlagSet("collect", flag.ContinueOnError)
	fs.StringVar(&o.config, "config", lookupEnv(env, "CLICKEDGE_CONFIG"),
		"configuration `file`; default $CLICKEDGE_CONFIG, else the embedded defaults")
	fs.BoolVar(&o.printConfig, "print-config", false,
		"print the effective configuration (secrets redacted) as YAML and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: clickedge collect [-config FILE] [-print-config]\n\n"+
			"Consume clicks and actions from the central RabbitMQ into PostgreSQL\n"+
			"(collector.* keys; docs/collector.md). Every key can be overridden by a\n"+
			"CLICKEDGE_* environment variable.\n\nflags:\n")
		fs.PrintDefaults()
	}
	return fs, o
}

func cmdCollect(args []string, stdout, stderr io.Writer, env []string) int {
	fs, o := collectFlags(env)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "clickedge collect: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	cfg, err := LoadConfig(o.config, env)
	if err != nil {
		printError(stderr, "clickedge collect: ", err)
		return 1
	}
	if o.printConfig {
		b, err := cfg.Redacted().YAML()
		if err != nil {
			printError(stderr, "clickedge collect: print config: ", err)
			return 1
		}
		stdout.Write(b)
		return 0
	}
	if cfg.Collector.DatabaseURL == "" {
		fmt.Fprintln(stderr, "clickedge collect: collector.database_url: must be set (a libpq URL, e.g. postgres://clickedge@db/clickedge; or CLICKEDGE_COLLECTOR_DATABASE_URL)")
		return 1
	}
	logger := newLogger(stderr, cfg.Log.SlogLevel())
	// As in serve: a small live heap and an allocation per field of every
	// message; at GOGC=100 the garbage collector costs a tenth of the CPU
	// (docs/performance.md). GOGC in the environment still wins.
	if lookupEnv(env, "GOGC") == "" {
		debug.SetGCPercent(400)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	return runCollector(ctx, cfg, logger, stderr, nil)
}

// runCollector runs the collector until ctx ends; ready, if set, is called
// with the metrics listener's address once it listens.
func runCollector(ctx context.Context, cfg *Config, logger *slog.Logger, stderr io.Writer, ready func(addr string)) int {
	logger = logger.With("component", "collect")
	source := cfg.Path()
	if source == "" {
		source = "(embedded defaults)"
	}
	logger.Info("clickedge collect starting", "version", versionString(), "config", source,
		"database", redactDSN(cfg.Collector.DatabaseURL), "queue_type", cfg.Collector.QueueType,
		"batch_size", cfg.Collector.BatchSize, "batch_interval", cfg.Collector.BatchInterval.String(),
		"writers", cfg.Collector.Writers)

	store, err := collect.NewStore(collect.StoreConfig{DatabaseURL: cfg.Collector.DatabaseURL, Logger: logger})
	if err != nil {
		printError(stderr, "clickedge collect: ", fmt.Errorf("collector.database_url: %s", redactDSN(err.Error())))
		return 1
	}
	cc := collect.DefaultConfig()
	cc.URLs = cfg.collectorAMQPURLs()
	cc.QueueType = cfg.Collector.QueueType
	cc.BatchSize = cfg.Collector.BatchSize
	cc.BatchInterval = time.Duration(cfg.Collector.BatchInterval)
	cc.Writers = cfg.Collector.Writers
	cc.Heartbeat = time.Duration(cfg.Forwarder.Heartbeat)
	cc.DialTimeout = time.Duration(cfg.Forwarder.DialTimeout)
	cc.RetryMin = time.Duration(cfg.Forwarder.ReconnectMin)
	cc.RetryMax = time.Duration(cfg.Forwarder.ReconnectMax)
	cc.ShutdownTimeout = time.Duration(cfg.Collector.ShutdownTimeout)
	cc.ConnectionName = "clickedge collect " + cfg.Node.ID
	cc.Store = store
	cc.Logger = logger
	col, err := collect.New(cc)
	if err != nil {
		printError(stderr, "clickedge collect: ", err)
		return 1
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newBuildInfo(),
		&collectCollector{c: col},
	)
	ln, err := net.Listen("tcp", cfg.Collector.MetricsListen)
	if err != nil {
		printError(stderr, "clickedge collect: ", fmt.Errorf("collector.metrics_listen: %w", err))
		return 1
	}
	srv := &http.Server{
		Handler:           collectorMux(reg, col),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	go srv.Serve(ln)
	if ready != nil {
		ready(ln.Addr().String())
	}
	logger.Info("clickedge collect running", "metrics", ln.Addr().String())

	err = col.Run(ctx)
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	s := col.Stats()
	logger.Info("clickedge collect stopped", "clicks", s.Clicks, "click_duplicates", s.ClickDuplicates,
		"actions", s.Actions, "action_duplicates", s.ActionDuplicates, "dead_lettered", s.DeadLettered)
	if err != nil {
		printError(stderr, "clickedge collect: ", err)
		return 1
	}
	return 0
}

// collectorMux serves /metrics, /healthz (the process is up) and /readyz
// (connected to the broker and the last database write, or connect,
// succeeded).
func collectorMux(reg *prometheus.Registry, col *collect.Collector) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		s := col.Stats()
		switch {
		case !s.Connected:
			http.Error(w, "not connected to the broker", http.StatusServiceUnavailable)
		case !s.DatabaseUp:
			http.Error(w, "database not reachable (or not yet written to)", http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, "ready")
		}
	})
	return mux
}

var (
	colRows      = desc("collect_rows_inserted_total", "Rows inserted into PostgreSQL, by table.", "table")
	colDups      = desc("collect_duplicates_total", "Messages whose row was already there (redeliveries, republished duplicates), by table.", "table")
	colBatch     = desc("collect_batch_duration_seconds", "Batch latency: first message received to batch acked.")
	colDead      = desc("collect_dead_lettered_total", "Poison messages published to collector.dead, by reason.", "reason")
	colLag       = desc("collect_lag_seconds", "Age of the oldest message received and not yet acked; 0 when none is held.")
	colConnected = desc("collect_broker_connected", "1 while a broker session is open.")
	colDBUp      = desc("collect_database_up", "1 while the last database write (or connect) succeeded.")
	colBatches   = desc("collect_batches_total", "Batches committed and acked.")
	colWriteErrs = desc("collect_write_errors_total", "Failed batch writes (each retried; nothing acked).")
	colSessions  = desc("collect_broker_sessions_total", "Broker sessions opened.")
)

var deadReasons = []collect.Reason{collect.ReasonNotJSON, collect.ReasonUnknownVersion,
	collect.ReasonMissingID, collect.ReasonMalformedID, collect.ReasonBadField, collect.ReasonRefused}

type collectCollector struct{ c *collect.Collector }

func (cc *collectCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{colRows, colDups, colBatch, colDead, colLag, colConnected,
		colDBUp, colBatches, colWriteErrs, colSessions} {
		ch <- d
	}
}

func (cc *collectCollector) Collect(ch chan<- prometheus.Metric) {
	s := cc.c.Stats()
	counter(ch, colRows, s.Clicks, "clicks")
	counter(ch, colRows, s.Actions, "actions")
	counter(ch, colDups, s.ClickDuplicates, "clicks")
	counter(ch, colDups, s.ActionDuplicates, "actions")
	for _, r := range deadReasons {
		counter(ch, colDead, s.DeadByReason[r], string(r))
	}
	gauge(ch, colLag, s.Lag(time.Now()).Seconds())
	gauge(ch, colConnected, boolf(s.Connected))
	gauge(ch, colDBUp, boolf(s.DatabaseUp))
	counter(ch, colBatches, s.Batches)
	counter(ch, colWriteErrs, s.WriteErrors)
	counter(ch, colSessions, s.Sessions)
	h := s.BatchDuration
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum uint64
	for i, b := range h.Bounds {
		cum += h.Counts[i]
		buckets[b] = cum
	}
	ch <- prometheus.MustNewConstHistogram(colBatch, h.Count, h.Sum, buckets)
}
