package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/catalog"
	"github.com/clickedge/clickedge/edge"
	"github.com/clickedge/clickedge/edge/device"
	"github.com/clickedge/clickedge/edge/geo"
	"github.com/clickedge/clickedge/outbox"
	"github.com/clickedge/clickedge/outbox/rabbit"
	"github.com/clickedge/clickedge/postback"
)

// demoCatalog serves when catalog.file is empty: `clickedge serve` with no
// configuration redirects something out of the box.
//
//go:embed demo-links.yaml
var demoCatalog []byte

// outboxFile is the outbox's name inside data_dir.
const outboxFile = "outbox.db"

// node is a running edge: everything serve starts, in the order it stops.
type node struct {
	cfg *Config
	log *slog.Logger

	o   *outbox.Outbox
	f   *outbox.Forwarder
	geo *geo.DB
	srv *edge.Server
	pb  *postbackState // nil without the postback role
	reg *prometheus.Registry
	lk  *links // the replicated catalog and its feed (links_cmd.go)

	limits *edge.Limits // both listeners' refusals and connections

	// What a failed start removes: the outbox file and the directories it
	// created, deepest first ("" and nil once the node is serving).
	createdOutbox  string
	createdCatalog string // the replicated catalog's directory
	createdDirs    []string
	// lostSrv is srv, for the outbox's OnLost and OnAsyncFate, and lostPb
	// the postback handler, for OnLost: they may run before these are set
	// and after stop began.
	lostSrv atomic.Pointer[edge.Server]
	lostPb  atomic.Pointer[postback.Handler]

	public              publicServer
	admin               *http.Server
	publicLn, adminLn   net.Listener
	stopping            atomic.Bool
	reloadMu            sync.Mutex // one catalog reload at a time
	reloads, reloadErrs atomic.Uint64
	lastReload          atomic.Int64 // unix seconds of the last good load

	clusterPart // cluster_cmd.go
}

// serve runs an edge node until SIGINT or SIGTERM. It returns the exit code.
func serve(cfg *Config, logger *slog.Logger, stderr io.Writer, signals <-chan os.Signal, ready func(n *node)) int {
	n, err := startNode(cfg, logger)
	if err != nil {
		logger.Error("clickedge cannot start", "err", err)
		// Also as plain text: this is what an operator reads first.
		printError(stderr, "clickedge serve: ", err)
		return 1
	}
	logger.Info("clickedge serving", "http", n.publicLn.Addr().String(), "http_server", cfg.HTTP.Server, "admin", n.adminLn.Addr().String(),
		"catalog", n.srv.Catalog().Name(), "catalog_version", n.srv.Catalog().Version(), "links", n.srv.Catalog().Len(),
		"outbox", n.o.Path(), "durability", cfg.Outbox.Durability)
	if ready != nil {
		ready(n)
	}
	for {
		select {
		case sig, ok := <-signals:
			if !ok {
				return n.stop()
			}
			if sig == syscall.SIGHUP {
				n.reload()
				continue
			}
			logger.Info("clickedge stopping", "signal", sig.String())
			return n.stop()
		case reply := <-n.drainReq:
			logger.Info("clickedge stopping", "signal", "drain (admin API)")
			n.drainReply = reply
			return n.stop()
		}
	}
}

// startNode opens everything and starts listening. On error, what was
// opened is closed again.
func startNode(cfg *Config, logger *slog.Logger) (_ *node, err error) {
	n := &node{cfg: cfg, log: logger}
	defer func() {
		if err != nil {
			n.closeAll()
			n.removeCreated()
		}
	}()
	device.Warm() // builds the user-agent trie now, not on the first click

	advs, err := loadRoleAdvertisers(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.GeoIPPath() != "" {
		n.geo, err = geo.Open(cfg.GeoIPPath(), &geo.Options{
			PollInterval: time.Duration(cfg.GeoIP.PollInterval),
			Logger:       logger.With("component", "geo"),
		})
		if err != nil {
			return nil, err
		}
	}

	// A start that fails removes what it created (harden #14): a typo in
	// http.listen must not leave an empty outbox and data_dir behind for
	// the tools to find.
	if err := mkdirAllTracked(cfg.DataDir, 0o750, &n.createdDirs); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	catDir := filepath.Join(cfg.DataDir, catalogDir)
	if _, err := os.Lstat(catDir); errors.Is(err, os.ErrNotExist) {
		n.createdCatalog = catDir
	}
	if n.lk, err = openLinks(cfg, logger); err != nil {
		return nil, err
	}
	obPath := filepath.Join(cfg.DataDir, outboxFile)
	if _, err := os.Lstat(obPath); errors.Is(err, os.ErrNotExist) {
		n.createdOutbox = obPath
	}
	oo := outboxOptions(cfg, logger)
	oo.OnLost = n.countLost
	oo.OnAsyncFate = n.countFate
	n.o, err = outbox.Open(obPath, oo)
	if err != nil {
		return nil, err
	}

	n.srv, err = edge.New(edgeConfig(cfg, n.o, n.geo, logger))
	if err != nil {
		return nil, err
	}
	n.lk.attach(n.srv, n.o)
	n.lostSrv.Store(n.srv)
	n.lastReload.Store(time.Now().Unix())
	if err := n.startPostback(advs); err != nil {
		return nil, err
	}

	pub, err := rabbit.New(rabbitConfig(cfg, logger))
	if err != nil {
		return nil, fmt.Errorf("forwarder: %w", err)
	}
	fc := outbox.DefaultForwarderConfig()
	fc.Publisher = pub
	fc.Window = cfg.Forwarder.Window
	fc.ConfirmTimeout = time.Duration(cfg.Forwarder.ConfirmTimeout)
	fc.ReconnectMin = time.Duration(cfg.Forwarder.ReconnectMin)
	fc.ReconnectMax = time.Duration(cfg.Forwarder.ReconnectMax)
	fc.RetryMax = time.Duration(cfg.Forwarder.RetryMax)
	fc.Logger = withNoRouteHint(logger.With("component", "forwarder"), cfg.Forwarder.Exchange)
	n.f, err = outbox.NewForwarder(n.o, fc)
	if err != nil {
		return nil, err
	}
	if err := n.lk.startFeed(); err != nil {
		return nil, err
	}

	n.reg = prometheus.NewRegistry()
	n.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newBuildInfo(),
		&outboxCollector{o: n.o},
		&forwarderCollector{f: n.f},
		&catalogCollector{n: n},
		&diskCollector{dir: cfg.DataDir}, // metrics_disk.go
		&linksCollector{l: n.lk},
	)
	if n.geo != nil {
		n.reg.MustRegister(&geoCollector{db: n.geo})
	}
	n.reg.MustRegister(n.srv.Collectors()...)
	n.limits = edge.NewLimits()
	n.reg.MustRegister(n.limits.Collectors()...)
	n.reg.MustRegister(n.postbackCollectors()...)

	if n.publicLn, err = net.Listen("tcp", cfg.HTTP.Listen); err != nil {
		return nil, fmt.Errorf("http.listen: %w", err)
	}
	if n.adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
		return nil, fmt.Errorf("admin.listen: %w", err)
	}
	if err := n.startCluster(); err != nil {
		return nil, err
	}
	n.public = newPublicServer(cfg, n.srv, n.pb, n.publicLn, n.limits, logger)
	n.admin = newAdminServer(reporterOf(logger).recoverHTTP(n.adminHandler(edge.NewAdmin(edge.AdminConfig{
		Gatherer:      n.reg,
		Token:         cfg.Admin.Token,
		Ready:         n.ready,
		OutboxStatus:  n.outboxStatus,
		ReloadCatalog: n.reloadRoles,
		Server:        n.srv,
		Status:        n.statusPage, // status.go
		Links:         n.lk.adminConfig(logger),

		ForceReloadCatalog: n.forceReloadRoles,
	}))), n.limits, logger)
	publicLn, adminLn := limitListeners(cfg, n.publicLn, n.adminLn, n.limits)
	go n.public.Serve(publicLn)
	go n.admin.Serve(adminLn)
	return n, nil
}

// loadCatalog loads catalog.file, or the embedded demo catalog when none is
// configured: a check of the file alone. serve itself seeds the replicated
// catalog from it (links_cmd.go).
func loadCatalog(cfg *Config) (*catalog.Catalog, error) {
	if p := cfg.CatalogPath(); p != "" {
		return catalog.Load(p)
	}
	return catalog.Parse("(embedded demo catalog)", demoCatalog)
}

func outboxOptions(cfg *Config, logger *slog.Logger) *outbox.Options {
	o := &outbox.Options{
		MaxBytes:      int64(cfg.Outbox.MaxBytes),
		Retention:     time.Duration(cfg.Outbox.Retention),
		FlushInterval: time.Duration(cfg.Outbox.FlushInterval),
		SpillBytes:    int(cfg.Outbox.SpillBytes),
		Log:           cfg.Outbox.WritePath == "log",
		Logger:        logger.With("component", "outbox"),
	}
	if o.Retention == 0 {
		o.Retention = -1 // retention: 0 means delete on delivery
	}
	if cfg.Outbox.OnError == "reject" {
		o.SpillBytes = -1
	}
	o.Durability, _ = outbox.ParseDurability(cfg.Outbox.Durability) // validated
	return o
}

func edgeConfig(cfg *Config, rec edge.Recorder, g *geo.DB, logger *slog.Logger) *edge.Config {
	ec := edge.DefaultConfig()
	ec.Region = cfg.Node.Region
	ec.Node = cfg.Node.ID
	ec.Exchange = cfg.Forwarder.Exchange
	ec.Recorder = rec
	ec.Geo = g
	ec.TrustedProxies = cfg.TrustedProxies()
	ec.OnRecordError, _ = edge.ParseRecordErrorPolicy(cfg.Outbox.OnError) // validated
	d, _ := outbox.ParseDurability(cfg.Outbox.Durability)                 // validated
	ec.CountOnFate = d == outbox.Async
	ec.BotClicks, _ = edge.ParseBotPolicy(cfg.HTTP.BotClicks)
	ec.Logger = logger.With("component", "edge")
	return ec
}

func rabbitConfig(cfg *Config, logger *slog.Logger) *rabbit.Config {
	rc := rabbit.DefaultConfig()
	rc.URLs = cfg.Forwarder.AMQPURLs
	rc.Exchange = cfg.Forwarder.Exchange
	rc.Heartbeat = time.Duration(cfg.Forwarder.Heartbeat)
	rc.DialTimeout = time.Duration(cfg.Forwarder.DialTimeout)
	rc.DeclareQueue = cfg.Forwarder.DeclareQueue
	rc.QueueType = cfg.Forwarder.QueueType
	rc.ConfirmBuffer = max(rc.ConfirmBuffer, cfg.Forwarder.Window)
	rc.ConnectionName = "clickedge " + cfg.Node.ID
	rc.Logger = logger.With("component", "rabbit")
	postbackTopology(cfg, rc)
	return rc
}

// ready is /readyz: the catalog is loaded and the outbox open. A broker is
// not needed: the edge serves without the centre.
func (n *node) ready() error {
	switch {
	case n.stopping.Load():
		return errors.New("shutting down")
	case n.srv.Catalog() == nil:
		return errors.New("no catalog loaded")
	}
	return nil
}

// outboxStatus is GET /admin/outbox.
func (n *node) outboxStatus() any {
	st := n.o.Status(n.f, time.Now())
	st.Node, st.Region = n.cfg.Node.ID, n.cfg.Node.Region
	return st
}

// reloadCatalog loads the catalog file again; a bad one is refused and the
// last good one keeps serving. So is a file with no links while links are
// serving (an emptied or truncated file is far likelier than an operator
// who means to stop every link): forceReloadCatalog loads it anyway.
func (n *node) reloadCatalog() error { return n.loadCatalogAgain(false) }

// forceReloadCatalog is reloadCatalog that also loads a catalog with no
// links (POST /admin/catalog/reload?force=1).
func (n *node) forceReloadCatalog() error { return n.loadCatalogAgain(true) }

func (n *node) loadCatalogAgain(force bool) error {
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	old := n.srv.Catalog()
	if err := n.lk.seed(false, force); err != nil {
		n.reloadErrs.Add(1)
		n.log.Error("catalog reload refused; the last good catalog keeps serving",
			"version", n.srv.Catalog().Version(), "err", err)
		return err
	}
	cat := n.srv.Catalog()
	n.reloads.Add(1)
	n.lastReload.Store(time.Now().Unix())
	n.log.Info("catalog reloaded", "file", cat.Name(), "version", cat.Version(), "links", cat.Len(),
		"previous_version", old.Version())
	return nil
}

// reload is SIGHUP: the catalog, the GeoIP database and the advertisers.
func (n *node) reload() {
	if n.cfg.hasRole(roleEdge) {
		_ = n.reloadCatalog()
	}
	_ = n.reloadAdvertisers()
	if n.geo != nil {
		if changed, err := n.geo.Reload(); err != nil {
			n.log.Error("geoip reload refused; the last good database keeps serving", "err", err)
		} else if changed {
			n.log.Info("geoip database reloaded", "file", n.cfg.GeoIPPath())
		}
	}
}

// stop shuts down in the order that loses nothing: stop accepting and
// finish the requests in flight (each answered click is in the outbox),
// commit the outbox, give the forwarder a deadline to publish and collect
// confirms, close the outbox, then the admin listener.
func (n *node) stop() int {
	n.stopping.Store(true)
	code := 0
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.public.Shutdown(ctx); err != nil {
		n.log.Error("public listener did not drain", "err", err)
		code = 1
	}
	if err := n.o.Sync(); err != nil {
		n.log.Error("outbox flush failed", "err", err)
		code = 1
	}
	fctx, fcancel := context.WithTimeout(context.Background(), time.Duration(n.cfg.Forwarder.ShutdownTimeout))
	defer fcancel()
	_ = n.f.Close(fctx)
	n.f = nil
	ho := n.handOff()
	if ho.Code != 0 || n.drainReply != nil && ho.Pending+int64(ho.Spilled) > 0 {
		code = 1 // a drain promises exit 0 only with nothing pending
	}
	n.leaveCluster()
	if err := n.o.Close(); err != nil {
		n.log.Error("outbox close failed", "err", err)
		code = 1
	}
	st := n.o.Stats() // after Close, which counts what it could not keep
	n.o = nil
	if n.drainReply != nil {
		ho.Code, ho.Pending, ho.Spilled = code, st.Pending, st.Spill.Records
		n.drainReply <- ho
	}
	actx, acancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer acancel()
	_ = n.admin.Shutdown(actx)
	n.admin = nil
	n.closeAll()
	n.log.Info("clickedge stopped", "pending", st.Pending, "spill_unsent", st.Spill.Records, "dropped", st.Spill.Dropped)
	return code
}

// countLost is the outbox's OnLost: records lost after they were answered
// are counted under their own kind, told by exchange. Clicks in
// clickedge_clicks_total{outcome="dropped"}, actions in
// clickedge_postbacks_dropped_total; each role ignores the other's. Records
// of neither (the links feed) are in
// clickedge_outbox_spill_dropped_records_total and the outbox's log line,
// by exchange. A peer's records taken over in a hand-off are never among
// them: they are committed before the hand-off is acknowledged.
func (n *node) countLost(r *outbox.Record, k int) {
	if s := n.lostSrv.Load(); s != nil {
		s.CountLost(r, k)
	}
	if h := n.lostPb.Load(); h != nil {
		h.CountLost(r, k)
	}
}

// countFate is the outbox's OnAsyncFate: in Async mode a click is counted
// once its fate is known (edge/lost.go).
func (n *node) countFate(r *outbox.Record, f outbox.Fate, k int) {
	if s := n.lostSrv.Load(); s != nil {
		s.CountFate(r, f, k)
	}
}

// closeAll closes whatever is still open; for failed starts and the end of
// stop.
func (n *node) closeAll() {
	if n.public != nil {
		n.public.Close()
	}
	if n.publicLn != nil {
		n.publicLn.Close()
	}
	if n.admin != nil {
		n.admin.Close()
	} else if n.adminLn != nil {
		n.adminLn.Close()
	}
	if n.f != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		n.f.Close(ctx)
		cancel()
	}
	if n.o != nil {
		n.o.Close()
	}
	if n.geo != nil {
		n.geo.Close()
	}
	n.leaveCluster() // before the store it pulls into closes
	n.lk.close()
	n.lk = nil
}

// publicServer is the public listener's HTTP server, net/http or fasthttp
// (http.server).
type publicServer interface {
	Serve(net.Listener) error
	// Shutdown stops accepting, lets the requests in flight finish and
	// closes idle connections, or gives up when ctx ends.
	Shutdown(ctx context.Context) error
	// Close closes the listener and the connections without waiting for
	// requests in flight; for failed starts.
	Close() error
}

// newPublicServer builds the public listener's server for ln.
func newPublicServer(cfg *Config, srv *edge.Server, pb *postbackState, ln net.Listener, lim *edge.Limits, logger *slog.Logger) publicServer {
	maxBody := publicMaxBody
	if pb != nil {
		maxBody = max(maxBody, postback.MaxQueryBytes) // form-encoded POSTs
	}
	if cfg.HTTP.Server == "net" {
		return &http.Server{
			Handler: edge.LimitHTTP(reporterOf(logger).recoverHTTP(accessLog(routeRoles(cfg, srv, pb), cfg.Log.AccessSample, logger)), edge.HTTPLimits{
				Name:           edge.ListenerPublic,
				MaxHeaderCount: cfg.HTTP.MaxHeaderCount,
				MaxBody:        int64(maxBody),
				Limits:         lim,
			}),
			ReadHeaderTimeout: time.Duration(cfg.HTTP.ReadHeaderTimeout),
			ReadTimeout:       time.Duration(cfg.HTTP.ReadHeaderTimeout),
			WriteTimeout:      publicWriteTimeout,
			IdleTimeout:       time.Duration(cfg.HTTP.IdleTimeout),
			MaxHeaderBytes:    int(cfg.HTTP.MaxHeaderBytes),
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
	}
	fs := srv.FastServer(edge.FastOptions{
		ReadTimeout:    time.Duration(cfg.HTTP.ReadHeaderTimeout),
		IdleTimeout:    time.Duration(cfg.HTTP.IdleTimeout),
		MaxHeaderBytes: int(cfg.HTTP.MaxHeaderBytes),
		MaxHeaderCount: cfg.HTTP.MaxHeaderCount,
		Concurrency:    cfg.HTTP.MaxConnections,
		Limits:         lim,
		Logger:         logger,
	})
	fs.MaxRequestBodySize = max(fs.MaxRequestBodySize, maxBody)
	fs.Handler = reporterOf(logger).recoverFast(fastAccessLog(routeRolesFast(cfg, fs.Handler, pb), cfg.Log.AccessSample, logger))
	return &fastPublic{srv: fs, ln: ln}
}

// fastPublic adapts a fasthttp.Server to publicServer.
type fastPublic struct {
	srv *fasthttp.Server
	ln  net.Listener
}

func (f *fastPublic) Serve(ln net.Listener) error { return f.srv.Serve(ln) }

func (f *fastPublic) Shutdown(ctx context.Context) error {
	// Closed here as well: fasthttp only closes the listeners its Serve
	// has registered, and Serve may not have got that far yet.
	f.ln.Close()
	err := f.srv.ShutdownWithContext(ctx)
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (f *fastPublic) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return f.Shutdown(ctx)
}

// fastAccessLog is accessLog for fasthttp.
func fastAccessLog(h fasthttp.RequestHandler, sample float64, logger *slog.Logger) fasthttp.RequestHandler {
	if sample <= 0 {
		return h
	}
	return func(ctx *fasthttp.RequestCtx) {
		if rand.Float64() >= sample {
			h(ctx)
			return
		}
		start := time.Now()
		// Copies: ctx's buffers are reused once the answer is written.
		method, path, ua := string(ctx.Method()), string(ctx.Path()), string(ctx.UserAgent())
		h(ctx)
		logger.Info("access", "method", method, "path", path, "status", ctx.Response.StatusCode(),
			"duration_us", time.Since(start).Microseconds(), "ua", ua)
	}
}

// accessLog logs a sample of public requests. With sample 0 it returns h
// itself: no cost on the hot path.
func accessLog(h http.Handler, sample float64, logger *slog.Logger) http.Handler {
	if sample <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rand.Float64() >= sample {
			h.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		logger.Info("access", "method", r.Method, "path", r.URL.Path, "status", sw.status,
			"duration_us", time.Since(start).Microseconds(), "ua", r.UserAgent())
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}
