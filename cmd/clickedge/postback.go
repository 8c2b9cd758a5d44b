package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/edge"
	"github.com/clickedge/clickedge/outbox/rabbit"
	"github.com/clickedge/clickedge/postback"
)

// Roles: what serve mounts on the public listener (node.roles).
const (
	roleEdge     = "edge"     // /r/{code} and /c/{code}
	rolePostback = "postback" // /postback
)

// PostbackConfig configures the postback role.
type PostbackConfig struct {
	Advertisers  string `yaml:"advertisers"`
	Exchange     string `yaml:"exchange"`
	DeclareQueue string `yaml:"declare_queue"`
	PublicURL    string `yaml:"public_url"`
}

// hasRole reports whether node.roles names role.
func (c *Config) hasRole(role string) bool { return slices.Contains(c.Node.Roles, role) }

// AdvertisersPath returns postback.advertisers resolved against the config
// file's directory, or "" for none.
func (c *Config) AdvertisersPath() string { return c.resolve(c.Postback.Advertisers) }

// checkPostback validates node.roles and the postback section.
func (c *Config) checkPostback() []problem {
	var ps []problem
	if len(c.Node.Roles) == 0 {
		ps = append(ps, problem{"node.roles", "must name at least one of edge and postback"})
	}
	for i, r := range c.Node.Roles {
		switch {
		case r != roleEdge && r != rolePostback:
			ps = append(ps, problem{fmt.Sprintf("node.roles[%d]", i), fmt.Sprintf("must be edge or postback, got %q", r)})
		case slices.Index(c.Node.Roles, r) != i:
			ps = append(ps, problem{fmt.Sprintf("node.roles[%d]", i), fmt.Sprintf("%q is listed twice", r)})
		}
	}
	if msg := checkAMQPName(c.Postback.Exchange); msg != "" {
		ps = append(ps, problem{"postback.exchange", msg})
	} else if c.Postback.Exchange == c.Forwarder.Exchange {
		ps = append(ps, problem{"postback.exchange", fmt.Sprintf("must differ from forwarder.exchange (%q): consumers tell clicks from actions by exchange", c.Forwarder.Exchange)})
	}
	if q := c.Postback.DeclareQueue; q != "" {
		if msg := checkAMQPName(q); msg != "" {
			ps = append(ps, problem{"postback.declare_queue", msg})
		}
	}
	if u := c.Postback.PublicURL; u != "" {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			ps = append(ps, problem{"postback.public_url", fmt.Sprintf("must be an http(s) URL such as https://pb.example.com, got %q", u)})
		}
	}
	return ps
}

func init() {
	fileChecks = append(fileChecks, fileCheck{"postback.advertisers", checkAdvertisersFile})
}

// checkAdvertisersFile loads postback.advertisers as serve would: only on
// a node with the postback role, every entry checked.
func checkAdvertisersFile(cfg *Config) error {
	_, err := loadRoleAdvertisers(cfg)
	return err
}

// loadAdvertisers loads postback.advertisers; none configured is an empty
// set (every postback 401).
func loadAdvertisers(cfg *Config) (*postback.Advertisers, error) {
	p := cfg.AdvertisersPath()
	if p == "" {
		return postback.ParseAdvertisers("(no postback.advertisers)", []byte("[]"))
	}
	return postback.LoadAdvertisers(p)
}

// postbackState is the postback role of a running node.
type postbackState struct {
	h                   *postback.Handler
	mu                  sync.Mutex // one advertisers reload at a time
	reloads, reloadErrs atomic.Uint64
}

// loadRoleAdvertisers loads the advertisers of a node with the postback
// role (nil without it), before anything is opened: a bad file stops the
// start with nothing left behind.
func loadRoleAdvertisers(cfg *Config) (*postback.Advertisers, error) {
	if !cfg.hasRole(rolePostback) {
		return nil, nil
	}
	return loadAdvertisers(cfg)
}

// startPostback builds the postback handler when the role is on, serving
// advs.
func (n *node) startPostback(advs *postback.Advertisers) error {
	if !n.cfg.hasRole(rolePostback) {
		return nil
	}
	pc := postback.DefaultConfig()
	pc.Region, pc.Node = n.cfg.Node.Region, n.cfg.Node.ID
	pc.Exchange = n.cfg.Postback.Exchange
	pc.Store = n.o
	pc.TrustedProxies = n.cfg.TrustedProxies()
	pc.Logger = n.log.With("component", "postback")
	h, err := postback.New(pc)
	if err != nil {
		return err
	}
	h.SetAdvertisers(advs)
	warnWeak(n.log, advs)
	if advs.Len() == 0 {
		n.log.Warn("postback role without advertisers: every postback is refused 401 (set postback.advertisers)")
	}
	n.pb = &postbackState{h: h}
	n.lostPb.Store(h)
	return nil
}

// reloadAdvertisers reloads postback.advertisers; a bad file is refused
// whole and the last good set keeps serving.
func (n *node) reloadAdvertisers() error {
	if n.pb == nil {
		return nil
	}
	n.pb.mu.Lock()
	defer n.pb.mu.Unlock()
	advs, err := loadAdvertisers(n.cfg)
	if err != nil {
		n.pb.reloadErrs.Add(1)
		n.log.Error("advertisers reload refused; the last good set keeps serving",
			"advertisers", n.pb.h.Advertisers().Len(), "err", err)
		return err
	}
	n.pb.h.SetAdvertisers(advs)
	n.pb.reloads.Add(1)
	n.log.Info("advertisers reloaded", "file", advs.Name(), "advertisers", advs.Len())
	warnWeak(n.log, advs)
	return nil
}

// reloadRoles is the admin reload: the catalog of an edge, the advertisers
// of a registration node.
func (n *node) reloadRoles() error { return n.reloadRolesAgain(false) }

// forceReloadRoles is reloadRoles that also loads a catalog with no links
// (POST /admin/catalog/reload?force=1).
func (n *node) forceReloadRoles() error { return n.reloadRolesAgain(true) }

func (n *node) reloadRolesAgain(force bool) error {
	var errs []error
	if n.cfg.hasRole(roleEdge) {
		errs = append(errs, n.loadCatalogAgain(force))
	}
	errs = append(errs, n.reloadAdvertisers())
	return errors.Join(errs...)
}

var (
	pbAdvertisersDesc = desc("postback_advertisers", "Advertisers in the set the postback role serves.")
	pbReloads         = desc("postback_advertisers_reloads_total", "Advertisers file reloads, by result (ok, refused).", "result")
)

// postbackCollector exports the advertisers set's size and reloads.
type postbackCollector struct{ pb *postbackState }

func (c *postbackCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pbAdvertisersDesc
	ch <- pbReloads
}

func (c *postbackCollector) Collect(ch chan<- prometheus.Metric) {
	gauge(ch, pbAdvertisersDesc, float64(c.pb.h.Advertisers().Len()))
	counter(ch, pbReloads, c.pb.reloads.Load(), "ok")
	counter(ch, pbReloads, c.pb.reloadErrs.Load(), "refused")
}

// postbackCollectors returns the role's collectors, none without it.
func (n *node) postbackCollectors() []prometheus.Collector {
	if n.pb == nil {
		return nil
	}
	return append(n.pb.h.Collectors(), &postbackCollector{pb: n.pb})
}

// postbackTopology has the forwarder declare the actions exchange (and the
// single-box queue) on connect, so consumers can bind before the first
// action.
func postbackTopology(cfg *Config, rc *rabbit.Config) {
	if !cfg.hasRole(rolePostback) {
		return
	}
	rc.Exchanges = append(rc.Exchanges, cfg.Postback.Exchange)
	if q := cfg.Postback.DeclareQueue; q != "" {
		rc.Queues = append(rc.Queues, rabbit.QueueBinding{Queue: q, Exchange: cfg.Postback.Exchange, Key: "action.#"})
	}
}

// notFound answers a path no role serves, as the edge does.
var notFound = []byte("not found\n")

// routeRoles is the public listener's handler for net/http: /postback to
// the postback role, the rest to the edge, each only if the node has the
// role.
func routeRoles(cfg *Config, srv *edge.Server, pb *postbackState) http.Handler {
	edgeOn := cfg.hasRole(roleEdge)
	if edgeOn && pb == nil {
		return srv
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/postback" && pb != nil:
			pb.h.ServeHTTP(w, r)
		case edgeOn:
			srv.ServeHTTP(w, r)
		default:
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusNotFound)
			w.Write(notFound)
		}
	})
}

// routeRolesFast is routeRoles for fasthttp; edgeHandler is the edge's.
func routeRolesFast(cfg *Config, edgeHandler fasthttp.RequestHandler, pb *postbackState) fasthttp.RequestHandler {
	edgeOn := cfg.hasRole(roleEdge)
	if edgeOn && pb == nil {
		return edgeHandler
	}
	return func(ctx *fasthttp.RequestCtx) {
		switch {
		case pb != nil && string(ctx.Path()) == "/postback":
			pb.h.ServeFast(ctx)
		case edgeOn:
			edgeHandler(ctx)
		default:
			ctx.Response.SetStatusCode(http.StatusNotFound)
			ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
			ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
			ctx.Response.Header.Set("Cache-Control", "no-store")
			ctx.Response.SetBody(notFound)
		}
	}
}

// ---- clickedge postback sign

func cmdPostback(args []string, stdout, stderr io.Writer, env []string) int {
	if len(args) == 0 || args[0] != "sign" {
		fmt.Fprintln(stderr, "usage: clickedge postback sign -config FILE -adv ID [-url URL] [-no-ts] key=value...")
		if len(args) == 0 {
			return 2
		}
		if h := args[0]; h == "-h" || h == "-help" || h == "--help" {
			return 0
		}
		return 2
	}
	return cmdPostbackSign(args[1:], stdout, stderr, env)
}

func postbackSignFlags(env []string) (*flag.FlagSet, *string, *string, *string, *bool) {
	fs := flag.NewFlagSet("postback sign", flag.ContinueOnError)
	config := fs.String("config", lookupEnv(env, "CLICKEDGE_CONFIG"), "configuration `file` naming postback.advertisers; default $CLICKEDGE_CONFIG")
	adv := fs.String("adv", "", "advertiser `id` whose secret signs (or whose token is added)")
	base := fs.String("url", "", "base `URL` of the registration service; default postback.public_url, else http://<http.listen>/postback")
	noTS := fs.Bool("no-ts", false, "do not add ts=<now> (give ts=... yourself)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: clickedge postback sign -config FILE -adv ID [-url URL] key=value...\n\n"+
			"Print a postback URL for advertiser ID: signed (ts and sig added) for an advertiser\n"+
			"with a secret, with token=... for one with a token. For support staff and tests;\n"+
			"docs/postbacks.md shows how advertisers sign themselves.\n\n"+
			"  clickedge postback sign -config clickedge.yaml -adv acme click_id=0192... order_id=A-1 amount=12.50 currency=EUR\n\nflags:\n")
		fs.PrintDefaults()
	}
	return fs, config, adv, base, noTS
}

func cmdPostbackSign(args []string, stdout, stderr io.Writer, env []string) int {
	fs, config, advID, base, noTS := postbackSignFlags(env)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *advID == "" {
		fmt.Fprintln(stderr, "clickedge postback sign: -adv is required")
		fs.Usage()
		return 2
	}
	ps := postback.Params{{Key: "adv", Value: *advID}}
	for _, kv := range fs.Args() {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			fmt.Fprintf(stderr, "clickedge postback sign: %q is not key=value\n", kv)
			return 2
		}
		if _, dup := ps.Get(k); dup {
			fmt.Fprintf(stderr, "clickedge postback sign: %s given twice\n", k)
			return 2
		}
		ps = append(ps, postback.Param{Key: k, Value: v})
	}
	cfg, err := LoadConfig(*config, env)
	if err != nil {
		printError(stderr, "clickedge postback sign: ", err)
		return 1
	}
	advs, err := loadAdvertisers(cfg)
	if err != nil {
		printError(stderr, "clickedge postback sign: ", err)
		return 1
	}
	adv := advs.Lookup(*advID)
	if adv == nil {
		fmt.Fprintf(stderr, "clickedge postback sign: advertiser %q is not in %s\n", *advID, advs.Name())
		return 1
	}
	u := *base
	if u == "" {
		u = cfg.Postback.PublicURL
	}
	if u == "" {
		host := cfg.HTTP.Listen
		if strings.HasPrefix(host, ":") {
			host = "127.0.0.1" + host
		}
		u = "http://" + host
	}
	if !strings.HasSuffix(u, "/postback") {
		u = strings.TrimSuffix(u, "/") + "/postback"
	}
	var query string
	if adv.Secret != nil {
		if _, ok := ps.Get("ts"); !ok && !*noTS {
			ps = append(ps, postback.Param{Key: "ts", Value: strconv.FormatInt(time.Now().Unix(), 10)})
		}
		query = postback.SignedQuery(adv.Secret, ps)
	} else {
		ps = append(ps, postback.Param{Key: "token", Value: adv.Token})
		query = postback.Canonical(ps)
	}
	fmt.Fprintf(stdout, "%s?%s\n", u, query)
	return 0
}

// warnWeak says which advertisers sign with a secret (or token) short
// enough to be brute-forced from one signed URL.
func warnWeak(log *slog.Logger, advs *postback.Advertisers) {
	if weak := advs.Weak(); len(weak) > 0 {
		log.Warn("postback advertisers with a secret or token under the recommended length; give them a longer one",
			"file", advs.Name(), "advertisers", weak, "min_bytes", postback.MinSecretBytes)
	}
}
