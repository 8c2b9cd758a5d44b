package cluster

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// authHeader carries an internal request's signature:
// "t=<unix seconds>,n=<sender>,s=<hex HMAC-SHA256>".
const authHeader = "Clickedge-Cluster-Auth"

// Signature errors.
var (
	// ErrUnauthenticated is returned for an internal request without a
	// valid signature.
	ErrUnauthenticated = errors.New("cluster: request not signed with a key of this keyring")
)

// httpKey derives the HMAC key for internal requests from a gossip key, so
// that the gossip key itself never signs anything else.
func httpKey(gossipKey []byte) []byte {
	m := hmac.New(sha256.New, gossipKey)
	m.Write([]byte("clickedge cluster http v1"))
	return m.Sum(nil)
}

// signature is the hex HMAC of a request under key.
func signature(key []byte, method, uri string, t int64, node string, body []byte) string {
	bh := sha256.Sum256(body)
	m := hmac.New(sha256.New, httpKey(key))
	fmt.Fprintf(m, "v1\n%s\n%s\n%d\n%s\n%x", method, uri, t, node, bh)
	return hex.EncodeToString(m.Sum(nil))
}

// sign sets req's signature header. Without a keyring requests go
// unsigned (loopback pools).
func (c *Cluster) sign(req *http.Request, body []byte) {
	if c.cfg.Keyring == nil {
		return
	}
	t := c.cfg.Now().Unix()
	s := signature(c.cfg.Keyring.Primary(), req.Method, req.URL.RequestURI(), t, c.cfg.Name, body)
	req.Header.Set(authHeader, fmt.Sprintf("t=%d,n=%s,s=%s", t, c.cfg.Name, s))
}

// verify checks an internal request's signature against every key of the
// keyring (a peer may sign with a key that is primary there and secondary
// here during a rotation). Without a keyring it admits loopback callers
// only. It returns the sender's name.
func (c *Cluster) verify(r *http.Request, body []byte) (string, error) {
	if c.cfg.Keyring == nil {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		if a, err := netip.ParseAddr(host); err == nil && a.IsLoopback() {
			return r.Header.Get("Clickedge-Cluster-Node"), nil
		}
		return "", fmt.Errorf("%w (no keyring: loopback callers only)", ErrUnauthenticated)
	}
	h := r.Header.Get(authHeader)
	if h == "" {
		return "", fmt.Errorf("%w: no %s header", ErrUnauthenticated, authHeader)
	}
	var t int64
	var node, sig string
	for part := range strings.SplitSeq(h, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			t, _ = strconv.ParseInt(v, 10, 64)
		case "n":
			node = v
		case "s":
			sig = v
		}
	}
	if t == 0 || node == "" || sig == "" {
		return "", fmt.Errorf("%w: malformed %s header", ErrUnauthenticated, authHeader)
	}
	if d := c.cfg.Now().Sub(time.Unix(t, 0)); d > c.cfg.MaxSkew || d < -c.cfg.MaxSkew {
		return "", fmt.Errorf("%w: request time %d is %v away from this node's clock", ErrUnauthenticated, t, d.Round(time.Second))
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return "", fmt.Errorf("%w: malformed signature", ErrUnauthenticated)
	}
	for _, k := range c.cfg.Keyring.all() {
		want, _ := hex.DecodeString(signature(k, r.Method, r.URL.RequestURI(), t, node, body))
		if hmac.Equal(got, want) {
			return node, nil
		}
	}
	return "", ErrUnauthenticated
}
