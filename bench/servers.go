package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	_ "net/http/pprof" // the baselines' profiles, on -pprof only
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/edge/clickid"
)

// bareLocation is what the baseline redirects to: as long as a typical
// clickedge target with its click id, so both answers are the same size.
const bareLocation = "https://shop.example/tv?cid=019a2b3c4d5e7f018123456789abcdef&sub=aff42&camp=spring"

// Header values shared by every answer, as clickedge shares them.
var (
	hdrBareLocation = []string{bareLocation}
	hdrNoStore      = []string{"no-store"}
	hdrZero         = []string{"0"}
)

// publicServer returns an http.Server with the same limits clickedge's
// public listener has, so the baselines pay for the same protections.
func publicServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}

// cmdBare serves the baseline: every request gets a constant 302 with no
// body. It is the floor any redirect server on net/http stands on.
func cmdBare(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("bare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "public `address`")
	pprofAddr := fs.String("pprof", "", "serve /debug/pprof/ on this `address` (empty: none)")
	server := fs.String("server", "net", "HTTP `server`: net (net/http) or fasthttp")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch *server {
	case "net":
		return serveUntilSignal(publicServer(bareHandler()), *listen, *pprofAddr, stderr)
	case "fasthttp":
		return serveUntilSignal(fastShutdowner{bareFastServer()}, *listen, *pprofAddr, stderr)
	}
	fmt.Fprintln(stderr, "bench bare: -server must be net or fasthttp")
	return 2
}

// bareFastServer is the bare 302 on fasthttp, with the settings clickedge's
// FastServer uses (edge.FastServer), so it pays for the same protections.
func bareFastServer() *fasthttp.Server {
	location, noStore := []byte(bareLocation), []byte("no-store")
	return &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			r := &ctx.Response
			r.SetStatusCode(http.StatusFound)
			r.Header.SetCanonical([]byte("Location"), location)
			r.Header.SetCanonical([]byte("Cache-Control"), noStore)
			r.Header.SetContentLength(0)
		},
		ReadBufferSize:               16 << 10,
		ReadTimeout:                  5 * time.Second,
		WriteTimeout:                 5 * time.Second,
		IdleTimeout:                  120 * time.Second,
		MaxRequestBodySize:           4 << 10,
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		SecureErrorLogMessage:        true,
		CloseOnShutdown:              true,
	}
}

// server is what serveUntilSignal runs: *http.Server or a fasthttp one.
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

type fastShutdowner struct{ *fasthttp.Server }

func (f fastShutdowner) Shutdown(ctx context.Context) error { return f.ShutdownWithContext(ctx) }

// bareHandler answers every request with the same 302 and no body.
func bareHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Location"] = hdrBareLocation
		h["Cache-Control"] = hdrNoStore
		h["Content-Length"] = hdrZero
		w.WriteHeader(http.StatusFound)
	})
}

// serveUntilSignal serves srv on addr (and the default mux, which holds
// pprof, on pprofAddr) until SIGINT or SIGTERM.
func serveUntilSignal(srv server, addr, pprofAddr string, stderr io.Writer) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	if pprofAddr != "" {
		pln, err := net.Listen("tcp", pprofAddr)
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		go http.Serve(pln, nil)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-sigs:
	case err := <-errc:
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		fmt.Fprintln(stderr, "bench: shutdown:", err)
		return 1
	}
	return 0
}

// directServer is what one would build without an outbox: each click is
// published to RabbitMQ in confirm mode, and the user is redirected only
// after the broker's basic.ack, so an answered click is as safe as the
// broker makes it. One connection and one channel, shared by all requests
// (amqp091-go serializes publishes on a channel).
type directServer struct {
	ch       *amqp.Channel
	exchange string
	key      string
	region   string

	published, acked, nacked, failed atomic.Int64
}

// directStats is GET /stats on the direct server.
type directStats struct {
	Published int64 `json:"published"`
	Acked     int64 `json:"acked"`
	Nacked    int64 `json:"nacked"`
	Failed    int64 `json:"failed"`
}

func (d *directServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/stats" {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(directStats{
			Published: d.published.Load(), Acked: d.acked.Load(),
			Nacked: d.nacked.Load(), Failed: d.failed.Load(),
		})
		return
	}
	code, ok := strings.CutPrefix(r.URL.Path, "/r/")
	if !ok || code == "" || strings.Contains(code, "/") {
		http.NotFound(w, r)
		return
	}
	now := time.Now()
	var idBuf [clickid.Len]byte
	id := string(clickid.NewAt(now).AppendHex(idBuf[:0]))
	loc := "https://shop.example/tv?cid=" + id + "&sub=" + r.URL.Query().Get("subid")
	body := fmt.Appendf(nil, `{"v":1,"click_id":%q,"ts":%q,"link":%q,"url":%q,"region":%q,"device":"desktop","params":{"subid":%q}}`,
		id, now.UTC().Format("2006-01-02T15:04:05.000Z"), code, loc, d.region, r.URL.Query().Get("subid"))
	dc, err := d.ch.PublishWithDeferredConfirmWithContext(r.Context(), d.exchange, d.key, true, false, amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    id,
		Timestamp:    now,
		Body:         body,
	})
	if err != nil {
		d.failed.Add(1)
		http.Error(w, "publish: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	d.published.Add(1)
	acked, err := dc.WaitContext(r.Context())
	switch {
	case err != nil:
		d.failed.Add(1)
		http.Error(w, "confirm: "+err.Error(), http.StatusServiceUnavailable)
		return
	case !acked:
		d.nacked.Add(1)
		http.Error(w, "nacked", http.StatusServiceUnavailable)
		return
	}
	d.acked.Add(1)
	h := w.Header()
	h["Location"] = []string{loc}
	h["Cache-Control"] = hdrNoStore
	h["Content-Length"] = hdrZero
	w.WriteHeader(http.StatusFound)
}

func cmdDirect(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("direct", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "public `address` (also GET /stats)")
	pprofAddr := fs.String("pprof", "", "serve /debug/pprof/ on this `address` (empty: none)")
	url := fs.String("amqp", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ `URL`")
	exchange := fs.String("exchange", "clicks", "topic `exchange` (declared durable, as clickedge declares it)")
	region := fs.String("region", "bench", "`region`: routing key click.<region>")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	conn, err := amqp.DialConfig(*url, amqp.Config{Heartbeat: 5 * time.Second, Properties: amqp.Table{"connection_name": "bench direct"}})
	if err != nil {
		fmt.Fprintln(stderr, "bench direct:", err)
		return 1
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err == nil {
		err = ch.ExchangeDeclare(*exchange, "topic", true, false, false, false, nil)
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench direct:", err)
		return 1
	}
	// Unroutable messages are acked after their return; drain the returns
	// so the channel never blocks on them.
	go func() {
		for range ch.NotifyReturn(make(chan amqp.Return, 1024)) {
		}
	}()
	d := &directServer{ch: ch, exchange: *exchange, key: "click." + *region, region: *region}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	go func() {
		if err, ok := <-closed; ok && err != nil {
			fmt.Fprintln(stderr, "bench direct: connection closed:", err)
		}
	}()
	code := serveUntilSignal(publicServer(d), *listen, *pprofAddr, stderr)
	if err := ch.Close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
		fmt.Fprintln(stderr, "bench direct: close:", err)
	}
	return code
}

// seedPython returns a Python interpreter that has aiohttp and aio-pika
// (Debian: python3-aiohttp python3-aio-pika) and the seed server's script.
func seedPython() (python, script string, err error) {
	root, err := repoRoot()
	if err != nil {
		return "", "", err
	}
	script = filepath.Join(root, "bench", "seed", "seed.py")
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import aiohttp, aio_pika").Run() == nil {
			return py, script, nil
		}
	}
	return "", "", errors.New("the seed scenario needs python3 with aiohttp and aio-pika (apt-get install python3-aiohttp python3-aio-pika)")
}
