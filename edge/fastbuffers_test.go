package edge_test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/clickedge/clickedge/edge"
	"github.com/clickedge/clickedge/edge/device"
	"github.com/clickedge/clickedge/edge/edgetest"
)

// harden #1: fasthttp reuses a request's header buffers for later requests
// once ServeFast returns. Nothing the click path keeps past a request (the
// classifier's cache above all) may point into them. Many keep-alive
// connections send long, randomized User-Agents, each used several times
// from different connections; every recorded click must carry the device,
// os and browser that its User-Agent gets when classified alone. Run with
// -race: a kept view of a reused buffer is also a data race.
func TestServeFastKeepsNoRequestBuffer(t *testing.T) {
	rec := &edgetest.Recorder{}
	cfg := edge.DefaultConfig()
	cfg.Region, cfg.Node, cfg.Recorder = region, node, rec
	srv, err := edge.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetCatalog(edgetest.Catalog(t, testCatalog))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := srv.FastServer(edge.FastOptions{})
	served := make(chan struct{})
	go func() { defer close(served); fs.Serve(ln) }()
	defer func() { fs.Shutdown(); <-served }()

	rnd := rand.New(rand.NewPCG(1, 2))
	uas := make([]string, 40)
	want := map[string]device.Info{}
	for i := range uas {
		uas[i] = randomUA(rnd)
		want[uas[i]] = device.Classify(strings.Clone(uas[i]))
	}
	// Push those entries out of the classifier's cache, so that the
	// requests below make (and then hit) entries of their own.
	for i := range 4 * 4096 {
		device.Classify(fmt.Sprintf("Mozilla/5.0 (X11; Linux x86_64) Evict/%d", i))
	}

	const workers, per = 32, 200
	var wg sync.WaitGroup
	sent := make([]map[string]string, workers) // click_id -> User-Agent
	for w := range workers {
		sent[w] = map[string]string{}
		r := rand.New(rand.NewPCG(uint64(w), 7))
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for range per {
				ua := uas[r.IntN(len(uas))]
				if _, err := fmt.Fprintf(c, "GET /r/Summer HTTP/1.1\r\nHost: edge\r\nUser-Agent: %s\r\n\r\n", ua); err != nil {
					t.Error(err)
					return
				}
				res, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Error(err)
					return
				}
				res.Body.Close()
				id := idRE.FindString(res.Header.Get("Location"))
				if res.StatusCode != http.StatusFound || id == "" {
					t.Errorf("GET /r/Summer: %d %q, want 302 with a click id", res.StatusCode, res.Header.Get("Location"))
					return
				}
				sent[w][id] = ua
			}
		}()
	}
	wg.Wait()

	recs := rec.Appended()
	if len(recs) != workers*per {
		t.Fatalf("%d clicks recorded, want %d", len(recs), workers*per)
	}
	bad := 0
	for _, r := range recs {
		m := decodeClick(t, r)
		id := m["click_id"].(string)
		var ua string
		for w := range sent {
			if u, ok := sent[w][id]; ok {
				ua = u
			}
		}
		wi, ok := want[ua]
		if !ok {
			t.Fatalf("click %s was never answered", id)
		}
		got := fmt.Sprintf("%v/%v/%v/%v", m["device"], m["os"], m["browser"], m["bot"])
		exp := fmt.Sprintf("%v/%v/%v/%v", wi.Class, wi.OS, wi.Browser, wi.Bot)
		if got != exp && bad < 5 {
			bad++
			t.Errorf("click %s: device/os/browser/bot %s, want %s (User-Agent %.80q...)", id, got, exp, ua)
		}
	}
}

// randomUA returns a long User-Agent of random words, in the shapes real
// ones have: a browser's, or a bot's whose name is a word of its own (so
// that the classifier names the bot by bytes of the header).
func randomUA(r *rand.Rand) string {
	word := func(n int) string {
		const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		b := make([]byte, n)
		for i := range b {
			b[i] = letters[r.IntN(len(letters))]
		}
		return string(b)
	}
	var b strings.Builder
	pad := func() {
		for range 5 + r.IntN(60) {
			b.WriteString(word(3 + r.IntN(9)))
			b.WriteString("/1.")
			fmt.Fprint(&b, r.IntN(100))
			b.WriteByte(' ')
		}
	}
	switch r.IntN(4) {
	case 0, 1: // a bot with a name of its own, somewhere in the middle
		b.WriteString("Mozilla/5.0 (compatible; ")
		pad()
		b.WriteString(word(4+r.IntN(8)) + "bot/2.1; ")
		pad()
		b.WriteString(")")
	case 2:
		b.WriteString("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) ")
		pad()
		b.WriteString("Chrome/124.0.0.0 Mobile Safari/537.36")
	default:
		b.WriteString("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) ")
		pad()
		b.WriteString("Chrome/124.0.0.0 Safari/537.36")
	}
	return b.String()
}
