package collect

import (
	"context"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clickedge/clickedge/internal/pgtest"
)

// Collectors that start together migrate once: every one succeeds, and the
// schema is at the current version with one row per migration.
func TestMigrateConcurrent(t *testing.T) {
	url := pgtest.SharedDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 4
	var wg sync.WaitGroup
	applied := make([][]int, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				errs[i] = err
				return
			}
			defer conn.Close(ctx)
			applied[i], errs[i] = Migrate(ctx, conn)
		}()
	}
	wg.Wait()
	total := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Migrate #%d: %v", i, errs[i])
		}
		total += len(applied[i])
	}
	if total != SchemaVersion() {
		t.Errorf("migrations applied in all = %d, want %d (once each)", total, SchemaVersion())
	}
	if got := queryInt(t, url, "SELECT count(*) FROM schema_migrations"); got != int64(SchemaVersion()) {
		t.Errorf("schema_migrations rows = %d, want %d", got, SchemaVersion())
	}
}

// A database migrated by a newer collector is refused, not downgraded;
// migrations with a gap are refused before anything runs.
func TestMigrateRefuses(t *testing.T) {
	url := pgtest.SharedDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	future := fstest.MapFS{
		"m/0001_a.sql": {Data: []byte("CREATE TABLE a (x int)")},
		"m/0002_b.sql": {Data: []byte("CREATE TABLE b (x int)")},
		"m/0003_c.sql": {Data: []byte("CREATE TABLE c (x int)")},
	}
	if got, err := migrate(ctx, conn, future, "m"); err != nil || len(got) != 3 {
		t.Fatalf("migrate(3 files) = %v, %v; want 3 applied", got, err)
	}
	delete(future, "m/0003_c.sql")
	if _, err := migrate(ctx, conn, future, "m"); err == nil {
		t.Fatalf("migrate with 2 files on a database at version 3 succeeded, want a refusal")
	}
	gap := fstest.MapFS{"m/0001_a.sql": {Data: []byte("")}, "m/0003_c.sql": {Data: []byte("")}}
	if _, err := parseMigrations(gap, "m"); err == nil {
		t.Fatalf("parseMigrations with a gap succeeded, want an error")
	}
}

// Rows are inserted once: the same batch again, and duplicates within a
// batch, insert nothing and are counted as duplicates.
func TestStoreWriteIdempotent(t *testing.T) {
	url := pgtest.SharedDatabase(t)
	s := newStore(t, url)
	ctx := context.Background()
	now := time.Now()
	var clicks []*Click
	for i := range 50 {
		// Three days, so three partitions.
		_, body := clickBodyAt(now.Add(-time.Duration(i%3)*24*time.Hour), "tv", "eu")
		clicks = append(clicks, mustClick(t, body))
	}
	clicks = append(clicks, clicks[0], clicks[1]) // twice in one batch
	r, err := s.Write(ctx, clicks, nil)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if r.Clicks != 50 || r.ClickDuplicates != 2 {
		t.Fatalf("Write = %+v, want 50 clicks, 2 duplicates", r)
	}
	r, err = s.Write(ctx, clicks[:50], nil)
	if err != nil || r.Clicks != 0 || r.ClickDuplicates != 50 {
		t.Fatalf("Write again = %+v, %v; want 0 clicks, 50 duplicates", r, err)
	}
	if got := queryInt(t, url, "SELECT count(*) FROM clicks"); got != 50 {
		t.Fatalf("clicks rows = %d, want 50", got)
	}
	// Each day in its own partition, none in the default.
	if got := queryInt(t, url, "SELECT count(*) FROM clicks_default"); got != 0 {
		t.Errorf("clicks_default rows = %d, want 0", got)
	}
	if got := queryInt(t, url, "SELECT count(DISTINCT tableoid) FROM clicks"); got != 3 {
		t.Errorf("partitions holding clicks = %d, want 3", got)
	}
	// A second store (another collector) finds the partitions and agrees.
	s2 := newStore(t, url)
	if r, err := s2.Write(ctx, clicks[:10], nil); err != nil || r.ClickDuplicates != 10 {
		t.Fatalf("second store Write = %+v, %v; want 10 duplicates", r, err)
	}
}

// Ids from a broken clock, days beyond the partition range, land in the
// default partition and are still deduplicated.
func TestStoreFarDaysUseDefault(t *testing.T) {
	url := pgtest.SharedDatabase(t)
	s := newStore(t, url)
	_, far := clickBodyAt(time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC), "tv", "eu")
	c := mustClick(t, far)
	for range 2 {
		if _, err := s.Write(context.Background(), []*Click{c}, nil); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	if got := queryInt(t, url, "SELECT count(*) FROM clicks_default"); got != 1 {
		t.Fatalf("clicks_default rows = %d, want 1", got)
	}
	if got := queryInt(t, url, "SELECT count(*) FROM pg_class WHERE relname LIKE 'clicks_2999%'"); got != 0 {
		t.Fatalf("partitions for 2999 = %d, want none", got)
	}
}

// One row per action_id even when two postbacks for the same order name
// different clicks (different partitions); the view joins each action to
// its click, leaves unknown clicks empty and names the latest status.
func TestStoreActionsAndView(t *testing.T) {
	url := pgtest.SharedDatabase(t)
	s := newStore(t, url)
	ctx := context.Background()
	now := time.Now()
	cidA, bodyA := clickBodyAt(now.Add(-time.Hour), "tv", "eu")
	cidB, _ := clickBodyAt(now.Add(-48*time.Hour), "radio", "us") // never collected
	if _, err := s.Write(ctx, []*Click{mustClick(t, bodyA)}, nil); err != nil {
		t.Fatalf("Write click: %v", err)
	}
	_, pending := actionMsg(cidA, "acme", "o-1", "sale", "pending", "12.50")
	_, approved := actionMsg(cidA, "acme", "o-1", "sale", "approved", "12.50")
	_, approvedOtherClick := actionMsg(cidB, "acme", "o-1", "sale", "approved", "12.50")
	_, unknown := actionMsg(cidB, "acme", "o-2", "lead", "pending", "")
	r, err := s.Write(ctx, nil, []*Action{mustAction(t, pending), mustAction(t, approved), mustAction(t, approvedOtherClick), mustAction(t, unknown)})
	if err != nil {
		t.Fatalf("Write actions: %v", err)
	}
	if r.Actions != 3 || r.ActionDuplicates != 1 {
		t.Fatalf("Write actions = %+v, want 3 actions, 1 duplicate", r)
	}
	if r, err = s.Write(ctx, nil, []*Action{mustAction(t, approvedOtherClick)}); err != nil || r.Actions != 0 || r.ActionDuplicates != 1 {
		t.Fatalf("Write approved again with the other click = %+v, %v; want a duplicate", r, err)
	}
	if got := queryInt(t, url, "SELECT count(*) FROM actions"); got != 3 {
		t.Fatalf("actions rows = %d, want 3", got)
	}

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT order_id, status, latest_status, is_latest, coalesce(link, ''),
		coalesce(click_region, ''), coalesce(node, ''), coalesce(country, ''), coalesce(device, ''),
		click_ts IS NULL, coalesce(amount::text, '')
		FROM action_clicks ORDER BY order_id, status`)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		order, status, latest               string
		isLatest                            bool
		link, region, node, country, device string
		noClick                             bool
		amount                              string
	}
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.order, &r.status, &r.latest, &r.isLatest, &r.link, &r.region, &r.node, &r.country, &r.device, &r.noClick, &r.amount); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []row{
		{"o-1", "approved", "approved", true, "tv", "eu", "eu-1", "DE", "mobile", false, "12.50"},
		{"o-1", "pending", "approved", false, "tv", "eu", "eu-1", "DE", "mobile", false, "12.50"},
		{"o-2", "pending", "pending", true, "", "", "", "", "", true, ""},
	}
	if len(got) != len(want) {
		t.Fatalf("action_clicks = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("action_clicks[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// A failed write (database gone) commits nothing and reports it; the next
// write reconnects by itself.
func TestStoreReconnects(t *testing.T) {
	c, url := privateDB(t)
	s := newStore(t, url)
	ctx := context.Background()
	_, b1 := clickBodyAt(time.Now(), "tv", "eu")
	if _, err := s.Write(ctx, []*Click{mustClick(t, b1)}, nil); err != nil {
		t.Fatal(err)
	}
	c.Crash()
	_, b2 := clickBodyAt(time.Now(), "tv", "eu")
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if _, err := s.Write(wctx, []*Click{mustClick(t, b2)}, nil); err == nil {
		t.Fatalf("Write with the database down succeeded")
	}
	cancel()
	c.Restart()
	if r, err := s.Write(ctx, []*Click{mustClick(t, b2)}, nil); err != nil || r.Clicks != 1 {
		t.Fatalf("Write after restart = %+v, %v; want 1 click", r, err)
	}
	if got := queryInt(t, url, "SELECT count(*) FROM clicks"); got != 2 {
		t.Fatalf("clicks rows = %d, want 2", got)
	}
}

// Collectors writing the same new days at once create each partition once
// and agree on every row: each click inserted by exactly one of them.
func TestStoreConcurrentWriters(t *testing.T) {
	url := pgtest.SharedDatabase(t)
	now := time.Now()
	var clicks []*Click
	for i := range 400 {
		_, body := clickBodyAt(now.Add(-time.Duration(i%5)*24*time.Hour), "tv", "eu")
		clicks = append(clicks, mustClick(t, body))
	}
	const n = 4
	stores := make([]*Store, n)
	for i := range stores {
		stores[i] = newStore(t, url)
	}
	var wg sync.WaitGroup
	results := make([]Result, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = stores[i].Write(context.Background(), clicks, nil)
		}()
	}
	wg.Wait()
	inserted, dups := 0, 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Write #%d: %v", i, errs[i])
		}
		inserted += results[i].Clicks
		dups += results[i].ClickDuplicates
	}
	if inserted != 400 || dups != 3*400 {
		t.Fatalf("inserted %d, duplicates %d; want 400 and %d", inserted, dups, 3*400)
	}
	if got := queryInt(t, url, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'clicks'::regclass"); got != 5+1+1 {
		// five days of rows, tomorrow (made at connect), the default
		t.Errorf("clicks partitions = %d, want 7", got)
	}
}

// A day whose rows went to the default partition (it was beyond the range)
// keeps them there when it comes into range: its partition is not created,
// writes go on, and each id is still one row.
func TestStoreDayComesIntoRange(t *testing.T) {
	url := pgtest.SharedDatabase(t)
	now := time.Now()
	day := now.AddDate(0, 0, 10)
	_, b1 := clickBodyAt(day, "tv", "eu")
	_, b2 := clickBodyAt(day.Add(time.Minute), "tv", "eu")
	s := newStore(t, url)
	if _, err := s.Write(context.Background(), []*Click{mustClick(t, b1)}, nil); err != nil {
		t.Fatal(err)
	}
	later, err := NewStore(StoreConfig{DatabaseURL: url, Now: func() time.Time { return now.AddDate(0, 0, 5) }})
	if err != nil {
		t.Fatal(err)
	}
	defer later.Close()
	for range 2 {
		if _, err := later.Write(context.Background(), []*Click{mustClick(t, b1), mustClick(t, b2)}, nil); err != nil {
			t.Fatalf("Write once the day is in range: %v", err)
		}
	}
	if got := queryInt(t, url, "SELECT count(*) FROM clicks_default"); got != 2 {
		t.Fatalf("clicks_default rows = %d, want 2", got)
	}
	if got := queryInt(t, url, "SELECT count(*) FROM clicks"); got != 2 {
		t.Fatalf("clicks rows = %d, want 2", got)
	}
}
