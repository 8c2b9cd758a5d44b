package pgtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// A committed row survives a crash and the restart after it, on the same
// URL; a second cluster is independent of the first.
func TestCrashRestartKeepsCommitted(t *testing.T) {
	c := Start(t, nil)
	url := c.CreateDatabase("crashy")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	exec := func(sql string) {
		t.Helper()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec("CREATE TABLE t (x int)")
	exec("INSERT INTO t VALUES (1), (2)")
	c.Crash()
	if err := ping(url); err == nil {
		t.Fatalf("ping after Crash succeeded, want an error")
	}
	c.Restart()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect after restart: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatalf("count: %v", err)
	}
	if n != 2 {
		t.Fatalf("rows after crash and restart = %d, want 2", n)
	}

	other := Start(t, nil)
	if other.Port() == c.Port() {
		t.Fatalf("two clusters on port %d", c.Port())
	}
	if err := ping(other.DatabaseURL("crashy")); err == nil {
		t.Fatalf("database crashy exists on the second cluster, want it private to the first")
	}
	c.Stop()
	c.Restart()
}

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// Shared databases are distinct databases on one cluster.
func TestSharedDatabase(t *testing.T) {
	a, b := SharedDatabase(t), SharedDatabase(t)
	if a == b {
		t.Fatalf("SharedDatabase twice = %s both times", a)
	}
	for _, u := range []string{a, b} {
		if err := ping(u); err != nil {
			t.Fatalf("ping %s: %v", u, err)
		}
	}
	if shared.c.Port() == 5432 {
		t.Fatalf("shared cluster on the system port 5432")
	}
}
