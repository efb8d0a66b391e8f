package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"onebox/dbcopy"
	jobsqlite "onebox/jobs/sqlite"
	"onebox/store/internal/sqlutil"
)

var _ dbcopy.Database = (*Store)(nil)

// ReadRows reads up to limit rows of t after the key after, in key order,
// for `onebox copy`.
func (s *Store) ReadRows(ctx context.Context, t dbcopy.Table, after []any, limit int) ([][]any, error) {
	cols := columnList(t.Columns)
	key := columnList(t.Columns[:t.Key])
	query := "SELECT " + cols + " FROM " + t.Name
	args := []any{}
	if after != nil {
		query += " WHERE (" + key + ") > (" + placeholders(t.Key) + ")"
		for i, v := range after {
			args = append(args, toSQLite(t.Columns[i], v))
		}
	}
	query += " ORDER BY " + key + " LIMIT ?"
	args = append(args, limit)
	var out [][]any
	err := s.observe(ctx, "copy_read_"+t.Name, query, func() error {
		rows, err := s.reader.db.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			raw := make([]any, len(t.Columns))
			ptrs := make([]any, len(raw))
			for i := range raw {
				ptrs[i] = &raw[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				return err
			}
			row := make([]any, len(raw))
			for i, c := range t.Columns {
				if row[i], err = fromSQLite(c, raw[i]); err != nil {
					return fmt.Errorf("%s.%s: %w", t.Name, c.Name, err)
				}
			}
			out = append(out, row)
		}
		return rows.Err()
	})
	return out, err
}

// WriteRows inserts rows into t in one transaction, skipping keys that
// are there already. t's triggers are dropped for the batch and created
// again before it commits (no reader sees the schema without them): a
// copy writes each row as the source holds it, where an insert trigger
// (goqite_turn, which gives a job without a key its turn) would rewrite
// it.
func (s *Store) WriteRows(ctx context.Context, t dbcopy.Table, rows [][]any) (int, error) {
	query := "INSERT INTO " + t.Name + " (" + columnList(t.Columns) + ") VALUES (" + placeholders(len(t.Columns)) + ") ON CONFLICT DO NOTHING"
	inserted := 0
	err := s.inTxAlone(ctx, "copy_write_"+t.Name, func(tx *sql.Tx) error {
		restore, err := dropTriggers(ctx, tx, t.Name)
		if err != nil {
			return err
		}
		if err := writeRows(ctx, tx, t, query, rows, &inserted); err != nil {
			return err
		}
		return restore()
	})
	return inserted, err
}

// dropTriggers drops table's triggers in tx; restore creates them again.
func dropTriggers(ctx context.Context, tx *sql.Tx, table string) (restore func() error, err error) {
	type trigger struct{ name, sql string }
	rows, err := tx.QueryContext(ctx, `SELECT name, sql FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ?`, table)
	if err != nil {
		return nil, fmt.Errorf("sqlite copy: %s's triggers: %w", table, err)
	}
	triggers, err := sqlutil.Collect(rows, func(r sqlutil.Scanner, tr *trigger) error { return r.Scan(&tr.name, &tr.sql) })
	if err != nil {
		return nil, fmt.Errorf("sqlite copy: %s's triggers: %w", table, err)
	}
	for _, tr := range triggers {
		if _, err := tx.ExecContext(ctx, `DROP TRIGGER `+quoteIdent(tr.name)); err != nil {
			return nil, fmt.Errorf("sqlite copy: drop trigger %s: %w", tr.name, err)
		}
	}
	return func() error {
		for _, tr := range triggers {
			if _, err := tx.ExecContext(ctx, tr.sql); err != nil {
				return fmt.Errorf("sqlite copy: create trigger %s again: %w", tr.name, err)
			}
		}
		return nil
	}, nil
}

// writeRows runs query, t's INSERT, for each row in tx, counting the
// rows inserted.
func writeRows(ctx context.Context, tx *sql.Tx, t dbcopy.Table, query string, rows [][]any, inserted *int) error {
	st, err := tx.PrepareContext(ctx, query)
	if err != nil {
		return err
	}
	defer st.Close()
	args := make([]any, len(t.Columns))
	for _, row := range rows {
		for i, c := range t.Columns {
			args[i] = toSQLite(c, row[i])
		}
		res, err := st.ExecContext(ctx, args...)
		if err != nil {
			return translate("copy_write_"+t.Name, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		*inserted += int(n)
	}
	return nil
}

// CountRows counts t's rows.
func (s *Store) CountRows(ctx context.Context, t dbcopy.Table) (int64, error) {
	var n int64
	query := "SELECT count(*) FROM " + t.Name
	err := s.observe(ctx, "copy_count_"+t.Name, query, func() error {
		return s.reader.db.QueryRowContext(ctx, query).Scan(&n)
	})
	return n, err
}

// ResetSerial does nothing: an AUTOINCREMENT table moves its sequence
// (sqlite_sequence) past every id inserted explicitly.
func (s *Store) ResetSerial(context.Context, dbcopy.Table) error { return nil }

func columnList(cols []dbcopy.Column) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = `"` + c.Name + `"`
	}
	return strings.Join(names, ", ")
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// toSQLite is a copied value as this schema stores it: times as text,
// in goqite's millisecond spelling for the queue's columns, whose text
// order must be their time order.
func toSQLite(c dbcopy.Column, v any) any {
	t, ok := v.(time.Time)
	if !ok {
		return v
	}
	if c.Precision == time.Millisecond {
		return t.UTC().Format(jobsqlite.TimeFormat)
	}
	return formatTime(t)
}

// fromSQLite is a scanned value as dbcopy carries it.
func fromSQLite(c dbcopy.Column, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch c.Kind {
	case dbcopy.Time:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("got %T, want TEXT", v)
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, err
		}
		return t.UTC(), nil
	case dbcopy.Text, dbcopy.JSON:
		switch x := v.(type) {
		case string:
			return x, nil
		case []byte:
			return string(x), nil
		}
	case dbcopy.Int:
		if x, ok := v.(int64); ok {
			return x, nil
		}
	case dbcopy.Bytes:
		switch x := v.(type) {
		case []byte:
			return x, nil
		case string:
			return []byte(x), nil
		}
	}
	return nil, fmt.Errorf("got %T for a column of kind %d", v, c.Kind)
}

// quoteIdent quotes name as an SQL identifier.
func quoteIdent(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }
