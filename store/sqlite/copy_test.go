package sqlite_test

import (
	"path/filepath"
	"slices"
	"testing"

	"onebox/dbcopy/dbcopytest"
	"onebox/store/sqlite"
)

// TestWriteRowsKeepsTriggers: a copy's batch writes its rows without the
// table's triggers (dbcopytest checks the rows arrive as they were) and
// leaves the triggers as it found them.
func TestWriteRowsKeepsTriggers(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "onebox.db")
	s := mustNew(t, sqlite.Options{Path: path})
	raw := openRaw(t, path, 0)
	triggers := func() []string {
		return column(t, raw, `SELECT name || ': ' || sql FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = 'goqite' ORDER BY name`)
	}
	before := triggers()
	if len(before) < 2 {
		t.Fatalf("goqite's triggers: %q, want goqite_turn and jobs_errors_gone", before)
	}
	goqite := dbcopytest.TableNamed(t, "goqite")
	rows, err := s.ReadRows(t.Context(), goqite, nil, 1)
	if err != nil || len(rows) != 0 {
		t.Fatalf("an empty queue: %v %v", rows, err)
	}
	if _, err := s.WriteRows(t.Context(), goqite, nil); err != nil {
		t.Fatal(err)
	}
	if after := triggers(); !slices.Equal(after, before) {
		t.Errorf("goqite's triggers after a copy's batch: %q, want %q", after, before)
	}
}
