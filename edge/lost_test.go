package edge_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/clickedge/clickedge/edge"
	"github.com/clickedge/clickedge/edge/edgetest"
	"github.com/clickedge/clickedge/outbox"
)

// harden #2, the async double count (edge/lost.go): in Async mode a click
// that Append accepted is counted once its fate is known. Answered clicks
// whose commit failed and that the spill could not take are dropped, and
// not recorded as well: recorded + spilled + dropped = answered, exactly.
// The outbox's side (each accepted record reported once) is
// outbox.TestAsyncFateReportedOnce.
func TestAsyncClicksCountedOnce(t *testing.T) {
	rec := &edgetest.Recorder{}
	ts := newTestServer(t, func(c *edge.Config) {
		c.Recorder = rec
		c.CountOnFate = true
	})
	const answered = 10
	for i := range answered {
		if res, _ := serve(t, ts, "GET", fmt.Sprintf("/r/tv-sale?subid=%d", i)); res.StatusCode != http.StatusFound {
			t.Fatalf("GET /r/tv-sale = %d, want 302", res.StatusCode)
		}
	}
	clicks := rec.Appended()
	if len(clicks) != answered {
		t.Fatalf("%d clicks appended, want %d", len(clicks), answered)
	}
	// What the outbox reports (outbox.Options.OnAsyncFate and OnLost): the
	// first commit held 4 and succeeded; the next failed, the spill took 2
	// and 4 were lost.
	route := &outbox.Record{Exchange: clicks[0].Exchange, RoutingKey: clicks[0].RoutingKey, Headers: clicks[0].Headers}
	ts.CountFate(route, outbox.FateCommitted, 4)
	ts.CountFate(route, outbox.FateSpilled, 2)
	ts.CountLost(route, 4)
	// Records of other routes in the same outbox are not this node's clicks.
	peer := &outbox.Record{Exchange: route.Exchange, RoutingKey: route.RoutingKey, Headers: []outbox.Header{{Key: "node", Value: "peer"}}}
	ts.CountFate(peer, outbox.FateCommitted, 100)
	actions := &outbox.Record{Exchange: "actions", RoutingKey: "action." + region, Headers: route.Headers}
	ts.CountFate(actions, outbox.FateCommitted, 100)
	// Lost records of another kind are not dropped clicks: the postback
	// role counts its actions (postback.Handler.CountLost).
	ts.CountLost(actions, 100)
	ts.CountLost(&outbox.Record{Exchange: "links", RoutingKey: "links", Headers: route.Headers}, 100)

	recorded := counterValue(t, ts.Server, "clickedge_clicks_total", "outcome", "recorded")
	spilled := counterValue(t, ts.Server, "clickedge_clicks_total", "outcome", "spilled")
	dropped := counterValue(t, ts.Server, "clickedge_clicks_total", "outcome", "dropped")
	if recorded != 4 || spilled != 2 || dropped != 4 || recorded+spilled+dropped != answered {
		t.Fatalf("outcomes recorded %v + spilled %v + dropped %v, want 4 + 2 + 4 = %d answered", recorded, spilled, dropped, answered)
	}
}
