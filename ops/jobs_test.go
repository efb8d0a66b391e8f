package ops_test

import (
	"strings"
	"testing"

	"onebox/ops"
)

func TestAbandonedJobsCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		abandoned, cap int
		ready          bool
	}{
		{"none", 0, 1, true},
		{"at the cap", 1, 1, false},
		{"under the cap", 7, 8, true},
		{"over the cap", 9, 8, false},
		{"cap below 1 counts as 1", 1, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := ops.NewHealth(ops.AbandonedJobsCheck(func() int { return tt.abandoned }, tt.cap))
			ready, rep := h.Ready(t.Context())
			if ready != tt.ready {
				t.Fatalf("ready = %v (%+v), want %v", ready, rep, tt.ready)
			}
			reason := rep.Checks["jobs"]
			if tt.ready {
				if reason != "ok" || rep.Status != "ready" {
					t.Errorf("report %+v, want jobs ok", rep)
				}
				return
			}
			if rep.Status != "unready" || !strings.Contains(reason, "abandoned job handlers") {
				t.Errorf("report %+v, want unready with a jobs reason naming the abandoned handlers", rep)
			}
		})
	}
}
