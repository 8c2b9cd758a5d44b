package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickedge/clickedge/catalog"
	"github.com/clickedge/clickedge/cluster"
	"github.com/clickedge/clickedge/edge"
	"github.com/clickedge/clickedge/internal/bearer"
	"github.com/clickedge/clickedge/outbox"
)

// ClusterConfig is the cluster section: the region's memberlist pool.
type ClusterConfig struct {
	Bind        string   `yaml:"bind"`
	Advertise   string   `yaml:"advertise"`
	Join        []string `yaml:"join"`
	KeyringFile string   `yaml:"keyring_file"`
}

// Enabled reports whether the node joins a pool: cluster.bind is set.
func (c ClusterConfig) Enabled() bool { return c.Bind != "" }

// KeyringPath returns cluster.keyring_file resolved against the config
// file's directory, or "".
func (c *Config) KeyringPath() string { return c.resolve(c.Cluster.KeyringFile) }

func init() {
	fileChecks = append(fileChecks, fileCheck{"cluster.keyring_file", checkKeyringFile})
	statusHooks = append(statusHooks, clusterStatus)
}

// clusterStatus lists the region's pool on the status page, as this node
// sees it (cluster.Members: a lock, no network). Without a cluster the
// page says the node runs alone.
func clusterStatus(n *node, s *edge.Status) {
	if n.cl == nil {
		return
	}
	for _, m := range n.cl.Members() {
		s.Members = append(s.Members, edge.StatusMember{
			Name: m.Name, Addr: m.Addr, State: m.State, Roles: strings.Join(m.Roles, ","),
			OutboxPending:   m.Live.OutboxPending,
			OutboxOldestAge: time.Duration(m.Live.OutboxOldestAgeSeconds * float64(time.Second)),
			Forwarder:       m.Live.Forwarder,
			CatalogVersion:  m.Live.CatalogVersion,
			Age:             time.Duration(m.AgeSeconds * float64(time.Second)),
		})
	}
}

// checkKeyringFile loads cluster.keyring_file as serve would (when
// cluster.bind is set), joining nothing.
func checkKeyringFile(cfg *Config) error {
	p := cfg.KeyringPath()
	if !cfg.Cluster.Enabled() || p == "" {
		return nil
	}
	_, err := cluster.LoadKeyring(p)
	return err
}

// check validates the cluster section.
func (cc ClusterConfig) check() []problem {
	var ps []problem
	if !cc.Enabled() {
		return nil
	}
	if msg := checkListen(cc.Bind); msg != "" {
		ps = append(ps, problem{"cluster.bind", msg})
	} else if h, _, _ := net.SplitHostPort(cc.Bind); !loopbackHost(h) && cc.KeyringFile == "" {
		ps = append(ps, problem{"cluster.keyring_file", fmt.Sprintf(
			"required: gossip on the non-loopback cluster.bind %q must be encrypted (a JSON array of base64 AES keys)", cc.Bind)})
	}
	if cc.Advertise != "" {
		if msg := checkListen(cc.Advertise); msg != "" {
			ps = append(ps, problem{"cluster.advertise", msg})
		} else if h, p, _ := net.SplitHostPort(cc.Advertise); h == "" || h == "0.0.0.0" || h == "::" || p == "0" {
			ps = append(ps, problem{"cluster.advertise", fmt.Sprintf("must be an address peers can reach, got %q", cc.Advertise)})
		}
	}
	for i, s := range cc.Join {
		if _, p, err := net.SplitHostPort(s); err != nil || p == "" {
			ps = append(ps, problem{fmt.Sprintf("cluster.join[%d]", i), fmt.Sprintf("must be host:port, got %q", s)})
		}
	}
	return ps
}

// loopbackHost reports whether a listen host is a loopback address; the
// wildcards ("", 0.0.0.0, ::) are not.
func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// clusterPart is the node's cluster state (a field group of node).
type clusterPart struct {
	cl          *cluster.Cluster // nil when cluster.bind is empty; set once, before serving
	clusterHTTP http.Handler     // cl's endpoints
	// drainReq carries POST /admin/drain to serve's loop; the reply
	// channel gets the outcome from stop, before the admin listener
	// closes.
	drainReq   chan chan drainResult
	drainReply chan drainResult
}

// startCluster joins the region's pool when cluster.bind is set, and
// registers the cluster metrics either way (they exist from start). It
// runs once the listeners are bound (the metadata names them) and before
// they serve.
func (n *node) startCluster() error {
	n.drainReq = make(chan chan drainResult)
	n.reg.MustRegister(&clusterCollector{n: n})
	cfg := n.cfg
	if !cfg.Cluster.Enabled() {
		return nil
	}
	cc := cluster.DefaultConfig()
	cc.Name, cc.Region = cfg.Node.ID, cfg.Node.Region
	cc.Bind, cc.Advertise, cc.Join = cfg.Cluster.Bind, cfg.Cluster.Advertise, cfg.Cluster.Join
	if p := cfg.KeyringPath(); p != "" {
		kr, err := cluster.LoadKeyring(p)
		if err != nil {
			return fmt.Errorf("cluster.keyring_file: %w", err)
		}
		cc.Keyring = kr
	}
	cc.Meta = cluster.Meta{
		Region:  cfg.Node.Region,
		Roles:   nodeRoles(cfg),
		Version: version,
		Public:  n.publicLn.Addr().String(),
		Admin:   n.adminLn.Addr().String(),
	}
	o, f := n.o, n.f
	cc.Live = func() cluster.Live { // the catalog fields come from cc.Catalog
		st := o.Stats()
		return cluster.Live{
			OutboxPending:          st.Pending,
			OutboxOldestAgeSeconds: st.OldestPendingAge(time.Now()).Seconds(),
			Forwarder:              forwarderState(f.Stats()),
		}
	}
	cc.Catalog = replicatedCatalog(n)
	cc.Outbox = n.o
	cc.Logger = n.log.With("component", "cluster")
	if h, _, _ := net.SplitHostPort(cfg.Cluster.Bind); !loopbackHost(h) {
		if ah, _, _ := net.SplitHostPort(cfg.Admin.Listen); loopbackHost(ah) {
			n.log.Warn("cluster.bind is reachable from other hosts but admin.listen is loopback: peers cannot pull the catalog from this node or hand their outbox to it (they call the admin listener)",
				"cluster.bind", cfg.Cluster.Bind, "admin.listen", cfg.Admin.Listen)
		}
	}
	cl, err := cluster.Create(cc)
	if errors.Is(err, cluster.ErrNoKeyring) {
		return fmt.Errorf("cluster.keyring_file: %w", err)
	}
	if err != nil {
		return fmt.Errorf("cluster.bind: %w", err)
	}
	n.cl = cl
	n.clusterHTTP = cl.Handler(cfg.Admin.Token)
	return nil
}

// replicatedCatalog is the node's replicated catalog as anti-entropy sees
// it.
func replicatedCatalog(n *node) cluster.Catalog { return storeCatalog{n.lk.store} }

// storeCatalog adapts catalog.Store to cluster.Catalog; the Store is
// thread-safe, and so is the adapter.
type storeCatalog struct{ s *catalog.Store }

var _ cluster.Catalog = storeCatalog{}

func (c storeCatalog) Digest() string  { return c.s.Digest() }
func (c storeCatalog) Version() uint64 { return c.s.Version() }

func (c storeCatalog) Entries(after string, limit int) ([]cluster.Entry, error) {
	es, _ := c.s.Entries(after, limit)
	out := make([]cluster.Entry, len(es))
	for i, e := range es {
		out[i] = cluster.Entry{Code: e.Code, Version: e.HLC, Node: e.Node, Deleted: e.Deleted, Link: e.Link}
	}
	return out, nil
}

// Merge offers a peer's entries as SourceCluster changes: applied ones are
// served at once and not published to the feed again (the writer did).
func (c storeCatalog) Merge(es []cluster.Entry) (int, error) {
	in := make([]catalog.Entry, len(es))
	for i, e := range es {
		in[i] = catalog.Entry{Code: e.Code, HLC: e.Version, Node: e.Node, Deleted: e.Deleted, Link: e.Link}
	}
	return c.s.Merge(in, catalog.SourceCluster)
}

// nodeRoles is what the node serves, for the cluster metadata.
func nodeRoles(cfg *Config) []string { return slices.Clone(cfg.Node.Roles) }

// forwarderState names the forwarder's state for the live state.
func forwarderState(s outbox.ForwarderStats) string {
	switch {
	case !s.Connected:
		return "disconnected"
	case s.Blocked:
		return "blocked"
	case s.Retrying:
		return "retrying"
	}
	return "connected"
}

// adminHandler mounts the cluster's endpoints and /admin/drain beside the
// edge's admin handler.
func (n *node) adminHandler(edgeAdmin http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", edgeAdmin)
	clusterRoutes := func(w http.ResponseWriter, r *http.Request) {
		if n.cl == nil {
			writeAdminJSON(w, http.StatusNotFound, map[string]string{"error": "cluster is not enabled on this node (cluster.bind is empty)"})
			return
		}
		n.clusterHTTP.ServeHTTP(w, r)
	}
	mux.HandleFunc("/admin/cluster", clusterRoutes)
	mux.HandleFunc("/admin/cluster/", clusterRoutes)
	mux.HandleFunc("/cluster/", clusterRoutes)
	mux.HandleFunc("POST /admin/drain", n.serveDrain)
	return mux
}

// drainResult is the answer of POST /admin/drain and the end of stop.
type drainResult struct {
	Node    string   `json:"node"`
	Code    int      `json:"exit_code"`
	Sent    int      `json:"handed_off"`
	Peers   []string `json:"peers"`
	Pending int64    `json:"pending"`
	Spilled int      `json:"spilled"`
	Error   string   `json:"error,omitempty"`
}

// serveDrain is POST /admin/drain: the node stops as on SIGTERM (hand-off
// included) and answers with the outcome before its admin listener
// closes. Needs the token.
func (n *node) serveDrain(w http.ResponseWriter, r *http.Request) {
	if !cluster.RequireToken(bearer.New(n.cfg.Admin.Token), w, r) {
		return
	}
	reply := make(chan drainResult, 1)
	select {
	case n.drainReq <- reply:
	default:
		writeAdminJSON(w, http.StatusConflict, map[string]string{"error": "the node is already stopping"})
		return
	}
	res := <-reply
	status := http.StatusOK
	if res.Code != 0 {
		status = http.StatusServiceUnavailable
	}
	writeAdminJSON(w, status, res)
}

func writeAdminJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// handOff runs at stop, after the forwarder stopped: whatever it could not
// deliver goes to a live peer of the region. It returns the outcome; exit
// code 1 when records remain.
func (n *node) handOff() drainResult {
	res := drainResult{Node: n.cfg.Node.ID, Peers: []string{}}
	st := n.o.Stats()
	res.Pending, res.Spilled = st.Pending, st.Spill.Records
	if n.cl == nil || res.Pending+int64(res.Spilled) == 0 {
		return res
	}
	n.log.Info("forwarder stopped with records pending; handing them to a peer", "pending", res.Pending, "spilled", res.Spilled)
	ctx, cancel := context.WithTimeout(context.Background(), handoffTimeout)
	defer cancel()
	start := time.Now()
	hr, err := n.cl.HandOff(ctx, n.o)
	res.Sent, res.Pending, res.Spilled = hr.Sent, hr.Pending, hr.Spilled
	res.Peers = append(res.Peers, hr.Peers...)
	if err != nil {
		res.Code, res.Error = 1, err.Error()
		n.log.Error("hand-off incomplete: this node keeps its outbox; start it again (it delivers once the centre is back, or hands off at its next stop), or replay it (docs/runbook.md)",
			"handed_off", hr.Sent, "peers", hr.Peers, "pending", hr.Pending, "spilled", hr.Spilled, "err", err)
		return res
	}
	n.log.Info("hand-off complete", "handed_off", hr.Sent, "peers", hr.Peers, "duration_ms", time.Since(start).Milliseconds())
	return res
}

// handoffTimeout bounds a hand-off at stop.
const handoffTimeout = 10 * time.Minute

// leaveCluster tells the pool this node leaves, and stops gossip. Safe to
// call twice. n.cl stays set (it is never reassigned after start, so the
// metrics and admin handlers read it without a lock); its member view
// stays readable after Shutdown.
func (n *node) leaveCluster() {
	if n.cl == nil {
		return
	}
	if err := n.cl.Leave(2 * time.Second); err != nil {
		n.log.Warn("cluster leave not confirmed", "err", err)
	}
	n.cl.Shutdown()
}

// clusterCollector exports the node's view of its pool.
type clusterCollector struct{ n *node }

var (
	clMembers      = desc("cluster_members", "Members of this node's pool by state, as this node sees them (itself included).", "state")
	clPeerPending  = desc("cluster_peer_outbox_pending", "Pending outbox records of each peer, from its gossiped live state.", "peer")
	clPeerAge      = desc("cluster_peer_state_age_seconds", "Age of each peer's live state as this node holds it.", "peer")
	clHandoff      = desc("cluster_handoff_records_total", "Outbox records handed to peers (sent, acked by them) or taken from peers (received, committed here).", "direction")
	clCatalogPulls = desc("cluster_catalog_pulls_total", "Anti-entropy pulls of a peer's catalog, by result.", "result")
	clCatalogFull  = desc("cluster_catalog_full_pulls_total", "Anti-entropy pulls that read every entry of the peer (the first from each peer, and the backstop).")
	clCatalogEnts  = desc("cluster_catalog_pulled_entries_total", "Catalog entries received from peers by anti-entropy.")
)

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{clMembers, clPeerPending, clPeerAge, clHandoff, clCatalogPulls, clCatalogFull, clCatalogEnts} {
		ch <- d
	}
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]int{}
	var st cluster.Stats
	if cl := c.n.cl; cl != nil {
		for _, m := range cl.Members() {
			counts[m.State]++
			if m.Name == cl.Name() {
				continue
			}
			gauge(ch, clPeerPending, float64(m.Live.OutboxPending), m.Name)
			gauge(ch, clPeerAge, m.AgeSeconds, m.Name)
		}
		st = cl.Stats()
	}
	for _, s := range cluster.States {
		gauge(ch, clMembers, float64(counts[s]), s)
	}
	counter(ch, clHandoff, st.HandoffSent, "sent")
	counter(ch, clHandoff, st.HandoffReceived, "received")
	counter(ch, clCatalogPulls, st.CatalogPulls, "ok")
	counter(ch, clCatalogPulls, st.PullErrors, "error")
	counter(ch, clCatalogFull, st.CatalogFull)
	counter(ch, clCatalogEnts, st.CatalogEntries)
}

// ---- CLI: clickedge cluster ... and clickedge drain ----

// adminFlags are the flags every admin client command takes.
type adminFlags struct {
	admin, token, config string
}

func (a *adminFlags) register(fs *flag.FlagSet, env []string) {
	fs.StringVar(&a.admin, "admin", "", "admin `URL` of a node; default: admin.listen of -config")
	fs.StringVar(&a.token, "token", "", "admin `token`; default $CLICKEDGE_ADMIN_TOKEN, else the config's admin.token")
	fs.StringVar(&a.config, "config", lookupEnv(env, "CLICKEDGE_CONFIG"), "configuration `file` naming admin.listen; default $CLICKEDGE_CONFIG")
}

// resolve fills the admin URL and token from the config and environment.
func (a *adminFlags) resolve(env []string) error {
	if a.token == "" {
		a.token = lookupEnv(env, "CLICKEDGE_ADMIN_TOKEN")
	}
	if a.admin != "" && a.token != "" {
		return a.normalise()
	}
	cfg, err := LoadConfig(a.config, env)
	if err != nil {
		return err
	}
	if a.token == "" {
		a.token = cfg.Admin.Token
	}
	if a.admin == "" {
		h, p, _ := net.SplitHostPort(cfg.Admin.Listen)
		if h == "" || h == "0.0.0.0" || h == "::" {
			h = "127.0.0.1"
		}
		a.admin = net.JoinHostPort(h, p)
	}
	return a.normalise()
}

func (a *adminFlags) normalise() error {
	if !strings.Contains(a.admin, "://") {
		a.admin = "http://" + a.admin
	}
	a.admin = strings.TrimRight(a.admin, "/")
	return nil
}

// request calls the admin API and decodes a JSON answer into out; it
// returns the HTTP status.
func (a *adminFlags) request(method, path string, in, out any, timeout time.Duration) (int, error) {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = strings.NewReader(string(b))
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, a.admin+path, body)
	if err != nil {
		return 0, err
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err := json.Unmarshal(b, out); err != nil || resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusNotFound {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return resp.StatusCode, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, msg)
	}
	return resp.StatusCode, nil
}

const clusterUsage = `usage: clickedge cluster <command> [flags]

commands:
  members [-json]              every member with state, age and live state
  keys list                    the keyring of every live member
  keys install|use|remove KEY  change the keyring on every live member

Rotate keys with install (everywhere), then use, then remove the old key;
run a step again until no member fails.

flags:
`

func clusterFlags(env []string) (*flag.FlagSet, *adminFlags, *bool) {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	a := &adminFlags{}
	a.register(fs, env)
	asJSON := fs.Bool("json", false, "members: print the JSON of GET /admin/cluster")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), clusterUsage)
		fs.PrintDefaults()
	}
	return fs, a, asJSON
}

// parseInterleaved parses flags that may come after positional arguments
// (`cluster keys install KEY -admin URL`).
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func cmdCluster(args []string, stdout, stderr io.Writer, env []string) int {
	fs, a, asJSON := clusterFlags(env)
	fs.SetOutput(stderr)
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	usage := func(msg string) int {
		fmt.Fprintf(stderr, "clickedge cluster: %s\n\n", msg)
		fs.Usage()
		return 2
	}
	if len(pos) == 0 {
		return usage("missing command")
	}
	if err := a.resolve(env); err != nil {
		printError(stderr, "clickedge cluster: ", err)
		return 1
	}
	switch {
	case pos[0] == "members" && len(pos) == 1:
		return clusterMembers(a, *asJSON, stdout, stderr)
	case pos[0] == "keys" && len(pos) == 2 && pos[1] == "list":
		return clusterKeys(a, "list", "", stdout, stderr)
	case pos[0] == "keys" && len(pos) == 3 && (pos[1] == "install" || pos[1] == "use" || pos[1] == "remove"):
		if _, err := cluster.ParseKey(pos[2]); err != nil {
			fmt.Fprintf(stderr, "clickedge cluster keys %s: %v\n", pos[1], err)
			return 2
		}
		return clusterKeys(a, pos[1], pos[2], stdout, stderr)
	}
	return usage(fmt.Sprintf("unknown command %q", strings.Join(pos, " ")))
}

type membersAnswer struct {
	Members []cluster.Member `json:"members"`
}

func clusterMembers(a *adminFlags, asJSON bool, stdout, stderr io.Writer) int {
	var ans membersAnswer
	if _, err := a.request(http.MethodGet, "/admin/cluster", nil, &ans, 10*time.Second); err != nil {
		printError(stderr, "clickedge cluster members: ", err)
		return 1
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(ans)
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tAGE\tADDR\tROLES\tVERSION\tPENDING\tOLDEST\tFORWARDER\tCATALOG")
	for _, m := range ans.Members {
		digest := m.Live.CatalogDigest
		if len(digest) > 12 {
			digest = digest[:12]
		}
		cat := m.Live.CatalogVersion
		if digest != "" {
			cat += " " + digest
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", m.Name, m.State, humanAge(m.AgeSeconds), m.Addr,
			strings.Join(m.Roles, ","), m.Version, m.Live.OutboxPending, humanAge(m.Live.OutboxOldestAgeSeconds), m.Live.Forwarder, cat)
	}
	tw.Flush()
	return 0
}

func humanAge(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Minute:
		return strconv.FormatFloat(s, 'f', 1, 64) + "s"
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}

func clusterKeys(a *adminFlags, op, key string, stdout, stderr io.Writer) int {
	var rep cluster.KeyReport
	var status int
	var err error
	if op == "list" {
		status, err = a.request(http.MethodGet, "/admin/cluster/keys", nil, &rep, time.Minute)
	} else {
		status, err = a.request(http.MethodPost, "/admin/cluster/keys", map[string]string{"op": op, "key": key}, &rep, time.Minute)
	}
	if err != nil {
		printError(stderr, "clickedge cluster keys "+op+": ", err)
		return 1
	}
	if op == "list" {
		printKeyList(stdout, rep)
	} else {
		for _, m := range rep.Members {
			if m.OK {
				fmt.Fprintf(stdout, "%s: ok (primary %s, %d keys)\n", m.Name, cluster.KeyFingerprint(m.Primary), len(m.Keys))
			}
		}
	}
	for _, m := range rep.Members {
		if !m.OK {
			fmt.Fprintf(stderr, "clickedge cluster keys %s: member %s failed: %s\n", op, m.Name, m.Error)
		}
	}
	if len(rep.Failed) > 0 || status != http.StatusOK {
		fmt.Fprintf(stderr, "clickedge cluster keys %s: failed on %d of %d members: %s\n", op, len(rep.Failed), len(rep.Members), strings.Join(rep.Failed, ", "))
		return 1
	}
	return 0
}

// printKeyList prints each key with how many members hold it and use it.
func printKeyList(w io.Writer, rep cluster.KeyReport) {
	type count struct{ installed, primary int }
	counts := map[string]*count{}
	ok := 0
	for _, m := range rep.Members {
		if !m.OK {
			continue
		}
		ok++
		for _, k := range m.Keys {
			if counts[k] == nil {
				counts[k] = &count{}
			}
			counts[k].installed++
			if k == m.Primary {
				counts[k].primary++
			}
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return counts[keys[i]].primary > counts[keys[j]].primary || keys[i] < keys[j] && counts[keys[i]].primary == counts[keys[j]].primary
	})
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tFINGERPRINT\tINSTALLED\tPRIMARY")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d/%d\n", k, cluster.KeyFingerprint(k), counts[k].installed, ok, counts[k].primary, ok)
	}
	tw.Flush()
}

func drainFlags(env []string) (*flag.FlagSet, *adminFlags) {
	fs := flag.NewFlagSet("drain", flag.ContinueOnError)
	a := &adminFlags{}
	a.register(fs, env)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: clickedge drain [-admin URL] [-token T] [-config FILE]\n\n"+
			"Stop a running node as SIGTERM does: stop taking clicks, deliver what the\n"+
			"forwarder can, hand the rest to a live peer of the region (cluster), and exit.\n"+
			"Exits 0 only when the node stopped with nothing pending.\n\nflags:\n")
		fs.PrintDefaults()
	}
	return fs, a
}

func cmdDrain(args []string, stdout, stderr io.Writer, env []string) int {
	fs, a := drainFlags(env)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "clickedge drain: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := a.resolve(env); err != nil {
		printError(stderr, "clickedge drain: ", err)
		return 1
	}
	var res drainResult
	if _, err := a.request(http.MethodPost, "/admin/drain", nil, &res, handoffTimeout+time.Minute); err != nil {
		printError(stderr, "clickedge drain: ", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: handed off %d records to %v; %d pending, %d spilled left\n",
		res.Node, res.Sent, res.Peers, res.Pending, res.Spilled)
	if res.Code != 0 || res.Pending != 0 || res.Spilled != 0 {
		if res.Error != "" {
			fmt.Fprintf(stderr, "clickedge drain: %s\n", res.Error)
		}
		fmt.Fprintf(stderr, "clickedge drain: %s still holds %d records; it keeps them in its outbox\n", res.Node, res.Pending+int64(res.Spilled))
		return 1
	}
	return 0
}
