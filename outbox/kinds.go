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
// checkRecord, without decoding the rest: the first string of its inline
// route (or of a version-1 record), or its route's.
func recordExchange(routes *routeTable, b []byte) string {
	off := recordFixedLen
	if b[0] == recordV3 {
		f, k := binary.Uvarint(b[off:])
		if k <= 0 {
			return ""
		}
		if f&1 == 0 {
			if r := routes.lookup(f >> 1); r != nil {
				return r.exchange
			}
			return ""
		}
		off += k
	}
	n, k := binary.Uvarint(b[off:])
	start := off + k
	if k <= 0 || n > uint64(len(b)-start) {
		return ""
	}
	return string(b[start : start+int(n)])
}

// countExchange adds a record to s.Exchanges.
func (s *Summary) countExchange(routes *routeTable, v []byte, delivered bool) {
	name := recordExchange(routes, v)
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
