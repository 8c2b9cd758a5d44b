package postback

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/goccy/go-yaml"
)

// DefaultWindow is an advertiser's attribution window when its entry names
// none.
const DefaultWindow = 720 * time.Hour

// Limits on an advertisers file.
const (
	// MinSecretBytes is the shortest secret or token that is not reported
	// as weak (Advertisers.Weak): a shorter one can be brute-forced offline
	// from one signed URL. It is accepted, so that a file that worked keeps
	// working, but serve warns about it at every load.
	MinSecretBytes = 16
	MaxWindow      = 400 * 24 * time.Hour
)

// ErrInvalid is wrapped by every error of ParseAdvertisers and
// LoadAdvertisers about the file's content (not its reading).
var ErrInvalid = errors.New("postback: invalid advertisers file")

// Advertiser is one entry of the advertisers file.
type Advertiser struct {
	ID string
	// Secret is the HMAC key (signed mode); Token the shared token (token
	// mode). Exactly one is set.
	Secret []byte
	Token  string
	// Allow lists the networks postbacks may come from; empty means any
	// address.
	Allow []netip.Prefix
	// Window is how old a click may be for its conversion to count.
	Window time.Duration
}

// Advertisers is an immutable set of advertisers, swapped whole on reload.
type Advertisers struct {
	name      string
	byID      map[string]*Advertiser
	maxWindow time.Duration
	weak      []string // ids whose secret or token is under MinSecretBytes
}

// Weak returns the ids of the advertisers whose secret or token is shorter
// than MinSecretBytes, in file order.
func (a *Advertisers) Weak() []string {
	if a == nil {
		return nil
	}
	return a.weak
}

// Lookup returns the advertiser with id, or nil.
func (a *Advertisers) Lookup(id string) *Advertiser {
	if a == nil {
		return nil
	}
	return a.byID[id]
}

// Len returns the number of advertisers.
func (a *Advertisers) Len() int {
	if a == nil {
		return 0
	}
	return len(a.byID)
}

// Name returns the file the set was loaded from.
func (a *Advertisers) Name() string {
	if a == nil {
		return ""
	}
	return a.name
}

// MaxWindow returns the longest window of the set: how long the status
// index keeps an order.
func (a *Advertisers) MaxWindow() time.Duration {
	if a == nil || a.maxWindow == 0 {
		return DefaultWindow
	}
	return a.maxWindow
}

// LoadAdvertisers reads and checks an advertisers file.
func LoadAdvertisers(path string) (*Advertisers, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("postback: advertisers: %w", err)
	}
	return ParseAdvertisers(path, data)
}

// rawAdvertiser is an entry as written.
type rawAdvertiser struct {
	ID     string   `yaml:"id"`
	Secret string   `yaml:"secret"`
	Token  string   `yaml:"token"`
	Allow  []string `yaml:"allow"`
	Window string   `yaml:"window"`
}

var advIDRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// ParseAdvertisers checks the YAML of an advertisers file named name: a
// top-level list of {id, secret or token, allow, window}. Every problem is
// reported, each as "name: entry N (id X): key: reason"; a file with any
// problem is refused whole. An empty list is valid (every postback is then
// 401).
func ParseAdvertisers(name string, data []byte) (*Advertisers, error) {
	var raw []rawAdvertiser
	if err := yaml.UnmarshalWithOptions(data, &raw, yaml.Strict()); err != nil {
		return nil, fmt.Errorf("%w: %s: %s", ErrInvalid, name, strings.ReplaceAll(yaml.FormatError(err, false, false), "\n", " "))
	}
	set := &Advertisers{name: name, byID: make(map[string]*Advertiser, len(raw))}
	var errs []error
	for i, r := range raw {
		where := fmt.Sprintf("%s: entry %d", name, i+1)
		if r.ID != "" {
			where += fmt.Sprintf(" (id %q)", r.ID)
		}
		bad := func(key, format string, args ...any) {
			errs = append(errs, fmt.Errorf("%w: %s: %s: %s", ErrInvalid, where, key, fmt.Sprintf(format, args...)))
		}
		a := &Advertiser{ID: r.ID, Token: r.Token, Window: DefaultWindow}
		switch {
		case r.ID == "":
			bad("id", "missing")
		case !advIDRe.MatchString(r.ID):
			bad("id", "must match [A-Za-z0-9_.-]{1,64}")
		case set.byID[r.ID] != nil:
			bad("id", "given twice")
		}
		switch {
		case r.Secret == "" && r.Token == "":
			bad("secret", "an advertiser needs a secret (signed postbacks) or a token")
		case r.Secret != "" && r.Token != "":
			bad("token", "give a secret or a token, not both")
		case r.Token != "" && !printable(r.Token):
			bad("token", "must not contain whitespace or control characters")
		}
		if r.Secret != "" {
			a.Secret = []byte(r.Secret)
		}
		if r.ID != "" && (r.Secret != "" && len(r.Secret) < MinSecretBytes || r.Token != "" && len(r.Token) < MinSecretBytes) {
			set.weak = append(set.weak, r.ID)
		}
		for j, s := range r.Allow {
			p, err := parsePrefix(s)
			if err != nil {
				bad(fmt.Sprintf("allow[%d]", j), "invalid CIDR or address %q", s)
				continue
			}
			a.Allow = append(a.Allow, p)
		}
		if r.Window != "" {
			d, err := parseWindow(r.Window)
			switch {
			case err != nil:
				bad("window", "%v", err)
			case d <= 0 || d > MaxWindow:
				bad("window", "must be between 1s and %s, got %s", MaxWindow, r.Window)
			default:
				a.Window = d
			}
		}
		if r.ID != "" && set.byID[r.ID] == nil {
			set.byID[r.ID] = a
		}
		set.maxWindow = max(set.maxWindow, a.Window)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return set, nil
}

// parseWindow parses a Go duration, or a number of days ("30d").
func parseWindow(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil {
			return 0, fmt.Errorf("want a duration such as 720h or 30d, got %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want a duration such as 720h or 30d, got %q", s)
	}
	return d, nil
}

// parsePrefix parses a CIDR, or one address as its one-host prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func printable(s string) bool {
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}
