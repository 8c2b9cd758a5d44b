package collect

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clickedge/clickedge/edge/clickid"
	"github.com/clickedge/clickedge/internal/pgtest"
)

var dbSeq atomic.Int64

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// privateDB returns a cluster of the test's own, for tests that stop or
// crash it, and the URL of a database on it. Others use
// pgtest.SharedDatabase.
func privateDB(t *testing.T) (*pgtest.Cluster, string) {
	t.Helper()
	c := pgtest.Start(t, nil)
	return c, c.CreateDatabase(fmt.Sprintf("collect_%d", dbSeq.Add(1)))
}

func newStore(t *testing.T, url string) *Store {
	t.Helper()
	s, err := NewStore(StoreConfig{DatabaseURL: url})
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// query runs one query returning one int64 (count(*) and the like).
func queryInt(t testing.TB, url, sql string, args ...any) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// tryQueryInt is queryInt that reports errors instead of failing, for
// polling while the database may be down.
func tryQueryInt(url, sql string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int64
	err = conn.QueryRow(ctx, sql).Scan(&n)
	return n, err
}

// clickBodyAt is a schema-1 click body with a fresh id for time at.
func clickBodyAt(at time.Time, link, region string) (id string, body []byte) {
	id = clickid.NewAt(at).String()
	m := map[string]any{
		"v": 1, "click_id": id, "ts": at.UTC().Format("2006-01-02T15:04:05.000Z"),
		"link": link, "url": "https://shop.example/?cid=" + id, "rule": "", "region": region,
		"node": region + "-1", "country": "DE", "subdivision": "", "city": "", "device": "mobile",
		"os": "iOS", "browser": "Safari", "lang": "de", "bot": false, "preview": false,
		"params": map[string]string{"subid": fmt.Sprint(rand.IntN(1000))}, "catalog": "0123456789ab",
	}
	body, _ = json.Marshal(m)
	return id, body
}

// actionMsg is a schema-1 action body for click id clickID.
func actionMsg(clickID, adv, orderID, action, status, amount string) (id string, body []byte) {
	aid := ActionID(adv, orderID, action, status)
	id = hex.EncodeToString(aid[:])
	cid, _ := clickid.Parse(clickID)
	m := map[string]any{
		"v": 1, "action_id": id, "click_id": clickID,
		"click_ts": cid.Time().Format("2006-01-02T15:04:05.000Z"), "adv": adv, "action": action,
		"order_id": orderID, "status": status, "amount": amount, "currency": "EUR",
		"ts": time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), "region": "eu", "node": "pb-1",
	}
	if amount == "" {
		delete(m, "amount")
		delete(m, "currency")
	}
	body, _ = json.Marshal(m)
	return id, body
}

func mustClick(t testing.TB, body []byte) *Click {
	t.Helper()
	c, p := ParseClick(body)
	if p != nil {
		t.Fatalf("ParseClick: %v", p)
	}
	return c
}

func mustAction(t testing.TB, body []byte) *Action {
	t.Helper()
	a, p := ParseAction(body)
	if p != nil {
		t.Fatalf("ParseAction: %v", p)
	}
	return a
}

// waitFor polls cond every 20 ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last: %s", timeout, what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func uniqueName(t testing.TB) string {
	n := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	return fmt.Sprintf("test.%s.%x", n, rand.Uint32())
}
