package edge

import "github.com/clickedge/clickedge/outbox"

// Counting a click whose fate is known only after its answer.
//
// In Sync mode an accepted click is committed before it is answered, and
// is counted as recorded then. In Async mode (Config.CountOnFate) Append
// returns before the commit, and the click can still be lost afterwards:
// its commit fails and the spill cannot take it. Counting it as recorded
// at the answer and then as dropped would count it twice, and the outcomes
// would no longer add up to the answered clicks; a counter cannot be
// decremented. So such a click is counted once, when the outbox reports
// its fate: recorded when its commit succeeded, spilled when a failed
// commit moved it to the spill, dropped when it was lost (CountLost). Until
// then (at most Options.FlushInterval and a commit) it is in no outcome.
//
// What remains counted twice: a click held in the memory spill (spilled,
// at its answer or when its commit failed) that is still there when the
// process exits, because the file never took it back; it is counted as
// dropped as well, in both modes. clickedge_clicks_total{outcome="dropped"}
// counts it, once, as DESIGN.md requires; "spilled" counts the event of
// spilling, which the ClickedgeClicksSpilled alert needs promptly.

// CountFate counts n clicks of rec's route (the outbox's
// Options.OnAsyncFate) that this Server accepted with CountOnFate set:
// committed ones as recorded, spilled ones as spilled. Records of another
// route (actions, links, a peer's clicks taken over in a hand-off) are
// not this Server's clicks and are ignored. Safe for concurrent use.
func (s *Server) CountFate(rec *outbox.Record, f outbox.Fate, n int) {
	if !s.onFate || n <= 0 || rec.Exchange != s.exchange || rec.RoutingKey != s.routingKey || rec.Header("node") != s.node {
		return
	}
	switch f {
	case outbox.FateCommitted:
		s.m.outcomes[outcomeRecorded].Add(float64(n))
	case outbox.FateSpilled:
		s.m.outcomes[outcomeSpilled].Add(float64(n))
	}
}

// CountLost counts n records of rec's route (the outbox's Options.OnLost)
// that were answered and that the Recorder lost afterwards (an async
// commit that failed with the spill full, or a spill left at shutdown):
// clicks, that is records of this Server's exchange, in
// clickedge_clicks_total{outcome="dropped"}, so that the dropped count
// covers every answered click that was neither committed nor delivered.
// (A peer's clicks taken over in a hand-off are committed before the
// hand-off is acknowledged, so they are never lost this way.) Records of
// another exchange (the postback role's actions, the links
// feed) are not clicks and are ignored: each kind is counted by its own
// role (postback.Handler.CountLost). With CountOnFate, a click lost by its
// failed commit was in no outcome before: it is counted once. Safe for
// concurrent use.
func (s *Server) CountLost(rec *outbox.Record, n int) {
	if n > 0 && rec.Exchange == s.exchange {
		s.m.outcomes[outcomeDropped].Add(float64(n))
	}
}
