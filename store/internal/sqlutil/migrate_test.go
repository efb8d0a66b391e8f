package sqlutil_test

import (
	"slices"
	"testing"
	"testing/fstest"

	"onebox/store/internal/sqlutil"
)

func TestLoadMigrations(t *testing.T) {
	t.Parallel()
	files := func(names ...string) fstest.MapFS {
		fsys := fstest.MapFS{}
		for _, n := range names {
			fsys["migrations/"+n] = &fstest.MapFile{Data: []byte("CREATE TABLE t (x)")}
		}
		return fsys
	}
	goSQL := func(version int, name string) sqlutil.Migration {
		return sqlutil.Migration{Version: version, Name: name, SQL: "CREATE TABLE g (x)"}
	}
	tests := []struct {
		name string
		fsys fstest.MapFS
		goms []sqlutil.Migration
		want []string // nil: an error
	}{
		{"files only", files("0001_a.sql", "0002_b.sql"), nil, []string{"0001_a", "0002_b"}},
		{"go between files", files("0001_a.sql", "0003_c.sql"), []sqlutil.Migration{goSQL(2, "b")}, []string{"0001_a", "0002_b", "0003_c"}},
		{"go last", files("0001_a.sql"), []sqlutil.Migration{goSQL(2, "b")}, []string{"0001_a", "0002_b"}},
		{"gap", files("0001_a.sql", "0003_c.sql"), nil, nil},
		{"not from 1", files("0002_b.sql"), nil, nil},
		{"file and go share a version", files("0001_a.sql", "0002_b.sql"), []sqlutil.Migration{goSQL(2, "b")}, nil},
		{"go without SQL", files("0001_a.sql"), []sqlutil.Migration{{Version: 2, Name: "b", SQL: " \n"}}, nil},
		{"bad name", files("0001_a.sql", "2_b.sql"), nil, nil},
	}
	for _, tt := range tests {
		ms, err := sqlutil.LoadMigrations(tt.fsys, tt.goms)
		var got []string
		for _, m := range ms {
			got = append(got, m.ID())
		}
		switch {
		case tt.want == nil && err == nil:
			t.Errorf("%s: got %v, want an error", tt.name, got)
		case tt.want != nil && (err != nil || !slices.Equal(got, tt.want)):
			t.Errorf("%s: got %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
}

func TestUnapplied(t *testing.T) {
	t.Parallel()
	ms := []sqlutil.Migration{{Version: 1, Name: "a"}, {Version: 2, Name: "b"}, {Version: 3, Name: "c"}}
	tests := []struct {
		name    string
		applied []int
		want    []string
	}{
		{"fresh database", nil, []string{"0001_a", "0002_b", "0003_c"}},
		{"some applied", []int{1, 3}, []string{"0002_b"}},
		{"all applied", []int{3, 2, 1}, nil},
	}
	for _, tt := range tests {
		var got []string
		for _, m := range sqlutil.Unapplied(ms, tt.applied) {
			got = append(got, m.ID())
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestExpandOnly(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sql  string
		want bool // expand-only
	}{
		{"CREATE TABLE t (x TEXT NOT NULL) STRICT", true},
		{"ALTER TABLE t ADD COLUMN d TEXT NOT NULL DEFAULT ''", true},
		{"alter table t add column if not exists d bigint not null default 0", true},
		{"alter table t add column e timestamptz", true},
		{"CREATE INDEX i ON t (x);\nDROP INDEX old_i", true},
		{"drop index if exists old_i", true},
		{"alter table t alter column e drop not null", true},
		{"UPDATE t SET d = 'x' -- drop table t in a comment", true},
		{"-- why\n" + sqlutil.ContractMark + " drops t.old, unused since 0007\nALTER TABLE t DROP COLUMN old", true},
		{"drop trigger if exists tr on t;\ncreate trigger tr before update on t execute function f()", true},
		{"DROP VIEW v; CREATE VIEW v AS SELECT x FROM t", true},
		{"drop trigger if exists tr on t", false},
		{"drop view v; create view w as select 1", false},
		{"DROP TABLE t", false},
		{"ALTER TABLE t DROP COLUMN x", false},
		{"alter table t drop x", false},
		{"ALTER TABLE t RENAME TO u", false},
		{"ALTER TABLE t RENAME COLUMN x TO y", false},
		{"alter table t alter column x type bigint", false},
		{"alter table t alter column x set data type bigint", false},
		{"alter table t alter column e set not null", false},
		{"alter table t alter column e drop default", false},
		{"ALTER TABLE t ADD COLUMN d TEXT NOT NULL", false},
		{"CREATE INDEX i ON t (x);\n\nDROP   VIEW v", false},
		{"-- " + sqlutil.ContractMark + " only mentioned in a comment's text\nDROP TABLE t", false},
	}
	for _, tt := range tests {
		err := sqlutil.ExpandOnly(sqlutil.Migration{Version: 7, Name: "m", SQL: tt.sql})
		if got := err == nil; got != tt.want {
			t.Errorf("ExpandOnly(%q) = %v, want expand-only %v", tt.sql, err, tt.want)
		}
	}
}
