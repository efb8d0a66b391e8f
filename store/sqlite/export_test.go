package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	jobsqlite "onebox/jobs/sqlite"
	"onebox/store/internal/sqlutil"
)

// Pragma reads one pragma through the writer, the reader pool or the key
// reader, to check what the DSN really applied.
func (s *Store) Pragma(ctx context.Context, pool, name string) (string, error) {
	var v string
	switch pool {
	case "writer":
		return v, s.writer.db.QueryRowContext(ctx, "PRAGMA "+name).Scan(&v)
	case "reader":
		return v, s.reader.db.QueryRowContext(ctx, "PRAGMA "+name).Scan(&v)
	case "keys":
		var a any
		err := s.keys.read(ctx, false, "PRAGMA "+name, nil, func(r scanner) error { return r.Scan(&a) })
		return fmt.Sprint(a), err
	}
	return "", fmt.Errorf("no pool %q", pool)
}

// MigrationCount is how many migrations there are, files and Go.
func MigrationCount() (int, error) {
	ms, err := migrations()
	return len(ms), err
}

// Writer is the store's one writer connection pool, for goqite's own
// operations on the store's queue.
func (s *Store) Writer() *sql.DB { return s.writer.db }

// Migrations are the store's migrations, files and Go, in order.
func Migrations() ([]sqlutil.Migration, error) { return migrations() }

// InTx and InTxAlone are the store's write paths, for the group commit
// tests.
func (s *Store) InTx(ctx context.Context, name string, fn func(*sql.Tx) error) error {
	return s.inTx(ctx, name, fn)
}

func (s *Store) InTxAlone(ctx context.Context, name string, fn func(*sql.Tx) error) error {
	return s.inTxAlone(ctx, name, fn)
}

// SetGroupAge sets how long after its BEGIN a group takes new writes,
// for tests whose writes queue slower than production's.
func (s *Store) SetGroupAge(d time.Duration) { s.writer.lock.groupAge = d }

// ExecWrite is the store's write path for single statements.
func (s *Store) ExecWrite(ctx context.Context, name string, fn func(w jobsqlite.Writer) error) error {
	return s.execWrite(ctx, name, fn)
}

// WriteMarks is how many writes the key reader has been told finished.
func (s *Store) WriteMarks() uint64 { return s.writer.lock.marks.count.Load() }
