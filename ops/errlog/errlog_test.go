package errlog_test

import (
	"fmt"
	"slices"
	"testing"

	"onebox/ops/errlog"
)

func TestRecentKeepsTheLast(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cap, added int
		want       []string
	}{
		{3, 0, nil},
		{3, 2, []string{"r1", "r0"}},
		{3, 3, []string{"r2", "r1", "r0"}},
		{3, 7, []string{"r6", "r5", "r4"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d of %d", tt.added, tt.cap), func(t *testing.T) {
			t.Parallel()
			l := errlog.New(tt.cap)
			for i := range tt.added {
				l.Add(errlog.Entry{RequestID: fmt.Sprintf("r%d", i), Status: 500})
			}
			var got []string
			for _, e := range l.Recent() {
				got = append(got, e.RequestID)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
	var nilLog *errlog.Log
	nilLog.Add(errlog.Entry{}) // a nil Log records nothing, and does not panic
	if nilLog.Recent() != nil {
		t.Fatal("a nil Log has entries")
	}
}
