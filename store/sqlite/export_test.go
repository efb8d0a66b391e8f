package sqlite

import (
	"context"
	"fmt"
	"io/fs"
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

// LoadMigrations checks the migrations of fsys merged with Go-supplied
// ones, given by version as name and SQL, and returns their
// "NNNN_name" in order.
func LoadMigrations(fsys fs.FS, goms map[int][2]string) ([]string, error) {
	var in []migration
	for v, m := range goms {
		in = append(in, migration{version: v, name: m[0], sql: m[1]})
	}
	ms, err := loadMigrations(fsys, in)
	var out []string
	for _, m := range ms {
		out = append(out, fmt.Sprintf("%04d_%s", m.version, m.name))
	}
	return out, err
}
