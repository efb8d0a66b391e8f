package sqlutil_test

import (
	"database/sql"
	"errors"
	"slices"
	"testing"

	_ "modernc.org/sqlite"

	"onebox/store/internal/sqlutil"
)

func TestCollect(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	errScan := errors.New("scan failed")
	failOn2 := func(r sqlutil.Scanner, v *int) error {
		if err := r.Scan(v); err != nil {
			return err
		}
		if *v == 2 {
			return errScan
		}
		return nil
	}
	tests := []struct {
		name    string
		query   string
		scan    func(sqlutil.Scanner, *int) error
		want    []int
		wantErr error
	}{
		{"rows in order", "SELECT 1 UNION ALL SELECT 3", sqlutil.ScanValue[int], []int{1, 3}, nil},
		// An empty page is [] in JSON, never null.
		{"no rows", "SELECT 1 WHERE 0", sqlutil.ScanValue[int], []int{}, nil},
		{"scan error", "SELECT 1 UNION ALL SELECT 2", failOn2, nil, errScan},
	}
	for _, tt := range tests {
		rows, err := db.QueryContext(t.Context(), tt.query)
		if err != nil {
			t.Fatal(err)
		}
		got, err := sqlutil.Collect(rows, tt.scan)
		if !errors.Is(err, tt.wantErr) || !slices.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
			t.Errorf("%s: got %#v, %v; want %#v, %v", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}
