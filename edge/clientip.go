package edge

import (
	"net/netip"

	"github.com/clickedge/clickedge/internal/clientip"
)

// clientAddr returns the client's address as clientip.Resolve finds it
// behind the trusted proxies (the postback role uses the same rule).
func (s *Server) clientAddr(q *request) netip.Addr {
	return clientip.Resolve(q.peer, q.xff, s.trusted)
}

// parsePeer parses http.Request.RemoteAddr; see clientip.ParsePeer.
func parsePeer(remote string) netip.Addr { return clientip.ParsePeer(remote) }
