package ops_test

import (
	"context"
	"errors"
	"testing"

	"onebox/ops"
)

// TestAdvisoryCheck: an advisory check's failure is reported and leaves
// the instance ready; an ordinary one's makes it unready.
func TestAdvisoryCheck(t *testing.T) {
	t.Parallel()
	fail := func(context.Context) error { return errors.New("replica behind") }
	tests := []struct {
		advisory bool
		ready    bool
		status   string
	}{{true, true, "ready"}, {false, false, "unready"}}
	for _, tt := range tests {
		h := ops.NewHealth(ops.Check{Name: "replicas", Probe: fail, Advisory: tt.advisory})
		ready, rep := h.Ready(t.Context())
		if ready != tt.ready || rep.Status != tt.status || rep.Checks["replicas"] != "replica behind" {
			t.Errorf("advisory %v: ready %v, report %+v; want %v, %s, with the reason", tt.advisory, ready, rep, tt.ready, tt.status)
		}
	}
}
