package collect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// StoreConfig configures a Store.
type StoreConfig struct {
	// DatabaseURL is a libpq URL or key=value string; required.
	DatabaseURL string
	// PartitionDays is how far from today (UTC), back and ahead, days get
	// their own partitions. Rows of days beyond it go to the default
	// partition, so that an id from a broken clock cannot make a table
	// per day of the year 10889. Zero means 400 days back, 7 ahead.
	PartitionsBack, PartitionsAhead int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// Store writes batches into PostgreSQL over one connection. It is not safe
// for concurrent use: one goroutine owns it (the collector's writer).
type Store struct {
	cfg   StoreConfig
	log   *slog.Logger
	conn  *pgx.Conn
	known map[string]bool // partitions known to exist, by name
}

// Result counts what one Write did.
type Result struct {
	Clicks, ClickDuplicates   int // rows inserted, and rows already there (or twice in the batch)
	Actions, ActionDuplicates int
}

// NewStore returns a Store; it connects on first use.
func NewStore(cfg StoreConfig) (*Store, error) {
	if cfg.DatabaseURL == "" {
		return nil, errors.New("collect: StoreConfig.DatabaseURL is empty")
	}
	if _, err := pgx.ParseConfig(cfg.DatabaseURL); err != nil {
		return nil, fmt.Errorf("collect: database URL: %w", err)
	}
	if cfg.PartitionsBack <= 0 {
		cfg.PartitionsBack = 400
	}
	if cfg.PartitionsAhead <= 0 {
		cfg.PartitionsAhead = 7
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Store{cfg: cfg, log: cfg.Logger, known: make(map[string]bool)}, nil
}

// clone returns a Store of the same configuration with its own
// connection.
func (s *Store) clone() *Store {
	return &Store{cfg: s.cfg, log: s.log, known: make(map[string]bool)}
}

// Connect opens the connection if it is not open: it migrates the schema,
// creates today's and tomorrow's partitions and the session's staging
// tables. A Store reconnects by itself in Write after an error.
func (s *Store) Connect(ctx context.Context) error {
	if s.conn != nil && !s.conn.IsClosed() {
		return nil
	}
	s.conn = nil
	conn, err := pgx.Connect(ctx, s.cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("collect: connect to PostgreSQL: %w", err)
	}
	applied, err := Migrate(ctx, conn)
	if err != nil {
		conn.Close(context.Background())
		return err
	}
	if len(applied) > 0 {
		s.log.Info("schema migrated", "applied", applied, "version", SchemaVersion())
	}
	// Staging tables live as long as the session; ON COMMIT DELETE ROWS
	// empties them at every commit, and a failed transaction's rows go
	// with its rollback.
	for _, q := range []string{
		`CREATE TEMP TABLE IF NOT EXISTS stage_clicks (LIKE clicks INCLUDING DEFAULTS) ON COMMIT DELETE ROWS`,
		`CREATE TEMP TABLE IF NOT EXISTS stage_actions (LIKE actions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS`,
		`ALTER TABLE stage_actions ALTER COLUMN amount TYPE text`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			conn.Close(context.Background())
			return fmt.Errorf("collect: staging tables: %w", err)
		}
	}
	s.conn = conn
	today := s.cfg.Now().UTC().Truncate(24 * time.Hour)
	if err := s.ensurePartitions(ctx, map[time.Time]bool{today: true, today.Add(24 * time.Hour): true}); err != nil {
		s.Close()
		return err
	}
	return nil
}

// Close closes the connection; the Store may be used again.
func (s *Store) Close() {
	if s.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s.conn.Close(ctx)
		cancel()
		s.conn = nil
	}
}

var (
	clickColumns = []string{"click_id", "click_ts", "ts", "link", "url", "rule", "region", "node",
		"country", "subdivision", "city", "device", "os", "browser", "lang", "bot", "preview", "paused",
		"params", "catalog", "truncated"}
	actionColumns = []string{"action_id", "click_id", "click_ts", "adv", "action", "order_id", "status",
		"amount", "currency", "ts", "region", "node"}
)

const (
	insertClicks = `INSERT INTO clicks (click_id, click_ts, ts, link, url, rule, region, node,
		country, subdivision, city, device, os, browser, lang, bot, preview, paused, params, catalog, truncated)
	SELECT click_id, click_ts, ts, link, url, rule, region, node,
		country, subdivision, city, device, os, browser, lang, bot, preview, paused, params, catalog, truncated
	FROM stage_clicks
	ON CONFLICT DO NOTHING`

	// The claim in action_keys decides which rows are new; the conflict
	// clause on actions then only absorbs a row twice in one batch.
	insertActions = `WITH claimed AS (
		INSERT INTO action_keys (action_id, click_ts)
		SELECT action_id, click_ts FROM stage_actions
		ON CONFLICT DO NOTHING
		RETURNING action_id, click_ts)
	INSERT INTO actions (action_id, click_id, click_ts, adv, action, order_id, status,
		amount, currency, ts, region, node)
	SELECT s.action_id, s.click_id, s.click_ts, s.adv, s.action, s.order_id, s.status,
		s.amount::numeric, nullif(s.currency, ''), s.ts, s.region, s.node
	FROM stage_actions s JOIN claimed USING (action_id, click_ts)
	ON CONFLICT DO NOTHING`
)

// Write inserts the rows in one transaction: COPY into the staging
// tables, then one INSERT ... SELECT ... ON CONFLICT DO NOTHING per table.
// When it returns nil every row is committed (new or already there); on
// error nothing of the batch is, and the connection is closed if it may
// be unusable, to be reopened by the next Write.
func (s *Store) Write(ctx context.Context, clicks []*Click, actions []*Action) (Result, error) {
	var r Result
	if len(clicks) == 0 && len(actions) == 0 {
		return r, nil
	}
	if err := s.Connect(ctx); err != nil {
		return r, err
	}
	days := make(map[time.Time]bool)
	for _, c := range clicks {
		days[c.ClickTS.Truncate(24*time.Hour)] = true
	}
	for _, a := range actions {
		days[a.ClickTS.Truncate(24*time.Hour)] = true
	}
	if err := s.ensurePartitions(ctx, days); err != nil {
		return r, s.fail(err)
	}
	err := pgx.BeginFunc(ctx, s.conn, func(tx pgx.Tx) error {
		if len(clicks) > 0 {
			n, err := tx.CopyFrom(ctx, pgx.Identifier{"stage_clicks"}, clickColumns,
				pgx.CopyFromSlice(len(clicks), func(i int) ([]any, error) {
					c := clicks[i]
					return []any{c.ID, c.ClickTS, c.TS, c.Link, c.URL, c.Rule, c.Region, c.Node,
						c.Country, c.Subdivision, c.City, c.Device, c.OS, c.Browser, c.Lang,
						c.Bot, c.Preview, c.Paused, c.Params, c.Catalog, c.Truncated}, nil
				}))
			if err != nil {
				return fmt.Errorf("copy clicks: %w", err)
			}
			tag, err := tx.Exec(ctx, insertClicks)
			if err != nil {
				return fmt.Errorf("insert clicks: %w", err)
			}
			r.Clicks = int(tag.RowsAffected())
			r.ClickDuplicates = int(n) - r.Clicks
		}
		if len(actions) > 0 {
			n, err := tx.CopyFrom(ctx, pgx.Identifier{"stage_actions"}, actionColumns,
				pgx.CopyFromSlice(len(actions), func(i int) ([]any, error) {
					a := actions[i]
					var amount *string
					if a.Amount != "" {
						amount = &a.Amount
					}
					return []any{a.ID, a.ClickID, a.ClickTS, a.Adv, a.Action, a.OrderID, a.Status,
						amount, a.Currency, a.TS, a.Region, a.Node}, nil
				}))
			if err != nil {
				return fmt.Errorf("copy actions: %w", err)
			}
			tag, err := tx.Exec(ctx, insertActions)
			if err != nil {
				return fmt.Errorf("insert actions: %w", err)
			}
			r.Actions = int(tag.RowsAffected())
			r.ActionDuplicates = int(n) - r.Actions
		}
		return nil
	})
	if err != nil {
		return Result{}, s.fail(fmt.Errorf("collect: write batch: %w", err))
	}
	return r, nil
}

// fail closes the connection unless err is a server's answer on a healthy
// session (a transaction already rolled back), and returns err.
func (s *Store) fail(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || s.conn == nil || s.conn.IsClosed() || s.conn.PgConn().TxStatus() != 'I' {
		s.Close()
	}
	return err
}

// ensurePartitions creates the partitions of both tables for the given
// days (UTC midnights) that are within the configured range and not known
// to exist. Creation is serialised across collectors by an advisory lock,
// each in its own short transaction.
func (s *Store) ensurePartitions(ctx context.Context, days map[time.Time]bool) error {
	today := s.cfg.Now().UTC().Truncate(24 * time.Hour)
	lo := today.AddDate(0, 0, -s.cfg.PartitionsBack)
	hi := today.AddDate(0, 0, s.cfg.PartitionsAhead)
	var todo []time.Time
	for d := range days {
		if d.Before(lo) || d.After(hi) {
			continue // the default partition takes it
		}
		if !s.known[partitionName("clicks", d)] || !s.known[partitionName("actions", d)] {
			todo = append(todo, d)
		}
	}
	for _, d := range todo {
		for _, table := range []string{"clicks", "actions"} {
			name := partitionName(table, d)
			if s.known[name] {
				continue
			}
			if err := s.createPartition(ctx, table, name, d); err != nil {
				return err
			}
			s.known[name] = true
		}
	}
	return nil
}

func partitionName(table string, day time.Time) string {
	return table + "_" + day.Format("20060102")
}

func (s *Store) createPartition(ctx context.Context, table, name string, day time.Time) error {
	created := false
	err := pgx.BeginFunc(ctx, s.conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockPartitions); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&exists); err != nil {
			return err
		}
		if exists {
			return nil
		}
		// Identifiers and bounds are ours (a table name and a date), not
		// input: formatting them in is safe.
		q := fmt.Sprintf("CREATE TABLE %s PARTITION OF %s FOR VALUES FROM ('%s') TO ('%s')",
			pgx.Identifier{name}.Sanitize(), pgx.Identifier{table}.Sanitize(),
			day.Format(time.RFC3339), day.Add(24*time.Hour).Format(time.RFC3339))
		_, err := tx.Exec(ctx, q)
		created = err == nil
		return err
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23514" {
		// check_violation: the default partition already holds rows of
		// that day (from before the day came into range). They stay there,
		// and so will this day's: still one row per id.
		s.log.Warn("partition not created: the default partition holds rows of its day", "partition", name, "err", pe.Message)
		return nil
	}
	if err != nil {
		return fmt.Errorf("collect: create partition %s: %w", name, err)
	}
	if created {
		s.log.Info("partition created", "partition", name)
	}
	return nil
}
