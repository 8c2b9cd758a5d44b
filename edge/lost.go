package edge

// CountLost counts n clicks that were answered and that the Recorder lost
// afterwards (an async commit that failed with the spill full, or a spill
// left at shutdown) in clickedge_clicks_total{outcome="dropped"}, so that
// the dropped count covers every answered click that was neither
// committed nor delivered. Such a click was counted once before, as
// recorded or spilled, when it was answered. Safe for concurrent use.
func (s *Server) CountLost(n int) {
	if n > 0 {
		s.m.outcomes[outcomeDropped].Add(float64(n))
	}
}
