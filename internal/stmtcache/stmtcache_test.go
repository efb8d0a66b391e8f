package stmtcache_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"path/filepath"
	"sync/atomic"
	"testing"

	"modernc.org/sqlite"

	"onebox/internal/stmtcache"
)

// counts is what a counting SQLite connection saw.
// prepared and closed count statements; direct counts texts run without
// one.
type counts struct{ prepared, closed, direct atomic.Int64 }

// countingDriver is modernc.org/sqlite, counting the statements its
// connections prepare and close.
type countingDriver struct{ c *counts }

func (d countingDriver) Open(dsn string) (driver.Conn, error) {
	dc, err := (&sqlite.Driver{}).Open(dsn)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: dc.(stmtcache.Conn), c: d.c}, nil
}

type countingConn struct {
	stmtcache.Conn
	c *counts
}

func (cc *countingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	ds, err := cc.Conn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	cc.c.prepared.Add(1)
	return &countingStmt{stmt: ds.(stmt), c: cc.c}, nil
}

func (cc *countingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	cc.c.direct.Add(1)
	return cc.Conn.ExecContext(ctx, query, args)
}

func (cc *countingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	cc.c.direct.Add(1)
	return cc.Conn.QueryContext(ctx, query, args)
}

type stmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

type countingStmt struct {
	stmt
	c *counts
}

func (s *countingStmt) Close() error {
	s.c.closed.Add(1)
	return s.stmt.Close()
}

// open returns a one-connection pool on a new database with a table t
// of the numbers 1 to 3, and what its connection counts.
func open(t *testing.T, max int) (*sql.DB, *counts) {
	t.Helper()
	c := &counts{}
	db := sql.OpenDB(stmtcache.New(countingDriver{c}, filepath.Join(t.TempDir(), "db"), max))
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.Exec(`CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1), (2), (3)`); err != nil {
		t.Fatal(err)
	}
	c.prepared.Store(0)
	c.direct.Store(0)
	return db, c
}

func TestStatementsRunByTextArePreparedOnce(t *testing.T) {
	t.Parallel()
	db, c := open(t, 8)
	ctx := t.Context()
	for i := range 10 {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		// As goqite's Send runs its INSERT: by text, in a transaction.
		if _, err := tx.ExecContext(ctx, `INSERT INTO t VALUES (?)`, 10+i); err != nil {
			t.Fatal(err)
		}
		var sum int
		if err := tx.QueryRowContext(ctx, `SELECT sum(n) FROM t WHERE n >= ?`, 10).Scan(&sum); err != nil {
			t.Fatal(err)
		}
		if want := (10 + 10 + i) * (i + 1) / 2; sum != want {
			t.Fatalf("run %d: sum %d, want %d", i, sum, want)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if p, d := c.prepared.Load(), c.direct.Load(); p != 2 || d != 0 {
		t.Errorf("2 texts run 10 times each: prepared %d statements and ran %d texts uncached, want 2 and 0", p, d)
	}
}

// A text run again while the rows of its first run are open, or past the
// cache's size, runs uncached and still answers right.
func TestUncachedRuns(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		max  int
		run  func(ctx context.Context, db *sql.DB) (int, error)
		want int
		// statements prepared and texts run uncached
		prepared, direct int64
	}{
		{
			name: "same text while its rows are open",
			max:  8,
			run: func(ctx context.Context, db *sql.DB) (int, error) {
				conn, err := db.Conn(ctx)
				if err != nil {
					return 0, err
				}
				defer conn.Close()
				rows, err := conn.QueryContext(ctx, `SELECT n FROM t WHERE n >= ? ORDER BY n`, 1)
				if err != nil {
					return 0, err
				}
				defer rows.Close()
				total := 0
				for rows.Next() {
					var n, inner int
					if err := rows.Scan(&n); err != nil {
						return 0, err
					}
					if err := conn.QueryRowContext(ctx, `SELECT n FROM t WHERE n >= ? ORDER BY n`, n).Scan(&inner); err != nil {
						return 0, err
					}
					total += n*10 + inner
				}
				return total, rows.Err()
			},
			want:     11 + 22 + 33,
			prepared: 1, direct: 3,
		},
		{
			// open's CREATE takes the first place.
			name: "cache full",
			max:  2,
			run: func(ctx context.Context, db *sql.DB) (int, error) {
				total := 0
				for _, q := range []string{`SELECT count(*) FROM t`, `SELECT max(n) FROM t`, `SELECT count(*) FROM t`, `SELECT max(n) FROM t`} {
					var n int
					if err := db.QueryRowContext(ctx, q).Scan(&n); err != nil {
						return 0, err
					}
					total += n
				}
				return total, nil
			},
			want:     12,
			prepared: 1, direct: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db, c := open(t, tt.max)
			got, err := tt.run(t.Context(), db)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
			if p, d := c.prepared.Load(), c.direct.Load(); p != tt.prepared || d != tt.direct {
				t.Errorf("prepared %d statements and ran %d texts uncached, want %d and %d", p, d, tt.prepared, tt.direct)
			}
		})
	}
}

func TestCloseClosesStatements(t *testing.T) {
	t.Parallel()
	c := &counts{}
	db := sql.OpenDB(stmtcache.New(countingDriver{c}, filepath.Join(t.TempDir(), "db"), 8))
	db.SetMaxOpenConns(1)
	for _, q := range []string{`CREATE TABLE t (n INTEGER)`, `INSERT INTO t VALUES (1)`, `INSERT INTO t VALUES (1)`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if p, cl := c.prepared.Load(), c.closed.Load(); p != 2 || cl != 2 {
		t.Errorf("prepared %d, closed %d statements; want 2 and 2", p, cl)
	}
}
