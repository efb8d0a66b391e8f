package postgres

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"onebox/store"
	"onebox/store/internal/sqlutil"
)

// Stats are the pool's counters, as plain numbers for metrics.
// PostgreSQL has no single writer: every connection writes and reads.
type Stats struct {
	Open      int           // connections open, idle or in use
	InUse     int           // connections running a statement or transaction
	WaitCount int64         // acquires that had to wait for a connection
	Wait      time.Duration // total time they waited, since New
}

// Stats reads the pool's counters. It is cheap: no query runs.
func (s *Store) Stats() Stats {
	st := s.pool.Stat()
	return Stats{
		Open:      int(st.TotalConns()),
		InUse:     int(st.AcquiredConns()),
		WaitCount: st.EmptyAcquireCount(),
		Wait:      st.EmptyAcquireWaitTime(),
	}
}

// placeholder matches a parameter, $1 … $n.
var placeholder = regexp.MustCompile(`\$(\d+)`)

// Explain returns PostgreSQL's EXPLAIN of query, for the slow-query
// log: the plan's lines as EXPLAIN prints them. It never sees the
// query's arguments: the statement is prepared and explained with every
// parameter NULL under plan_cache_mode force_generic_plan, so the plan is
// the generic one, with $n in it, not one folded for NULLs (PostgreSQL 16
// has EXPLAIN (GENERIC_PLAN) for this; 15 does not). It runs in a
// transaction that is rolled back, and EXPLAIN without ANALYZE runs
// nothing, so a write statement can be explained too. A statement with
// no plan (BEGIN, COMMIT) is an error.
func (s *Store) Explain(ctx context.Context, query string) (string, error) {
	params := 0
	for _, m := range placeholder.FindAllStringSubmatch(query, -1) {
		n, _ := strconv.Atoi(m[1])
		params = max(params, n)
	}
	nulls := strings.TrimSuffix(strings.Repeat("null, ", params), ", ")
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return "", fmt.Errorf("postgres explain: %w", translate("explain", err))
	}
	defer conn.Close()
	// A prepared statement belongs to the session, not the transaction:
	// the rollback would leave it on the pool's connection. (Deferred
	// before the rollback, so it runs after it; "does not exist" when
	// PREPARE failed is fine.)
	defer func() { _, _ = conn.ExecContext(context.WithoutCancel(ctx), `deallocate onebox_explain`) }()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("postgres explain: %w", translate("explain", err))
	}
	defer func() { _ = tx.Rollback() }()
	for _, q := range []string{
		`set local plan_cache_mode = force_generic_plan`,
		`prepare onebox_explain as ` + query,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return "", fmt.Errorf("postgres explain: %w", translate("explain", err))
		}
	}
	explain := `explain execute onebox_explain`
	if params > 0 {
		explain += `(` + nulls + `)`
	}
	rows, err := tx.QueryContext(ctx, explain)
	if err != nil {
		return "", fmt.Errorf("postgres explain: %w", translate("explain", err))
	}
	lines, err := sqlutil.Collect(rows, sqlutil.ScanValue[string])
	if err != nil {
		return "", fmt.Errorf("postgres explain: %w", translate("explain", err))
	}
	return strings.Join(lines, "\n"), nil
}

// IntegrityCheck is a cheap check that the database answers and its
// tables can be read: it counts the rows of each (RowCounts). PostgreSQL
// has no PRAGMA integrity_check; page-level checks (amcheck,
// pg_amcheck) and checksums (initdb --data-checksums) are the
// operator's, outside onebox.
func (s *Store) IntegrityCheck(ctx context.Context) error {
	if _, err := s.RowCounts(ctx); err != nil {
		return fmt.Errorf("postgres: integrity check: %w", err)
	}
	return nil
}

// RowCounts counts the rows of every table of the store's schema (the
// first schema of the search path, where the migrations made them), by
// table name.
func (s *Store) RowCounts(ctx context.Context) (map[string]int64, error) {
	const tablesSQL = `select tablename from pg_tables where schemaname = current_schema() order by tablename`
	tables, err := queryAll(ctx, s, onPrimary, "tables", tablesSQL, sqlutil.ScanValue[string])
	if err != nil {
		return nil, err
	}
	counts := make(map[string]int64, len(tables))
	for _, t := range tables {
		query := `select count(*) from ` + pgx.Identifier{t}.Sanitize()
		n, err := readOne(ctx, s, onPrimary, "count_rows", query, sqlutil.ScanValue[int64])
		if err != nil {
			return nil, fmt.Errorf("counting %s: %w", t, err)
		}
		counts[t] = n
	}
	return counts, nil
}

// MediaKeys lists, sorted and without repeats, every media key the
// database references: the original and the variants of every photo.
// One statement reads them all, so they belong to one state of the
// database.
func (s *Store) MediaKeys(ctx context.Context) ([]string, error) {
	const query = `select original_key, variants from photos`
	perPhoto, err := queryAll(ctx, s, s.reader(store.MustBeFresh, ""), "media_keys", query, func(r scanner, keys *[]string) error {
		var original string
		var variants []store.Variant
		if err := r.Scan(&original, jsonVariants{&variants}); err != nil {
			return err
		}
		*keys = sqlutil.PhotoKeys(original, variants)
		return nil
	})
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, k := range perPhoto {
		keys = append(keys, k...)
	}
	slices.Sort(keys)
	return slices.Compact(keys), nil
}
