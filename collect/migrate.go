package collect

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// migrationFS holds the schema, one file per version: NNNN_name.sql,
// numbered from 0001 without gaps. A released file is never edited; a
// change is a new file.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

// Advisory lock keys (pg_advisory_lock's bigint space is shared by every
// client of the database: these are "clickedge" and a number).
const (
	lockMigrate    int64 = 0x636c69636b656401 // held while migrating
	lockPartitions int64 = 0x636c69636b656402 // held while creating partitions
)

type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads and checks the embedded migrations.
func loadMigrations() ([]migration, error) {
	return parseMigrations(migrationFS, "migrations")
}

func parseMigrations(fsys fs.FS, dir string) ([]migration, error) {
	ents, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range ents {
		name := e.Name()
		num, rest, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || len(num) != 4 || rest == "" || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("collect: migration %s: want NNNN_name.sql", name)
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: rest, sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("collect: migration %04d_%s: want version %d (versions start at 1 without gaps)", m.version, m.name, i+1)
		}
	}
	return ms, nil
}

// SchemaVersion is the schema version this build migrates to.
func SchemaVersion() int {
	ms, err := loadMigrations()
	if err != nil {
		return 0
	}
	return len(ms)
}

// Migrate brings the database's schema to SchemaVersion and returns the
// versions it applied (none when it was current). It holds a session
// advisory lock throughout, so collectors starting together migrate once:
// the others wait and then find nothing to do. Each migration commits in
// its own transaction together with its schema_migrations row. A database
// already at a newer version than this build knows is refused.
func Migrate(ctx context.Context, conn *pgx.Conn) (applied []int, err error) {
	return migrate(ctx, conn, migrationFS, "migrations")
}

func migrate(ctx context.Context, conn *pgx.Conn, fsys fs.FS, dir string) (applied []int, err error) {
	ms, err := parseMigrations(fsys, dir)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockMigrate); err != nil {
		return nil, fmt.Errorf("collect: migrate: lock: %w", err)
	}
	defer func() {
		// A failed unlock (the connection broke) is released by the
		// server with the session.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockMigrate)
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("collect: migrate: schema_migrations: %w", err)
	}
	var current int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&current); err != nil {
		return nil, fmt.Errorf("collect: migrate: read version: %w", err)
	}
	if current > len(ms) {
		return nil, fmt.Errorf("collect: migrate: the database is at schema version %d, newer than this collector's %d: run a newer clickedge", current, len(ms))
	}
	for _, m := range ms[current:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("collect: migrate: %04d_%s: %w", m.version, m.name, err)
		}
		applied = append(applied, m.version)
	}
	return applied, nil
}
