package outbox

import "encoding/binary"

// Kinds: one outbox carries several kinds of message (clicks, the postback
// role's actions), told apart by their exchange. Summarize counts each.

// ExchangeCount is what Summarize found for one exchange.
type ExchangeCount struct {
	Pending        int64 `json:"pending"`
	PendingBytes   int64 `json:"pending_bytes"`
	Delivered      int64 `json:"delivered"`
	DeliveredBytes int64 `json:"delivered_bytes"`
}

// recordExchange returns the exchange of an encoded record that passed
// checkRecord, without decoding the rest.
func recordExchange(b []byte) string {
	n, k := binary.Uvarint(b[recordFixedLen:])
	start := recordFixedLen + k
	if k <= 0 || n > uint64(len(b)-start) {
		return ""
	}
	return string(b[start : start+int(n)])
}

// countExchange adds a record to s.Exchanges.
func (s *Summary) countExchange(v []byte, delivered bool) {
	name := recordExchange(v)
	if s.Exchanges == nil {
		s.Exchanges = make(map[string]*ExchangeCount)
	}
	c := s.Exchanges[name]
	if c == nil {
		c = new(ExchangeCount)
		s.Exchanges[name] = c
	}
	if delivered {
		c.Delivered++
		c.DeliveredBytes += int64(len(v))
	} else {
		c.Pending++
		c.PendingBytes += int64(len(v))
	}
}
