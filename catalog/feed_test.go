package catalog

import (
	"context"
	"fmt"
	"math/rand/v2"
	neturl "net/url"
	"path/filepath"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/clickedge/clickedge/internal/brokertest"
	"github.com/clickedge/clickedge/internal/faultproxy"
)

// feedNames gives a test its own exchange and stream on the shared broker
// and deletes them afterwards.
func feedNames(t *testing.T, url string) (exchange, queue string) {
	t.Helper()
	id := fmt.Sprintf("%s.%08x", t.Name(), rand.Uint32())
	exchange, queue = "test.links."+id, "test.links.stream."+id
	t.Cleanup(func() {
		conn, err := amqp.Dial(url)
		if err != nil {
			return
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		ch.QueueDelete(queue, false, false, false)
		ch.ExchangeDelete(exchange, false, false)
	})
	return exchange, queue
}

func startFeed(t *testing.T, url, exchange, queue string, s *Store, offsetFile string) *Feed {
	t.Helper()
	fc := DefaultFeedConfig()
	fc.URLs = []string{url}
	fc.Exchange, fc.Queue, fc.MaxBytes = exchange, queue, 100<<20
	fc.Store, fc.OffsetFile = s, offsetFile
	f, err := StartFeed(fc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFeedPropagatesAndCatchesUp(t *testing.T) {
	url := brokertest.SharedURL(t)
	exchange, queue := feedNames(t, url)
	ctx := context.Background()
	a := openMem(t, "a")
	dirB := t.TempDir()
	b, err := Open(filepath.Join(dirB, "catalog"), &Options{Node: "b"})
	if err != nil {
		t.Fatal(err)
	}
	offB := filepath.Join(dirB, "feed-offset")
	fb := startFeed(t, url, exchange, queue, b, offB)
	waitFor(t, 10*time.Second, "feed connected", fb.Connected)

	push := func(es []Entry) {
		t.Helper()
		if err := Push(ctx, []string{url}, exchange, queue, 100<<20, "a", es, 3); err != nil {
			t.Fatal(err)
		}
	}
	var made []Entry
	for i := range 10 {
		e, err := a.Put(fmt.Sprintf("f%d", i), linkJSON(fmt.Sprintf("f%d", i), "https://f.example/"))
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, e)
	}
	push(made)
	waitFor(t, 5*time.Second, "b has a's links", func() bool { return b.Digest() == a.Digest() })

	// Invalid entries on the feed are refused; the valid ones beside them
	// are applied.
	bad := Entry{Code: "evil", HLC: a.Version() + 1, Node: "x", Link: linkJSON("evil", "https://ok.example/{param:nope}")}
	good := Entry{Code: "fine", HLC: a.Version() + 2, Node: "x", Link: linkJSON("fine", "https://ok.example/")}
	push([]Entry{bad, good})
	waitFor(t, 5*time.Second, "the good entry", func() bool { return b.Catalog().Lookup("fine") != nil })
	if b.Catalog().Lookup("evil") != nil || b.Changes(SourceFeed, Invalid) != 1 {
		t.Fatalf("invalid entry: served %v, counted %d", b.Catalog().Lookup("evil") != nil, b.Changes(SourceFeed, Invalid))
	}

	// b goes away; changes made meanwhile reach it when it is back, from
	// its offset (nothing is read twice).
	fb.Close()
	seen := fb.Stats().Messages
	if seen == 0 || fb.Stats().Offset < 0 {
		t.Fatalf("feed stats %+v: want messages and an offset", fb.Stats())
	}
	b.Close()
	_, _, err = a.Delete("f3")
	if err != nil {
		t.Fatal(err)
	}
	e, _ := a.Get("f3")
	push([]Entry{e})
	b, err = Open(filepath.Join(dirB, "catalog"), &Options{Node: "b"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Catalog().Lookup("f1") == nil {
		t.Fatal("restarted node does not serve its persisted catalog")
	}
	fb2 := startFeed(t, url, exchange, queue, b, offB)
	waitFor(t, 5*time.Second, "b catches up", func() bool { return b.Catalog().Lookup("f3") == nil })
	// A sentinel after it: once it is applied, everything before it in
	// the stream was read, and a feed that started from its offset read
	// exactly two messages.
	sentinel, _ := a.Put("sentinel", linkJSON("sentinel", "https://s.example/"))
	push([]Entry{sentinel})
	waitFor(t, 5*time.Second, "the sentinel", func() bool { return fb2.Stats().Messages >= 2 && b.Catalog().Lookup("sentinel") != nil })
	if got := fb2.Stats().Messages; got != 2 {
		t.Fatalf("resumed feed read %d messages, want 2 (from its offset)", got)
	}

	// An empty node reads the whole stream.
	c := openMem(t, "c")
	startFeed(t, url, exchange, queue, c, "")
	waitFor(t, 5*time.Second, "the empty node has everything", func() bool { return c.Digest() == b.Digest() })
	if c.Catalog().Lookup("fine") == nil || c.Catalog().Lookup("f3") != nil || c.Catalog().Lookup("evil") != nil {
		t.Fatal("empty node's catalog differs")
	}
}

func TestFeedMessageDecode(t *testing.T) {
	for _, body := range []string{``, `{`, `{"v":2,"entries":[]}`, `[]`, `{"v":1,"entries":{}}`} {
		if _, err := DecodeFeed([]byte(body)); err == nil {
			t.Fatalf("DecodeFeed(%q) accepted", body)
		}
	}
	m, err := DecodeFeed([]byte(`{"v":1,"node":"n","entries":[{"code":"a","hlc":"5","node":"n","deleted":true}]}`))
	if err != nil || len(m.Entries) != 1 || m.Entries[0].HLC != 5 || !m.Entries[0].Deleted {
		t.Fatalf("DecodeFeed = %+v, %v", m, err)
	}
}

func FuzzDecodeFeed(f *testing.F) {
	f.Add([]byte(`{"v":1,"node":"n","entries":[{"code":"a","hlc":"5","node":"n","link":{"code":"a","url":"https://a.example/"}}]}`))
	f.Add([]byte(`{"v":1,"entries":[{"code":"a","hlc":"1","node":"n","deleted":true,"link":{}}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := DecodeFeed(body)
		if err != nil {
			return
		}
		s, err := Open("", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		s.Merge(m.Entries, SourceFeed) // must not panic; bad entries are refused
		for l := range s.Catalog().Links() {
			if e, ok := s.Get(l.Code); !ok || e.Deleted {
				t.Fatalf("served %q without a live entry", l.Code)
			}
		}
	})
}

// A feed whose broker went silent (a black hole: no RST, no answers) still
// closes at once, so a node's shutdown is never held by it.
func TestFeedClosesWhileBlackholed(t *testing.T) {
	url := brokertest.SharedURL(t)
	exchange, queue := feedNames(t, url)
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	p, err := faultproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	u.Host = p.Addr()
	s := openMem(t, "n")
	fc := DefaultFeedConfig()
	fc.URLs = []string{u.String()}
	fc.Exchange, fc.Queue, fc.MaxBytes, fc.Store = exchange, queue, 100<<20, s
	f, err := StartFeed(fc)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "feed connected", f.Connected)
	p.SetMode(faultproxy.Blackhole)
	done := make(chan struct{})
	go func() { f.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked on a black-holed broker")
	}
}
