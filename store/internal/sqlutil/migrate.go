package sqlutil

import (
	"cmp"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
)

// Migration is one version of a store's schema.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// ID is the migration's NNNN_name, as its file is named and as Apply and
// Pending report it.
func (m Migration) ID() string { return fmt.Sprintf("%04d_%s", m.Version, m.Name) }

// LoadMigrations merges the files migrations/NNNN_name.sql of fsys with
// goms, the versions whose SQL a Go package exports, in version order. It
// checks the versions run from 1 without gaps or duplicates and each has
// SQL, so a store numbers one sequence whichever side supplies a version.
// Errors carry no store name: the caller adds it.
func LoadMigrations(fsys fs.FS, goms []Migration) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	ms := slices.Clone(goms)
	for _, e := range entries {
		num, name, _ := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		version, err := strconv.Atoi(num)
		if err != nil || num != fmt.Sprintf("%04d", version) {
			return nil, fmt.Errorf("migration %s: want a name NNNN_name.sql", e.Name())
		}
		body, err := fs.ReadFile(fsys, "migrations/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration: %w", err)
		}
		ms = append(ms, Migration{Version: version, Name: name, SQL: string(body)})
	}
	slices.SortFunc(ms, func(a, b Migration) int { return cmp.Compare(a.Version, b.Version) })
	for i, m := range ms {
		if i > 0 && m.Version == ms[i-1].Version {
			return nil, fmt.Errorf("migrations %s and %s share a version", ms[i-1].ID(), m.ID())
		}
		if m.Version != i+1 {
			return nil, fmt.Errorf("migration %s: want version %04d", m.ID(), i+1)
		}
		if strings.TrimSpace(m.SQL) == "" {
			return nil, fmt.Errorf("migration %s: no SQL", m.ID())
		}
	}
	return ms, nil
}

// Unapplied is the migrations of ms, in their order, whose versions are
// not among applied (schema_migrations' versions).
func Unapplied(ms []Migration, applied []int) []Migration {
	var out []Migration
	for _, m := range ms {
		if !slices.Contains(applied, m.Version) {
			out = append(out, m)
		}
	}
	return out
}
