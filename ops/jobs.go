package ops

import (
	"context"
	"fmt"
)

// AbandonedJobsCheck is a readiness check that fails once abandoned
// reports limit or more: job handlers that ignored their context past
// their timeout and still run (jobs.Runner.Abandoned). Each holds a
// goroutine and whatever it allocated, and only a restart reclaims them,
// so past a few the process should be replaced. A limit below 1
// counts as 1.
func AbandonedJobsCheck(abandoned func() int, limit int) Check {
	limit = max(limit, 1)
	return Check{Name: "jobs", Probe: func(context.Context) error {
		if n := abandoned(); n >= limit {
			return fmt.Errorf("%d abandoned job handlers still running (ignoring their context past their timeout), the cap is %d: restart to reclaim them", n, limit)
		}
		return nil
	}}
}
