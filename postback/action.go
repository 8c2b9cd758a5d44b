package postback

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/clickedge/clickedge/outbox"
)

// Status is a conversion's state. It moves only forward: pending ->
// approved | declined.
type Status uint8

// Statuses, with the bit each has in an index entry's set of statuses seen.
const (
	Pending  Status = 1
	Approved Status = 2
	Declined Status = 4
)

// ParseStatus parses "pending", "approved" or "declined".
func ParseStatus(s string) (Status, bool) {
	switch s {
	case "pending":
		return Pending, true
	case "approved":
		return Approved, true
	case "declined":
		return Declined, true
	}
	return 0, false
}

func (s Status) String() string {
	switch s {
	case Pending:
		return "pending"
	case Approved:
		return "approved"
	case Declined:
		return "declined"
	}
	return "unknown"
}

// final reports whether no move leaves s.
func (s Status) final() bool { return s == Approved || s == Declined }

// ActionID returns the action's id: the first 16 bytes of
// SHA-256(adv "\n" order_id "\n" action "\n" status), as 32 lowercase hex
// digits. It depends on nothing but the postback, so every registration
// node gives the same id (the AMQP message_id) for the same postback.
func ActionID(adv, orderID, action string, status Status) string {
	h := sha256.New()
	h.Write([]byte(adv + "\n" + orderID + "\n" + action + "\n" + status.String()))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// orderKey is the index key of an order's action: the first 16 bytes of
// SHA-256(adv "\n" order_id "\n" action). Status moves are judged per key.
func orderKey(adv, orderID, action string) (k [outbox.IndexKeyLen]byte) {
	sum := sha256.Sum256([]byte(adv + "\n" + orderID + "\n" + action))
	copy(k[:], sum[:])
	return k
}

// The index entry's 16-bit value: the current status in the low byte, the
// set of statuses ever registered in the high byte.
func entryValue(cur Status, seen Status) uint16 { return uint16(seen)<<8 | uint16(cur) }

func entryStatus(v uint16) (cur, seen Status) { return Status(v), Status(v >> 8) }

// Decision is what the index says about a postback.
type Decision int

// Decisions.
const (
	Register  Decision = iota // new order (or an expired or lost entry)
	Update                    // pending -> approved | declined
	Duplicate                 // this status was registered before
	Conflict                  // a move backwards or between final statuses
)

// decide judges status against an order's entry.
func decide(e outbox.IndexEntry, ok bool, status Status) Decision {
	if !ok {
		return Register
	}
	cur, seen := entryStatus(e.Value)
	switch {
	case seen&status != 0:
		return Duplicate
	case cur == Pending && status.final():
		return Update
	}
	return Conflict
}

// message is the body of an action message, schema version 1.
type message struct {
	V        int    `json:"v"`
	ActionID string `json:"action_id"`
	ClickID  string `json:"click_id"`
	ClickTS  string `json:"click_ts"`
	Adv      string `json:"adv"`
	Action   string `json:"action"`
	OrderID  string `json:"order_id"`
	Status   string `json:"status"`
	Amount   string `json:"amount"`
	Currency string `json:"currency"`
	TS       string `json:"ts"`
	Region   string `json:"region"`
	Node     string `json:"node"`
}

// tsLayout is RFC 3339 UTC with milliseconds, as clicks write it.
const tsLayout = "2006-01-02T15:04:05.000Z07:00"

func (m *message) encode() []byte {
	b, _ := json.Marshal(m) // strings only: cannot fail
	return b
}

func formatTS(t time.Time) string { return t.UTC().Format(tsLayout) }
