package sqlite

import "context"

// Pragma reads one pragma through the writer, or through the reader pool
// when reader is set, to check what the DSN really applied.
func (s *Store) Pragma(ctx context.Context, reader bool, name string) (string, error) {
	p := s.writer
	if reader {
		p = s.reader
	}
	var v string
	err := p.db.QueryRowContext(ctx, "PRAGMA "+name).Scan(&v)
	return v, err
}

// MigrationCount is how many migrations are embedded.
func MigrationCount() (int, error) {
	ms, err := migrations()
	return len(ms), err
}
