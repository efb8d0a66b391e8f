package metrics

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// The scheduled backup verification (ONEBOX_BACKUP_VERIFY_EVERY), as
// the instance that runs it reports it: BackupVerifyInterval is on every
// instance configured to verify, the others only on the instance that
// holds the verification's lease, from when it took it, so an alert
// reads the one instance that verifies (and sees when none does).
const (
	// BackupVerifyOK is 1 when the last verification passed, 0 when it
	// failed; absent before the first one ends.
	BackupVerifyOK = "onebox_backup_verify_ok"
	// BackupVerifyAge is the seconds since the last verification ended,
	// or, before the first, since this instance took the schedule on.
	BackupVerifyAge = "onebox_backup_verify_age_seconds"
	// BackupVerifyRestore is how long the last verification took to
	// restore the replica into its scratch directory.
	BackupVerifyRestore = "onebox_backup_verify_restore_seconds"
	// BackupVerifyInterval is ONEBOX_BACKUP_VERIFY_EVERY, so an alert
	// can compare the age with it, on every instance that would verify.
	BackupVerifyInterval = "onebox_backup_verify_interval_seconds"
)

// backupVerify is the state behind the series above.
type backupVerify struct {
	mu      sync.Mutex
	running bool          // this instance holds the schedule
	every   time.Duration // its interval
	since   time.Time     // the last result, or when it took the schedule on
	ran     bool          // a result exists
	ok      bool
	restore time.Duration
	now     func() time.Time
}

// BackupVerifySchedule says this instance verifies every interval
// while it holds the lease.
func (m *Metrics) BackupVerifySchedule(every time.Duration) {
	if m == nil {
		return
	}
	b := &m.backup
	b.mu.Lock()
	defer b.mu.Unlock()
	b.every = every
}

// BackupVerifyRunning says this instance took on (running) or gave up
// the backup verification schedule.
func (m *Metrics) BackupVerifyRunning(running bool) {
	if m == nil {
		return
	}
	b := &m.backup
	b.mu.Lock()
	defer b.mu.Unlock()
	b.running, b.since, b.ran = running, b.now(), false
}

// BackupVerified records a verification's result and restore time.
func (m *Metrics) BackupVerified(ok bool, restore time.Duration) {
	if m == nil {
		return
	}
	b := &m.backup
	b.mu.Lock()
	defer b.mu.Unlock()
	b.since, b.ran, b.ok, b.restore = b.now(), true, ok, restore
}

// writeBackupVerify writes the series while this instance runs the
// schedule: a set's own gauges could not disappear when it stops.
func (m *Metrics) writeBackupVerify(w io.Writer) {
	b := &m.backup
	b.mu.Lock()
	defer b.mu.Unlock()
	gauge := func(name, help string, v float64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %g\n", name, help, name, name, v)
	}
	if b.every > 0 {
		gauge(BackupVerifyInterval, "ONEBOX_BACKUP_VERIFY_EVERY in seconds", b.every.Seconds())
	}
	if !b.running {
		return
	}
	gauge(BackupVerifyAge, "seconds since the last backup verification ended (or since this instance took the schedule on)", b.now().Sub(b.since).Seconds())
	if !b.ran {
		return
	}
	gauge(BackupVerifyOK, "1 if the last backup verification passed, 0 if it failed", float64(btoi(b.ok)))
	gauge(BackupVerifyRestore, "seconds the last backup verification took to restore the replica", b.restore.Seconds())
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
