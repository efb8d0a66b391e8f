//go:build unix

package app_test

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time the process has used, user and system: unlike
// the wall clock it does not count the time other processes had the
// cores, so benchmarks compare on a busy machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
