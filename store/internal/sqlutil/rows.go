package sqlutil

import "database/sql"

// Scanner is a *sql.Row or *sql.Rows.
type Scanner interface {
	Scan(dest ...any) error
}

// Collect reads every row of rows with scan, and closes rows. The result
// is never nil, so an empty page encodes as [] rather than null.
func Collect[T any](rows *sql.Rows, scan func(Scanner, *T) error) ([]T, error) {
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		var v T
		if err := scan(rows, &v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// ScanValue scans a one-column row.
func ScanValue[T any](r Scanner, v *T) error {
	return r.Scan(v)
}
