package edge_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/edge"
	"github.com/clickedge/clickedge/edge/edgetest"
)

// A transport runs requests through one of the Server's front-ends.
type transport struct {
	name string
	// start serves s and returns a function that sends it one request.
	// The server stops when the test ends.
	start func(t testing.TB, s *edge.Server) serveFunc
}

// serveFunc sends one request and returns the response and its body. The
// request is built as serve builds it (a desktop browser at clientPeer),
// then changed by opts; withPeer sets the TCP peer the server sees.
type serveFunc func(t testing.TB, method, target string, opts ...reqOpt) (*http.Response, string)

// transports are the ways the contract tests reach a Server: ServeHTTP
// called directly, net/http on a real listener, and fasthttp (FastServer)
// on a real listener.
var transports = []transport{
	{"handler", func(t testing.TB, s *edge.Server) serveFunc {
		return func(t testing.TB, method, target string, opts ...reqOpt) (*http.Response, string) {
			t.Helper()
			return serve(t, s, method, target, opts...)
		}
	}},
	{"net-http", func(t testing.TB, s *edge.Server) serveFunc {
		ln := newPeerListener(t)
		hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
		served := make(chan struct{})
		go func() { defer close(served); hs.Serve(ln) }()
		t.Cleanup(func() { hs.Close(); <-served })
		return ln.client(t)
	}},
	{"fasthttp", func(t testing.TB, s *edge.Server) serveFunc {
		ln := newPeerListener(t)
		fs := s.FastServer(edge.FastOptions{})
		served := make(chan struct{})
		go func() { defer close(served); fs.Serve(ln) }()
		// Closing the listener ends Serve at once; the client's
		// connections are already closed (no keep-alive), so nothing is
		// in flight. ShutdownWithContext has its own test.
		t.Cleanup(func() { ln.Close(); <-served })
		return ln.client(t)
	}},
}

// peerListener is a listener on 127.0.0.1 whose connections report the
// remote address set with setPeer when they were accepted, so that a test
// can play clients anywhere over a real socket.
type peerListener struct {
	net.Listener
	peer atomic.Pointer[net.TCPAddr]
}

func newPeerListener(t testing.TB) *peerListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return &peerListener{Listener: ln}
}

func (l *peerListener) setPeer(t testing.TB, hostport string) {
	t.Helper()
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		t.Fatalf("peer %q: %v", hostport, err)
	}
	l.peer.Store(net.TCPAddrFromAddrPort(ap))
}

func (l *peerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if p := l.peer.Load(); p != nil {
		return &peerConn{Conn: c, peer: p}, nil
	}
	return c, nil
}

type peerConn struct {
	net.Conn
	peer net.Addr
}

func (c *peerConn) RemoteAddr() net.Addr { return c.peer }

// client returns a serveFunc that sends each request on a new connection
// (so that each can have its own peer), never following redirects.
func (l *peerListener) client(t testing.TB) serveFunc {
	tr := &http.Transport{DisableKeepAlives: true, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{
		Transport:     tr,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	addr := l.Addr().String()
	return func(t testing.TB, method, target string, opts ...reqOpt) (*http.Response, string) {
		t.Helper()
		tmpl := httptest.NewRequest(method, target, nil)
		tmpl.RemoteAddr = clientPeer
		tmpl.Header.Set("User-Agent", desktopUA)
		for _, o := range opts {
			o(tmpl)
		}
		l.setPeer(t, tmpl.RemoteAddr)
		path, query, _ := strings.Cut(target, "?")
		req, err := http.NewRequest(method, "http://"+addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		// Opaque makes the client send the path bytes as they are.
		req.URL = &url.URL{Scheme: "http", Host: addr, Opaque: path, RawQuery: query}
		req.Header = tmpl.Header
		if _, ok := req.Header["User-Agent"]; !ok {
			req.Header["User-Agent"] = []string{""} // send none, not Go's
		}
		// Errorf, not Fatalf: some tests send from several goroutines.
		// The empty response fails their status checks.
		res, err := c.Do(req)
		if err != nil {
			t.Errorf("%s %s: %v", method, target, err)
			return &http.Response{Header: http.Header{}}, ""
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Errorf("%s %s: reading the body: %v", method, target, err)
		}
		return res, string(body)
	}
}

// fastCtx returns a RequestCtx for calling ServeFast without a
// connection, from peer ("ip:port").
func fastCtx(method, target string, peer string, header ...string) *fasthttp.RequestCtx {
	return edgetest.NewRequestCtx(method, target, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(peer)), header...)
}
