package sqlite

// FileLock is one lock another process holds on the database, as the
// operating system reports it: /proc/locks on Linux, for the lock bytes
// of SQLite's WAL-index file, the -shm, where WAL mode takes its locks.
// This process's own locks are left out. Elsewhere FileLocks reports
// none.
type FileLock struct {
	// Lock is SQLite's name for the slot: "write" (a writer, or a
	// blocking checkpoint), "checkpoint", "recover", or "read0".."read4"
	// (a reader's snapshot: read1 and up pin part of the WAL).
	Lock      string
	Exclusive bool
	PID       int
	Process   string // its name (/proc/PID/comm), "" where unknown
}

// walLockSlots are the lock bytes of SQLite's WAL index, from offset
// 120 of the -shm file (WALINDEX_LOCK_OFFSET in SQLite's wal.c).
var walLockSlots = []string{"write", "checkpoint", "recover", "read0", "read1", "read2", "read3", "read4"}

const walLockOffset = 120

// FileLocks reports the locks other processes hold on the database now:
// when SQLite answers busy while this process's writer is idle, they say
// who holds it (Litestream, a sqlite3 shell, a second onebox). No query
// runs; nil without a -shm file, or where the OS cannot tell.
func (s *Store) FileLocks() ([]FileLock, error) { return fileLocks(s.path + "-shm") }
