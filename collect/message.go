package collect

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/clickedge/clickedge/edge/clickid"
)

// Reason says why a message was dead-lettered; it is the value of the
// ReasonHeader on the dead-lettered copy.
type Reason string

// The reasons a message is poison. Every other message is a row.
const (
	ReasonNotJSON        Reason = "not_json"        // the body is not one JSON object
	ReasonUnknownVersion Reason = "unknown_version" // "v" is missing or not 1
	ReasonMissingID      Reason = "missing_id"      // click_id (or action_id) is absent or empty
	ReasonMalformedID    Reason = "malformed_id"    // an id is not what the schema says, or action_id does not match its fields
	ReasonBadField       Reason = "bad_field"       // another field has the wrong type or an invalid value
	ReasonRefused        Reason = "refused"         // PostgreSQL refused the row (a data or constraint error)
)

// Poison is a message that cannot become a row.
type Poison struct {
	Reason Reason
	Detail string // which field and why, for the DetailHeader
}

func (p *Poison) Error() string { return string(p.Reason) + ": " + p.Detail }

func poison(r Reason, format string, args ...any) *Poison {
	return &Poison{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// Click is one row of the clicks table: a click message of schema
// version 1 (DESIGN "Click message body"; edge/click.go writes it).
type Click struct {
	ID          [16]byte  // click_id
	ClickTS     time.Time // the id's millisecond: the partition key
	TS          time.Time // ts
	Link        string
	URL         string
	Rule        string
	Region      string
	Node        string
	Country     string
	Subdivision string
	City        string
	Device      string
	OS          string
	Browser     string
	Lang        string
	Bot         bool
	Preview     bool
	Paused      bool
	Params      []byte // a JSON object of strings, re-encoded
	Catalog     string
	Truncated   []string
}

// Action is one row of the actions table: a postback's message of schema
// version 1 (DESIGN "Postbacks", Message).
type Action struct {
	ID       [16]byte  // action_id
	ClickID  [16]byte  // click_id
	ClickTS  time.Time // the click id's millisecond: the partition key
	Adv      string
	Action   string
	OrderID  string
	Status   string
	Amount   string // decimal as written, "" for none
	Currency string
	TS       time.Time // ts: when the postback was received
	Region   string
	Node     string
}

// clickBody is the JSON of a click. Strings absent from the body are "".
type clickBody struct {
	V           json.RawMessage   `json:"v"`
	ClickID     string            `json:"click_id"`
	TS          string            `json:"ts"`
	Link        string            `json:"link"`
	URL         string            `json:"url"`
	Rule        string            `json:"rule"`
	Region      string            `json:"region"`
	Node        string            `json:"node"`
	Country     string            `json:"country"`
	Subdivision string            `json:"subdivision"`
	City        string            `json:"city"`
	Device      string            `json:"device"`
	OS          string            `json:"os"`
	Browser     string            `json:"browser"`
	Lang        string            `json:"lang"`
	Bot         bool              `json:"bot"`
	Preview     bool              `json:"preview"`
	Paused      bool              `json:"paused"`
	Params      map[string]string `json:"params"`
	Catalog     string            `json:"catalog"`
	Truncated   []string          `json:"truncated"`
}

type actionBody struct {
	V        json.RawMessage `json:"v"`
	ActionID string          `json:"action_id"`
	ClickID  string          `json:"click_id"`
	Adv      string          `json:"adv"`
	Action   string          `json:"action"`
	OrderID  string          `json:"order_id"`
	Status   string          `json:"status"`
	Amount   *string         `json:"amount"`
	Currency *string         `json:"currency"`
	TS       string          `json:"ts"`
	Region   string          `json:"region"`
	Node     string          `json:"node"`
}

// ParseClick turns a click message body into a row, or says why it is
// poison. It never panics, whatever body holds.
func ParseClick(body []byte) (*Click, *Poison) {
	var b clickBody
	if p := decode(body, &b); p != nil {
		return nil, p
	}
	if p := checkVersion(b.V); p != nil {
		return nil, p
	}
	id, ts, p := parseClickID("click_id", b.ClickID)
	if p != nil {
		return nil, p
	}
	t, p := parseTime("ts", b.TS)
	if p != nil {
		return nil, p
	}
	c := &Click{
		ID: id, ClickTS: ts, TS: t,
		Link: clean(b.Link), URL: clean(b.URL), Rule: clean(b.Rule),
		Region: clean(b.Region), Node: clean(b.Node), Country: clean(b.Country),
		Subdivision: clean(b.Subdivision), City: clean(b.City), Device: clean(b.Device),
		OS: clean(b.OS), Browser: clean(b.Browser), Lang: clean(b.Lang),
		Bot: b.Bot, Preview: b.Preview, Paused: b.Paused,
		Catalog: clean(b.Catalog),
	}
	params := make(map[string]string, len(b.Params))
	for k, v := range b.Params {
		params[clean(k)] = clean(v)
	}
	c.Params, _ = json.Marshal(params) // a map of strings always encodes
	for _, s := range b.Truncated {
		c.Truncated = append(c.Truncated, clean(s))
	}
	return c, nil
}

var (
	actionRe   = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)
	amountRe   = regexp.MustCompile(`^-?[0-9]{1,18}(\.[0-9]{1,4})?$`)
	currencyRe = regexp.MustCompile(`^[A-Z]{3}$`)
)

// ParseAction turns an action message body into a row, or says why it is
// poison. The action_id must be the one DESIGN derives from adv, order_id,
// action and status, so that one row per action_id is one row per
// (adv, order_id, action, status). It never panics, whatever body holds.
func ParseAction(body []byte) (*Action, *Poison) {
	var b actionBody
	if p := decode(body, &b); p != nil {
		return nil, p
	}
	if p := checkVersion(b.V); p != nil {
		return nil, p
	}
	if b.ActionID == "" {
		return nil, poison(ReasonMissingID, "action_id: missing")
	}
	aid, ok := parseHex16(b.ActionID)
	if !ok {
		return nil, poison(ReasonMalformedID, "action_id: want 32 lowercase hex digits, got %s", quote(b.ActionID))
	}
	cid, cts, p := parseClickID("click_id", b.ClickID)
	if p != nil {
		return nil, p
	}
	switch {
	case b.Adv == "":
		return nil, poison(ReasonBadField, "adv: missing")
	case b.OrderID == "":
		return nil, poison(ReasonBadField, "order_id: missing")
	case !actionRe.MatchString(b.Action):
		return nil, poison(ReasonBadField, "action: want [a-z0-9_-]{1,32}, got %s", quote(b.Action))
	}
	switch b.Status {
	case "pending", "approved", "declined":
	default:
		return nil, poison(ReasonBadField, "status: want pending, approved or declined, got %s", quote(b.Status))
	}
	if want := ActionID(b.Adv, b.OrderID, b.Action, b.Status); want != aid {
		return nil, poison(ReasonMalformedID, "action_id: %s does not match adv, order_id, action and status (want %x)", b.ActionID, want[:])
	}
	a := &Action{
		ID: aid, ClickID: cid, ClickTS: cts,
		Adv: clean(b.Adv), Action: b.Action, OrderID: clean(b.OrderID), Status: b.Status,
		Region: clean(b.Region), Node: clean(b.Node),
	}
	if b.Amount != nil && *b.Amount != "" {
		if !amountRe.MatchString(*b.Amount) {
			return nil, poison(ReasonBadField, "amount: want a decimal string, got %s", quote(*b.Amount))
		}
		a.Amount = *b.Amount
	}
	if b.Currency != nil && *b.Currency != "" {
		if !currencyRe.MatchString(*b.Currency) {
			return nil, poison(ReasonBadField, "currency: want an ISO 4217 code, got %s", quote(*b.Currency))
		}
		a.Currency = *b.Currency
	}
	if a.TS, p = parseTime("ts", b.TS); p != nil {
		return nil, p
	}
	return a, nil
}

// ActionID is DESIGN's action id: the first 16 bytes of
// SHA-256(adv "\n" order_id "\n" action "\n" status).
func ActionID(adv, orderID, action, status string) [16]byte {
	h := sha256.Sum256([]byte(adv + "\n" + orderID + "\n" + action + "\n" + status))
	var id [16]byte
	copy(id[:], h[:16])
	return id
}

// decode unmarshals one JSON object; a type mismatch is bad_field, any
// other failure not_json.
func decode(body []byte, v any) *Poison {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return poison(ReasonNotJSON, "the body is not a JSON object")
	}
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if asTypeError(err, &te) {
			return poison(ReasonBadField, "%s: wrong type (%s)", te.Field, te.Value)
		}
		return poison(ReasonNotJSON, "%v", err)
	}
	return nil
}

func asTypeError(err error, te **json.UnmarshalTypeError) bool {
	t, ok := err.(*json.UnmarshalTypeError)
	if ok {
		*te = t
	}
	return ok
}

func checkVersion(v json.RawMessage) *Poison {
	switch s := string(bytes.TrimSpace(v)); s {
	case "1":
		return nil
	case "":
		return poison(ReasonUnknownVersion, "v: missing")
	default:
		return poison(ReasonUnknownVersion, "v: want 1, got %s", quote(s))
	}
}

// parseClickID parses a click id as the edge writes it (32 lowercase hex,
// UUIDv7) and returns it with its millisecond.
func parseClickID(field, s string) ([16]byte, time.Time, *Poison) {
	if s == "" {
		return [16]byte{}, time.Time{}, poison(ReasonMissingID, "%s: missing", field)
	}
	if len(s) != clickid.Len {
		return [16]byte{}, time.Time{}, poison(ReasonMalformedID, "%s: want 32 lowercase hex digits, got %s", field, quote(s))
	}
	id, err := clickid.Parse(s)
	if err != nil {
		return [16]byte{}, time.Time{}, poison(ReasonMalformedID, "%s: %v", field, strings.TrimPrefix(err.Error(), "clickid: "))
	}
	return id, idMilli(id), nil
}

// idMilli is the UUIDv7's unix_ts_ms as a time: the partition key. The
// sub-millisecond fraction is left out, so the key is the same whatever
// precision a producer writes click_ts with.
func idMilli(id [16]byte) time.Time {
	ms := int64(id[0])<<40 | int64(id[1])<<32 | int64(id[2])<<24 |
		int64(id[3])<<16 | int64(id[4])<<8 | int64(id[5])
	return time.UnixMilli(ms).UTC()
}

func parseHex16(s string) ([16]byte, bool) {
	var id [16]byte
	if len(s) != 32 || strings.ToLower(s) != s {
		return id, false
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, false
	}
	return id, true
}

// parseTime parses an RFC 3339 time, as the schema writes ts.
func parseTime(field, s string) (time.Time, *Poison) {
	if s == "" {
		return time.Time{}, poison(ReasonBadField, "%s: missing", field)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, poison(ReasonBadField, "%s: want an RFC 3339 time, got %s", field, quote(s))
	}
	return t.UTC(), nil
}

// clean makes a decoded string storable in PostgreSQL text and jsonb,
// which hold no NUL: a NUL becomes U+FFFD, as invalid UTF-8 already has
// (encoding/json). A click with %00 in a parameter is still a click.
func clean(s string) string {
	if strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

// quote quotes s for a detail, cut to a readable length.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
