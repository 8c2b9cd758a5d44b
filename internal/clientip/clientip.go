// Package clientip finds a request's client address behind trusted
// proxies, for the edge (geo, rules) and the postback role (allowlists).
package clientip

import (
	"net/netip"
	"strings"
)

// Resolve returns the client's address: the TCP peer, unless the peer is in
// one of the trusted networks; then the right-most X-Forwarded-For address
// that is not itself trusted. Entries left of that one were written by the
// client or by proxies we know nothing about, so they are never believed.
// The result is unmapped (::ffff:1.2.3.4 is 1.2.3.4) and has no zone; it is
// the zero Addr when the address is unknown (a peer that is no IP, or an
// X-Forwarded-For entry that does not parse where the client should be).
// xff holds the header's values in the order received.
func Resolve(peer netip.Addr, xff []string, trusted []netip.Prefix) netip.Addr {
	if len(trusted) == 0 || !peer.IsValid() || !Contains(trusted, peer) {
		return peer
	}
	last := peer // the nearest trusted hop so far
	for i := len(xff) - 1; i >= 0; i-- {
		v := xff[i]
		for v != "" {
			var entry string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				v, entry = v[:j], v[j+1:]
			} else {
				v, entry = "", v
			}
			entry = strings.Trim(entry, " \t")
			if entry == "" {
				continue
			}
			a, ok := parseForwarded(entry)
			if !ok {
				return netip.Addr{}
			}
			if !Contains(trusted, a) {
				return a
			}
			last = a
		}
	}
	// Every hop is trusted: the request started inside our own network.
	return last
}

// Contains reports whether a is in one of the networks.
func Contains(nets []netip.Prefix, a netip.Addr) bool {
	for _, p := range nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParsePeer parses http.Request.RemoteAddr ("ip:port"); anything else (a
// Unix socket, a test's odd value) is the zero Addr.
func ParsePeer(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	if a, err := netip.ParseAddr(remote); err == nil {
		return a.Unmap().WithZone("")
	}
	return netip.Addr{}
}

// parseForwarded parses one X-Forwarded-For entry: an address, or an
// address with a port as some proxies write it ("1.2.3.4:5678",
// "[2001:db8::1]:443").
func parseForwarded(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}
