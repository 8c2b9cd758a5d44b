package edge

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/clickedge/clickedge/edge/geo"
	"github.com/clickedge/clickedge/outbox"
)

// Recorder stores clicks; *outbox.Outbox is one.
//
// Append and Spill are called from many request goroutines at once, so they
// must be thread-safe. They must not keep r, nor anything it points to,
// after they return: the Server reuses the record's memory (MessageID, Body)
// for the next request. *outbox.Outbox encodes the record before it returns.
type Recorder interface {
	// Append stores r durably (or queues it, in async mode). An error means
	// r is not known to be stored.
	Append(r *outbox.Record) error
	// Spill keeps r in memory for delivery after Append failed. An error
	// means r is lost (and the Recorder counted it).
	Spill(r *outbox.Record) error
}

// RecordErrorPolicy says what a click request gets when Append fails.
type RecordErrorPolicy int

const (
	// Spill redirects anyway and hands the click to Recorder.Spill. If the
	// spill refuses it too, the user is still redirected and the click is
	// counted as dropped (clickedge_clicks_total{outcome="dropped"}) and
	// logged. The user never notices a sick disk.
	Spill RecordErrorPolicy = iota
	// Reject answers 503 with Retry-After: 1 and records nothing: no click
	// is answered without being kept, and none is lost either (the user or
	// the load balancer retries). Counted as rejected.
	Reject
)

func (p RecordErrorPolicy) String() string {
	switch p {
	case Spill:
		return "spill"
	case Reject:
		return "reject"
	}
	return fmt.Sprintf("RecordErrorPolicy(%d)", int(p))
}

// ParseRecordErrorPolicy parses "spill" or "reject".
func ParseRecordErrorPolicy(s string) (RecordErrorPolicy, error) {
	switch s {
	case "spill":
		return Spill, nil
	case "reject":
		return Reject, nil
	}
	return 0, fmt.Errorf("unknown record error policy %q (want spill or reject)", s)
}

// BotPolicy says whether clicks by bots and link-preview fetchers are
// recorded. Bots are redirected either way: a crawler that gets an error
// would report the affiliate's link as broken.
type BotPolicy int

const (
	// Record records bot clicks like any other, with device "bot" and the
	// "bot" and "preview" fields set, so the centre decides what to pay.
	Record BotPolicy = iota
	// Skip redirects bots without recording them; they are counted in
	// clickedge_clicks_total{outcome="skipped_bot"}.
	Skip
)

func (p BotPolicy) String() string {
	switch p {
	case Record:
		return "record"
	case Skip:
		return "skip"
	}
	return fmt.Sprintf("BotPolicy(%d)", int(p))
}

// ParseBotPolicy parses "record" or "skip".
func ParseBotPolicy(s string) (BotPolicy, error) {
	switch s {
	case "record":
		return Record, nil
	case "skip":
		return Skip, nil
	}
	return 0, fmt.Errorf("unknown bot policy %q (want record or skip)", s)
}

// Config configures a Server. Start from DefaultConfig.
type Config struct {
	// Region is the node's region: the click's region field, the AMQP
	// region header, the routing key click.<region>, the {region} macro and
	// the edge_region rule variable. [A-Za-z0-9_-]{1,64}, since it is a
	// word of the routing key. Default "local"; empty is an error.
	Region string

	// Node is the node id: the click's node field and the AMQP node header.
	// Default: the host name ("local" if it cannot be read); empty is an
	// error.
	Node string

	// Exchange is the AMQP exchange clicks are published to. Default
	// "clicks"; empty is an error (the default exchange routes by queue
	// name, which is not what a click wants).
	Exchange string

	// Recorder stores the clicks, usually the node's *outbox.Outbox. It is
	// required: New fails without one.
	Recorder Recorder

	// Geo locates client addresses. Default nil: no geo, country,
	// subdivision and city are "".
	Geo *geo.DB

	// TrustedProxies are the networks whose X-Forwarded-For is believed
	// (the load balancers in front of the node). The client is the
	// right-most X-Forwarded-For address that is not itself trusted. Default
	// empty: the TCP peer is the client and X-Forwarded-For is ignored.
	TrustedProxies []netip.Prefix

	// CountOnFate says that the Recorder's Append returns before the click
	// is committed (an outbox in Async mode): a click it accepted is then
	// counted in clickedge_clicks_total when the Recorder reports what
	// became of it (CountFate: recorded once committed, spilled once moved
	// to the spill; CountLost: dropped), not as recorded at the answer, so
	// that each answered click is counted once, in one outcome. Default
	// false: Append returns once the click is committed (Sync).
	CountOnFate bool

	// OnRecordError is what a request gets when Append fails. Default Spill.
	OnRecordError RecordErrorPolicy

	// BotClicks says whether bot clicks are recorded. Default Record.
	BotClicks BotPolicy

	// Logger receives click recording failures (at most one line per second
	// per kind of error, with a count of the ones left out). Default nil:
	// discard.
	Logger *slog.Logger

	// Now is the clock for click timestamps, click ids and the log rate
	// limit. Default nil: time.Now. Request latency is always measured
	// with time.Now.
	Now func() time.Time
}

// Defaults for Config fields.
const (
	DefaultRegion   = "local"
	DefaultExchange = "clicks"
)

// DefaultConfig returns the defaults; the caller must still set Recorder.
func DefaultConfig() *Config {
	node, err := os.Hostname()
	if err != nil || node == "" {
		node = "local"
	}
	return &Config{
		Region:         DefaultRegion,   // a laptop is its own region
		Node:           node,            // unique enough per host
		Exchange:       DefaultExchange, // as the design names it
		Recorder:       nil,             // required
		Geo:            nil,             // no GeoIP database: country ""
		TrustedProxies: nil,             // trust no X-Forwarded-For
		OnRecordError:  Spill,           // redirect anyway, keep the click in memory
		BotClicks:      Record,          // let the centre filter bots
		Logger:         nil,             // discard
		Now:            nil,             // time.Now
	}
}

func (c *Config) validate() error {
	if err := checkWord(c.Region); err != nil {
		return fmt.Errorf("edge: config: region %q: %w", c.Region, err)
	}
	if c.Node == "" || len(c.Node) > 255 {
		return fmt.Errorf("edge: config: node %q: want 1 to 255 bytes", c.Node)
	}
	for i := 0; i < len(c.Node); i++ {
		if b := c.Node[i]; b < 0x21 || b >= 0x7f {
			return fmt.Errorf("edge: config: node %q: want printable ASCII without spaces", c.Node)
		}
	}
	if c.Exchange == "" || len(c.Exchange) > 255 {
		return fmt.Errorf("edge: config: exchange %q: want 1 to 255 bytes", c.Exchange)
	}
	if c.Recorder == nil {
		return fmt.Errorf("edge: config: recorder: required (the node's outbox)")
	}
	for _, p := range c.TrustedProxies {
		if !p.IsValid() {
			return fmt.Errorf("edge: config: trusted_proxies: invalid prefix %v", p)
		}
	}
	switch c.OnRecordError {
	case Spill, Reject:
	default:
		return fmt.Errorf("edge: config: on_record_error: unknown policy %v", c.OnRecordError)
	}
	switch c.BotClicks {
	case Record, Skip:
	default:
		return fmt.Errorf("edge: config: bot_clicks: unknown policy %v", c.BotClicks)
	}
	return nil
}

// checkWord accepts [A-Za-z0-9_-]{1,64}: safe as a routing key word, a
// Prometheus label value and a JSON string without escaping.
func checkWord(s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("want 1 to 64 characters")
	}
	for i := 0; i < len(s); i++ {
		if !codeChar[s[i]] {
			return fmt.Errorf("want letters, digits, '_' and '-' only")
		}
	}
	return nil
}
