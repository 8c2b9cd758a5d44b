package main

import (
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/goccy/go-yaml"
)

// defaultYAML is both the built-in configuration and its reference: every
// key, its default and its meaning. A test keeps it complete.
//
//go:embed default.yaml
var defaultYAML []byte

// Config is a node's configuration: default.yaml, overlaid by the config
// file, overlaid by CLICKEDGE_* environment variables. Field order is the
// order of default.yaml and of -print-config.
type Config struct {
	Node      NodeConfig      `yaml:"node"`
	HTTP      HTTPConfig      `yaml:"http"`
	Admin     AdminConfig     `yaml:"admin"`
	DataDir   string          `yaml:"data_dir"`
	Outbox    OutboxConfig    `yaml:"outbox"`
	Forwarder ForwarderConfig `yaml:"forwarder"`
	Catalog   CatalogConfig   `yaml:"catalog"`
	Links     LinksConfig     `yaml:"links"`
	GeoIP     GeoIPConfig     `yaml:"geoip"`
	Log       LogConfig       `yaml:"log"`
	Collector CollectorConfig `yaml:"collector"` // collect_cmd.go
	Sentry    SentryConfig    `yaml:"sentry"`
	Cluster   ClusterConfig   `yaml:"cluster"`
	Postback  PostbackConfig  `yaml:"postback"`

	path string // the file loaded; "" for the embedded defaults alone
}

// NodeConfig names the node.
type NodeConfig struct {
	ID     string   `yaml:"id"`
	Region string   `yaml:"region"`
	Roles  []string `yaml:"roles"`
}

// HTTPConfig configures the public listener.
type HTTPConfig struct {
	Listen            string   `yaml:"listen"`
	Server            string   `yaml:"server"`
	TrustedProxies    []string `yaml:"trusted_proxies"`
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	IdleTimeout       Duration `yaml:"idle_timeout"`
	MaxHeaderBytes    ByteSize `yaml:"max_header_bytes"`
	MaxHeaderCount    int      `yaml:"max_header_count"`
	MaxConnections    int      `yaml:"max_connections"`
	BotClicks         string   `yaml:"bot_clicks"`
}

// AdminConfig configures the admin listener. After LoadConfig, Token holds
// the token whether it came from the file, the environment or TokenFile.
type AdminConfig struct {
	Listen    string `yaml:"listen"`
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
}

// OutboxConfig configures the durable outbox.
type OutboxConfig struct {
	Durability    string   `yaml:"durability"`
	MaxBytes      ByteSize `yaml:"max_bytes"`
	Retention     Duration `yaml:"retention"`
	FlushInterval Duration `yaml:"flush_interval"`
	OnError       string   `yaml:"on_error"`
	SpillBytes    ByteSize `yaml:"spill_bytes"`
	WritePath     string   `yaml:"write_path"`
}

// ForwarderConfig configures delivery to the central RabbitMQ.
type ForwarderConfig struct {
	AMQPURLs        []string `yaml:"amqp_urls"`
	Exchange        string   `yaml:"exchange"`
	Window          int      `yaml:"window"`
	Heartbeat       Duration `yaml:"heartbeat"`
	DialTimeout     Duration `yaml:"dial_timeout"`
	ConfirmTimeout  Duration `yaml:"confirm_timeout"`
	ReconnectMin    Duration `yaml:"reconnect_min"`
	ReconnectMax    Duration `yaml:"reconnect_max"`
	RetryMax        Duration `yaml:"retry_max"`
	DeclareQueue    string   `yaml:"declare_queue"`
	QueueType       string   `yaml:"queue_type"`
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
}

// CatalogConfig says where links come from.
type CatalogConfig struct {
	File string `yaml:"file"`
}

// GeoIPConfig configures country lookups.
type GeoIPConfig struct {
	Database     string   `yaml:"database"`
	PollInterval Duration `yaml:"poll_interval"`
}

// LogConfig configures logging.
type LogConfig struct {
	Level        string  `yaml:"level"`
	AccessSample float64 `yaml:"access_sample"`
}

// hostname supplies node.id when it is empty; tests replace it.
var hostname = os.Hostname

// LoadConfig returns the configuration made of the embedded defaults, the
// YAML file at path (none if path is ""), and the CLICKEDGE_* variables in
// env ("KEY=value" strings, as os.Environ returns them), validated.
//
// Errors name their source and key — "clickedge.yaml: outbox.durability:
// must be sync or async, got "fsync" (line 12)" or "env CLICKEDGE_X: ..." —
// and are reported in one pass (harden #14): the file's, the environment's
// and the validation's together. Only a file that does not decode skips
// the validation, whose findings would then be about values never read.
func LoadConfig(path string, env []string) (*Config, error) {
	c := new(Config)
	if _, err := decodeConfig("default.yaml", defaultYAML, c); err != nil {
		return nil, fmt.Errorf("embedded %w", err) // a build defect; tests catch it
	}
	l := &loader{cfg: c, origin: make(map[string]string)}
	var errs []error
	fileOK := true
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if l.lines, err = decodeConfig(path, data, c); err != nil {
			errs, fileOK = append(errs, err), false
		}
		c.path = path
	}
	if err := l.applyEnv(env); err != nil {
		errs = append(errs, err)
	}
	if fileOK {
		if err := l.finish(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// loader remembers where each value came from, so that a validation error
// can point at the file line or the variable to fix.
type loader struct {
	cfg    *Config
	lines  map[string]int    // key path ("a.b", "a.b[1]") -> line in the file
	origin map[string]string // leaf key -> "env CLICKEDGE_X" when set by env
}

func (l *loader) finish() error {
	c := l.cfg
	var probs []problem
	if c.Node.ID == "" {
		h, err := hostname()
		if err != nil {
			return l.locate(problem{"node.id", fmt.Sprintf("empty and the host name is unknown: %v", err)})
		}
		c.Node.ID = h
	}
	probs = append(probs, c.check()...)
	if len(probs) == 0 && c.Admin.TokenFile != "" {
		if msg := c.readTokenFile(); msg != "" {
			probs = append(probs, problem{"admin.token_file", msg})
		}
	}
	if len(probs) == 0 {
		return nil
	}
	errs := make([]error, len(probs))
	for i, p := range probs {
		errs[i] = l.locate(p)
	}
	return errors.Join(errs...)
}

// locate prefixes p with where its key was set: the variable, else the
// file (and line), else the defaults.
func (l *loader) locate(p problem) error {
	base, _, _ := strings.Cut(p.key, "[")
	if o, ok := l.origin[base]; ok {
		return fmt.Errorf("%s: %s: %s", o, p.key, p.msg)
	}
	if l.cfg.path == "" {
		return fmt.Errorf("default configuration: %s: %s", p.key, p.msg)
	}
	line, ok := l.lines[p.key]
	if !ok {
		line, ok = l.lines[base]
	}
	if !ok {
		return fmt.Errorf("%s: %s: %s", l.cfg.path, p.key, p.msg)
	}
	return fmt.Errorf("%s: %s: %s (line %d)", l.cfg.path, p.key, p.msg, line)
}

func (c *Config) readTokenFile() string {
	if c.Admin.Token != "" {
		return "cannot be combined with admin.token (set one of them)"
	}
	b, err := os.ReadFile(c.resolve(c.Admin.TokenFile))
	if err != nil {
		return err.Error()
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "the file is empty"
	}
	if !validToken(tok) {
		return "the token must not contain whitespace or control characters"
	}
	c.Admin.Token = tok
	return ""
}

// Path returns the file the configuration was loaded from, "" if none.
func (c *Config) Path() string { return c.path }

// CatalogPath returns catalog.file resolved against the config file's
// directory, or "" for the embedded demo catalog.
func (c *Config) CatalogPath() string { return c.resolve(c.Catalog.File) }

// GeoIPPath returns geoip.database resolved against the config file's
// directory, or "" for no GeoIP.
func (c *Config) GeoIPPath() string { return c.resolve(c.GeoIP.Database) }

// resolve makes a relative path relative to the config file's directory
// (the contract for files a config names), or leaves it relative to the
// working directory when there is no file.
func (c *Config) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) || c.path == "" {
		return p
	}
	return filepath.Join(filepath.Dir(c.path), p)
}

// TrustedProxies returns http.trusted_proxies parsed; invalid entries,
// which Validate reports, are left out.
func (c *Config) TrustedProxies() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range c.HTTP.TrustedProxies {
		if p, err := parsePrefix(s); err == nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// SlogLevel returns log.level as a slog.Level (info if invalid).
func (l LogConfig) SlogLevel() slog.Level {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.Level)); err != nil {
		return slog.LevelInfo
	}
	return lv
}

// redactedSecret replaces secrets in Redacted output; url.URL.Redacted
// uses the same string for passwords.
const redactedSecret = "xxxxx"

// Redacted returns a copy of c safe to log or print: the admin token and
// the passwords in AMQP URLs are replaced by "xxxxx".
func (c *Config) Redacted() *Config {
	r := *c
	r.HTTP.TrustedProxies = slices.Clone(c.HTTP.TrustedProxies)
	r.Forwarder.AMQPURLs = make([]string, len(c.Forwarder.AMQPURLs))
	for i, s := range c.Forwarder.AMQPURLs {
		r.Forwarder.AMQPURLs[i] = redactURL(s)
	}
	if r.Admin.Token != "" {
		r.Admin.Token = redactedSecret
	}
	r.Collector = c.Collector.redacted()
	r.Sentry.DSN = redactSentryDSN(c.Sentry.DSN)
	return &r
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if strings.Contains(s, "@") {
			return redactedSecret // cannot tell the password from the rest
		}
		return s
	}
	return u.Redacted()
}

// YAML returns c as YAML in the layout of default.yaml. It includes
// secrets: print c.Redacted().YAML().
func (c *Config) YAML() ([]byte, error) {
	return yaml.MarshalWithOptions(c, yaml.IndentSequence(true))
}

// LogValue implements slog.LogValuer: a group per section, secrets
// redacted, so that logging a Config can never leak them.
func (c Config) LogValue() slog.Value {
	return groupValue(reflect.ValueOf(c.Redacted()).Elem())
}

// String returns the redacted YAML, so that printing a *Config with %v
// cannot leak secrets either.
func (c *Config) String() string {
	b, err := c.Redacted().YAML()
	if err != nil {
		return fmt.Sprintf("<config: %v>", err)
	}
	return string(b)
}

func groupValue(v reflect.Value) slog.Value {
	var attrs []slog.Attr
	for i := range v.NumField() {
		f := v.Type().Field(i)
		name := yamlName(f)
		if name == "" {
			continue
		}
		fv := v.Field(i)
		switch kindOf(f.Type) {
		case kindSection:
			attrs = append(attrs, slog.Attr{Key: name, Value: groupValue(fv)})
		case kindDuration, kindByteSize:
			attrs = append(attrs, slog.String(name, fmt.Sprint(fv.Interface())))
		default:
			attrs = append(attrs, slog.Any(name, fv.Interface()))
		}
	}
	return slog.GroupValue(attrs...)
}

// ---- keys and environment overrides ----

type keyKind int

const (
	kindSection keyKind = iota
	kindString
	kindStrings
	kindInt
	kindFloat
	kindDuration
	kindByteSize
)

// configKey is one leaf key of Config.
type configKey struct {
	path  string // "http.read_header_timeout"
	env   string // "CLICKEDGE_HTTP_READ_HEADER_TIMEOUT"
	index []int  // reflect field index from Config
	kind  keyKind
}

// configKeys lists every leaf key in declaration order. Derived from the
// struct so that no key can lack its environment variable.
var (
	configKeys = collectKeys(reflect.TypeFor[Config](), "", nil)
	keyByEnv   = func() map[string]configKey {
		m := make(map[string]configKey, len(configKeys))
		for _, k := range configKeys {
			if _, dup := m[k.env]; dup {
				panic("config: two keys map to " + k.env)
			}
			m[k.env] = k
		}
		return m
	}()
)

func collectKeys(t reflect.Type, prefix string, index []int) []configKey {
	var keys []configKey
	for i := range t.NumField() {
		f := t.Field(i)
		name := yamlName(f)
		if name == "" {
			continue
		}
		path := joinKey(prefix, name)
		idx := append(slices.Clone(index), i)
		if k := kindOf(f.Type); k != kindSection {
			keys = append(keys, configKey{path: path, env: envName(path), index: idx, kind: k})
			continue
		}
		keys = append(keys, collectKeys(f.Type, path, idx)...)
	}
	return keys
}

func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "" {
		panic("config: field " + f.Name + " has no yaml name")
	}
	if name == "-" {
		return ""
	}
	return name
}

func joinKey(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func envName(path string) string {
	return "CLICKEDGE_" + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

var (
	durationType = reflect.TypeFor[Duration]()
	byteSizeType = reflect.TypeFor[ByteSize]()
)

func kindOf(t reflect.Type) keyKind {
	switch t {
	case durationType:
		return kindDuration
	case byteSizeType:
		return kindByteSize
	}
	switch t.Kind() {
	case reflect.Struct:
		return kindSection
	case reflect.String:
		return kindString
	case reflect.Int:
		return kindInt
	case reflect.Float64:
		return kindFloat
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return kindStrings
		}
	}
	panic("config: unsupported field type " + t.String())
}

// envIgnored reports whether a CLICKEDGE_* variable is not a key.
func envIgnored(name string) bool {
	return name == "CLICKEDGE_CONFIG" || strings.HasPrefix(name, "CLICKEDGE_TEST_")
}

// applyEnv sets the keys named by CLICKEDGE_* variables. Any other
// CLICKEDGE_* variable is an error: a typo must not silently leave the
// default in place.
func (l *loader) applyEnv(env []string) error {
	vals := make(map[string]string)
	for _, kv := range env {
		name, val, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(name, "CLICKEDGE_") && !envIgnored(name) {
			vals[name] = val // the last one wins, as in exec.Cmd
		}
	}
	names := make([]string, 0, len(vals))
	for name := range vals {
		names = append(names, name)
	}
	slices.Sort(names)
	var errs []error
	for _, name := range names {
		k, ok := keyByEnv[name]
		if !ok {
			errs = append(errs, fmt.Errorf("env %s: unknown variable%s", name, envSuggestion(name)))
			continue
		}
		if err := setString(l.cfg.field(k), k.kind, vals[name]); err != nil {
			errs = append(errs, fmt.Errorf("env %s: %s: %w", name, k.path, err))
			continue
		}
		l.origin[k.path] = "env " + name
	}
	return errors.Join(errs...)
}

func (c *Config) field(k configKey) reflect.Value {
	return reflect.ValueOf(c).Elem().FieldByIndex(k.index)
}

// setString parses an environment value into a key of the given kind.
func setString(v reflect.Value, kind keyKind, s string) error {
	switch kind {
	case kindString:
		v.SetString(s)
	case kindStrings:
		list := []string{}
		if strings.TrimSpace(s) != "" {
			for e := range strings.SplitSeq(s, ",") {
				e = strings.TrimSpace(e)
				if e == "" {
					// Not quoting s: it may hold passwords (amqp_urls).
					return errors.New("empty element in the comma-separated list")
				}
				list = append(list, e)
			}
		}
		v.Set(reflect.ValueOf(list))
	case kindInt:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("expected an integer, got %q", s)
		}
		v.SetInt(int64(n))
	case kindFloat:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return fmt.Errorf("expected a number, got %q", s)
		}
		v.SetFloat(f)
	case kindDuration:
		d, err := ParseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
	case kindByteSize:
		b, err := ParseByteSize(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(b))
	default:
		panic("config: setString on a section")
	}
	return nil
}

func envSuggestion(name string) string {
	names := make([]string, len(configKeys))
	for i, k := range configKeys {
		names[i] = k.env
	}
	if s := closest(name, names); s != "" {
		return "; did you mean " + s + "?"
	}
	return ""
}

// closest returns the candidate within a small edit distance of s, if any.
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt // not worth it; nobody mistypes that much
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// ---- validation ----

// problem is one invalid key and why.
type problem struct {
	key string // "http.trusted_proxies[1]"
	msg string
}

// Validate reports every invalid key, each as "key: reason". LoadConfig
// has already called it, with the source of each key added; callers that
// build or change a Config call it themselves.
func (c *Config) Validate() error {
	var errs []error
	for _, p := range c.check() {
		errs = append(errs, fmt.Errorf("%s: %s", p.key, p.msg))
	}
	return errors.Join(errs...)
}

var (
	nodeIDRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	regionRe = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)
	// AMQP short-string names that RabbitMQ accepts without quoting trouble.
	amqpNameRe = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,255}$`)
	hostRe     = regexp.MustCompile(`^[A-Za-z0-9.-]{1,253}$`)
)

const (
	minMaxHeaderBytes = 1 << 10
	maxMaxHeaderBytes = 1 << 20
	minOutboxMaxBytes = 1 << 20
	maxWindow         = 65535
)

func (c *Config) check() []problem {
	var ps []problem
	bad := func(key, format string, args ...any) {
		ps = append(ps, problem{key, fmt.Sprintf(format, args...)})
	}
	oneOf := func(key, got string, allowed ...string) {
		if !slices.Contains(allowed, got) {
			bad(key, "must be %s, got %q", orList(allowed), got)
		}
	}
	positive := func(key string, d Duration) {
		if d <= 0 {
			bad(key, "must be > 0, got %s", d)
		}
	}
	nonNegative := func(key string, d Duration) {
		if d < 0 {
			bad(key, "must be >= 0, got %s", d)
		}
	}

	if !nodeIDRe.MatchString(c.Node.ID) {
		bad("node.id", "must match [A-Za-z0-9._-]{1,64}, got %q", c.Node.ID)
	}
	if !regionRe.MatchString(c.Node.Region) {
		bad("node.region", "must match [a-z0-9-]{1,32}, got %q", c.Node.Region)
	}

	if msg := checkListen(c.HTTP.Listen); msg != "" {
		bad("http.listen", "%s", msg)
	}
	oneOf("http.server", c.HTTP.Server, "fasthttp", "net")
	for i, s := range c.HTTP.TrustedProxies {
		if _, err := parsePrefix(s); err != nil {
			bad(fmt.Sprintf("http.trusted_proxies[%d]", i), "invalid CIDR %q", s)
		}
	}
	positive("http.read_header_timeout", c.HTTP.ReadHeaderTimeout)
	positive("http.idle_timeout", c.HTTP.IdleTimeout)
	if b := c.HTTP.MaxHeaderBytes; b < minMaxHeaderBytes || b > maxMaxHeaderBytes {
		bad("http.max_header_bytes", "must be between 1KiB and 1MiB, got %s", b)
	}
	if n := c.HTTP.MaxHeaderCount; n < 10 || n > 10000 {
		bad("http.max_header_count", "must be between 10 and 10000, got %d", n)
	}
	if n := c.HTTP.MaxConnections; n < 16 || n > 1<<20 {
		bad("http.max_connections", "must be between 16 and 1048576, got %d", n)
	}
	oneOf("http.bot_clicks", c.HTTP.BotClicks, "record", "skip")

	if msg := checkListen(c.Admin.Listen); msg != "" {
		bad("admin.listen", "%s", msg)
	} else if sameListener(c.HTTP.Listen, c.Admin.Listen) {
		bad("admin.listen", "must differ from http.listen (%q)", c.HTTP.Listen)
	}
	if c.Admin.Token != "" && !validToken(c.Admin.Token) {
		bad("admin.token", "must not contain whitespace or control characters")
	}
	if c.Admin.Token == "" && c.Admin.TokenFile == "" && checkListen(c.Admin.Listen) == "" && !loopbackListen(c.Admin.Listen) {
		// Without a token the admin reads (pprof, outbox status) are open:
		// fine on loopback, a leak anywhere else.
		bad("admin.token", "must be set when admin.listen (%q) is not a loopback address: set admin.token, "+
			"CLICKEDGE_ADMIN_TOKEN or admin.token_file, or listen on 127.0.0.1", c.Admin.Listen)
	}

	if c.DataDir == "" {
		bad("data_dir", "must not be empty")
	}

	oneOf("outbox.durability", c.Outbox.Durability, "sync", "async")
	if b := c.Outbox.MaxBytes; b < 0 || b > 0 && b < minOutboxMaxBytes {
		bad("outbox.max_bytes", "must be 0 (no limit) or at least 1MiB, got %s", b)
	}
	nonNegative("outbox.retention", c.Outbox.Retention)
	if c.Outbox.Durability == "async" {
		positive("outbox.flush_interval", c.Outbox.FlushInterval)
	} else {
		nonNegative("outbox.flush_interval", c.Outbox.FlushInterval)
	}
	oneOf("outbox.on_error", c.Outbox.OnError, "spill", "reject")
	oneOf("outbox.write_path", c.Outbox.WritePath, "tree", "log")
	if b := c.Outbox.SpillBytes; b < 0 || b > math.MaxInt32 {
		bad("outbox.spill_bytes", "must be between 0 and 2GiB, got %s", b)
	} else if b == 0 && c.Outbox.OnError == "spill" {
		bad("outbox.spill_bytes", "must be > 0 when outbox.on_error is spill")
	}

	if len(c.Forwarder.AMQPURLs) == 0 {
		bad("forwarder.amqp_urls", "must list at least one URL")
	}
	for i, s := range c.Forwarder.AMQPURLs {
		if msg := checkAMQPURL(s); msg != "" {
			bad(fmt.Sprintf("forwarder.amqp_urls[%d]", i), "%s", msg)
		}
	}
	if msg := checkAMQPName(c.Forwarder.Exchange); msg != "" {
		bad("forwarder.exchange", "%s", msg)
	}
	if w := c.Forwarder.Window; w < 1 || w > maxWindow {
		bad("forwarder.window", "must be between 1 and 65535, got %d", w)
	}
	if h := c.Forwarder.Heartbeat; h < Duration(1e9) || h > Duration(10e9) {
		bad("forwarder.heartbeat", "must be between 1s and 10s, got %s", h)
	}
	positive("forwarder.dial_timeout", c.Forwarder.DialTimeout)
	positive("forwarder.confirm_timeout", c.Forwarder.ConfirmTimeout)
	positive("forwarder.reconnect_min", c.Forwarder.ReconnectMin)
	if c.Forwarder.ReconnectMax < c.Forwarder.ReconnectMin {
		bad("forwarder.reconnect_max", "must be >= forwarder.reconnect_min (%s), got %s",
			c.Forwarder.ReconnectMin, c.Forwarder.ReconnectMax)
	}
	if r := c.Forwarder.RetryMax; r < Duration(1e9) || r > Duration(300e9) {
		bad("forwarder.retry_max", "must be between 1s and 5m, got %s", r)
	}
	if q := c.Forwarder.DeclareQueue; q != "" {
		if msg := checkAMQPName(q); msg != "" {
			bad("forwarder.declare_queue", "%s", msg)
		}
	}
	oneOf("forwarder.queue_type", c.Forwarder.QueueType, "quorum", "classic")
	positive("forwarder.shutdown_timeout", c.Forwarder.ShutdownTimeout)

	nonNegative("geoip.poll_interval", c.GeoIP.PollInterval)

	ps = append(ps, c.Cluster.check()...)
	ps = append(ps, c.checkPostback()...)

	oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	if s := c.Log.AccessSample; !(s >= 0 && s <= 1) { // also catches NaN
		bad("log.access_sample", "must be between 0 and 1, got %v", s)
	}
	ps = append(ps, c.Collector.check()...)
	ps = append(ps, c.Sentry.check()...)
	ps = append(ps, c.Links.check()...)
	return ps
}

func orList(s []string) string {
	if len(s) == 2 {
		return s[0] + " or " + s[1]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// parsePrefix parses a CIDR, or a single address as its one-host prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// checkListen returns why addr is not a listen address, or "".
func checkListen(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("must be host:port (e.g. \":8080\" or \"127.0.0.1:9090\"), got %q", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Sprintf("port must be a number from 0 to 65535, got %q", port)
	}
	if host != "" && !hostRe.MatchString(host) {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Sprintf("invalid host %q", host)
		}
	}
	return ""
}

// loopbackListen reports whether a valid listen address binds loopback
// only: 127.0.0.0/8, ::1 or "localhost". An empty host, 0.0.0.0 and ::
// bind every interface; any other name may resolve to anything.
func loopbackListen(addr string) bool {
	host, _, _ := net.SplitHostPort(addr)
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// sameListener reports whether two valid listen addresses would collide.
func sameListener(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	if pa != pb || pa == "0" {
		return false
	}
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wildcard(ha) || wildcard(hb)
}

// checkAMQPURL returns why s is not a broker URL, or "". It never quotes
// the URL, which may hold a password.
func checkAMQPURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Sprintf("invalid URL: %v", err)
	}
	if u.Scheme != "amqp" && u.Scheme != "amqps" {
		return fmt.Sprintf("scheme must be amqp or amqps, got %q", u.Scheme)
	}
	if u.Hostname() == "" {
		return "missing host"
	}
	if _, err := amqp.ParseURI(s); err != nil {
		return "invalid URL: " + strings.ReplaceAll(err.Error(), s, redactURL(s))
	}
	return ""
}

// checkAMQPName returns why s is not a usable exchange or queue name, or "".
func checkAMQPName(s string) string {
	if !amqpNameRe.MatchString(s) {
		return fmt.Sprintf("must match [A-Za-z0-9_.:-]{1,255}, got %q", s)
	}
	if strings.HasPrefix(s, "amq.") {
		return fmt.Sprintf("must not start with \"amq.\" (reserved by the broker), got %q", s)
	}
	return ""
}

func validToken(s string) bool {
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}
