package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"onebox/dbcopy"
	"onebox/store/internal/sqlutil"
)

var _ dbcopy.Database = (*Store)(nil)

// maxParams is the most bind parameters one PostgreSQL statement takes.
const maxParams = 65535

// ReadRows reads up to limit rows of t after the key after, in key
// order, for `onebox copy`. Every read goes to the primary: a copy must
// see every row.
//
// Text keys are compared and ordered in the "C" collation, byte order,
// which is SQLite's: both ends must page, and checksum, in one order.
// onebox's own key columns are "C" already (their indexes serve the
// order); goqite's ids take the database's collation.
func (s *Store) ReadRows(ctx context.Context, t dbcopy.Table, after []any, limit int) ([][]any, error) {
	sel := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		sel[i] = quote(c.Name)
		if c.Kind == dbcopy.JSON {
			sel[i] += "::text" // jsonb's own spelling; dbcopy compares JSON by value
		}
	}
	key := make([]string, t.Key)
	for i, c := range t.Columns[:t.Key] {
		key[i] = keyExpr(c, quote(c.Name))
	}
	query := "select " + strings.Join(sel, ", ") + " from " + quote(t.Name)
	var args []any
	if after != nil {
		ps := make([]string, t.Key)
		for i, c := range t.Columns[:t.Key] {
			ps[i] = keyExpr(c, fmt.Sprintf("$%d", i+1))
			args = append(args, toPostgres(after[i]))
		}
		query += " where (" + strings.Join(key, ", ") + ") > (" + strings.Join(ps, ", ") + ")"
	}
	query += " order by " + strings.Join(key, ", ") + fmt.Sprintf(" limit $%d", len(args)+1)
	args = append(args, limit)
	return queryAll(ctx, s, onPrimary, "copy_read_"+t.Name, query, func(r scanner, row *[]any) error {
		raw := make([]any, len(t.Columns))
		ptrs := make([]any, len(raw))
		for i := range raw {
			ptrs[i] = &raw[i]
		}
		if err := r.Scan(ptrs...); err != nil {
			return err
		}
		*row = make([]any, len(raw))
		for i, c := range t.Columns {
			v, err := fromPostgres(c, raw[i])
			if err != nil {
				return fmt.Errorf("%s.%s: %w", t.Name, c.Name, err)
			}
			(*row)[i] = v
		}
		return nil
	}, args...)
}

// WriteRows inserts rows into t in one transaction, skipping keys that
// are there already, and says how many it inserted. The rows go in as
// few multi-row INSERTs as the bind-parameter limit allows. A table
// with an identity column takes the copied ids as they are (OVERRIDING
// SYSTEM VALUE); ResetSerial moves its sequence past them.
func (s *Store) WriteRows(ctx context.Context, t dbcopy.Table, rows [][]any) (int, error) {
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = quote(c.Name)
	}
	head := "insert into " + quote(t.Name) + " (" + strings.Join(cols, ", ") + ")"
	if t.Serial != "" {
		head += " overriding system value"
	}
	per := max(1, maxParams/len(t.Columns))
	name := "copy_write_" + t.Name
	inserted := 0
	err := s.inTx(ctx, name, func(tx *sql.Tx) error {
		inserted = 0 // inTx may run this again
		for start := 0; start < len(rows); start += per {
			chunk := rows[start:min(start+per, len(rows))]
			var b strings.Builder
			b.WriteString(head)
			b.WriteString(" values ")
			args := make([]any, 0, len(chunk)*len(t.Columns))
			for r, row := range chunk {
				if r > 0 {
					b.WriteString(", ")
				}
				b.WriteByte('(')
				for i, v := range row {
					if i > 0 {
						b.WriteString(", ")
					}
					args = append(args, toPostgres(v))
					fmt.Fprintf(&b, "$%d", len(args))
				}
				b.WriteByte(')')
			}
			b.WriteString(" on conflict do nothing")
			res, err := s.txExec(ctx, tx, name, b.String(), args...)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			inserted += int(n)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return inserted, nil
}

// CountRows counts t's rows on the primary.
func (s *Store) CountRows(ctx context.Context, t dbcopy.Table) (int64, error) {
	return readOne(ctx, s, onPrimary, "copy_count_"+t.Name, "select count(*) from "+quote(t.Name), sqlutil.ScanValue[int64])
}

// ResetSerial moves the sequence behind t.Serial (an identity column's)
// past the largest value in t, so the next row inserted without an id
// gets a new one rather than a copied row's. On an empty table the next
// id is 1.
func (s *Store) ResetSerial(ctx context.Context, t dbcopy.Table) error {
	col := quote(t.Serial)
	query := "select setval(pg_get_serial_sequence($1, $2), coalesce(max(" + col + "), 0) + 1, false) from " + quote(t.Name)
	_, err := readOne(ctx, s, onPrimary, "copy_reset_serial_"+t.Name, query, sqlutil.ScanValue[int64], t.Name, t.Serial)
	return err
}

// quote is a table or column name as an SQL identifier. The names are
// dbcopy's own, never input.
func quote(name string) string { return `"` + name + `"` }

// keyExpr is expr as a key column c is compared and ordered by.
func keyExpr(c dbcopy.Column, expr string) string {
	if c.Kind == dbcopy.Text {
		return expr + ` collate "C"`
	}
	return expr
}

// toPostgres is a copied value as a parameter: times in UTC, which
// PostgreSQL keeps to the microsecond. JSON text goes in as it is and
// the jsonb column parses it.
func toPostgres(v any) any {
	if t, ok := v.(time.Time); ok {
		return utc(t)
	}
	return v
}

// fromPostgres is a scanned value as dbcopy carries it.
func fromPostgres(c dbcopy.Column, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch c.Kind {
	case dbcopy.Time:
		if t, ok := v.(time.Time); ok {
			return t.UTC(), nil
		}
	case dbcopy.Text, dbcopy.JSON:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case dbcopy.Int:
		if i, ok := v.(int64); ok {
			return i, nil
		}
	case dbcopy.Bytes:
		if p, ok := v.([]byte); ok {
			return p, nil
		}
	}
	return nil, fmt.Errorf("got %T for a column of kind %d", v, c.Kind)
}
