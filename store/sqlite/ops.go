package sqlite

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Stats are the pools' counters, as plain numbers for metrics. The
// reader's count the reader pool and the key reader together.
type Stats struct {
	WriterOpen      int           // the writer's open connections: 0 or 1
	WriterInUse     int           // 1 while a statement or transaction holds it
	WriterWaitCount int64         // times a caller had to wait for the writer (its lock or its connection)
	WriterWait      time.Duration // total time callers waited for it, since New
	WriterBusy      time.Duration // total time the writer was held by a write, since New
	ReaderOpen      int
	ReaderInUse     int
	ReaderWaitCount int64
	ReaderWait      time.Duration
	// WriterHolder is who holds the writer now (its Since is zero when
	// nobody does), WriterWaiting how many writes queue for it.
	WriterHolder  WriterHolder
	WriterWaiting int
	// Busy counts SQLITE_BUSY answers since New: another process held
	// the database past busy_timeout.
	Busy int64
	// GroupCommits counts the write transactions committed since New,
	// GroupWrites the writes they carried: more writes than commits when
	// writes queued for the writer shared one (group commit).
	GroupCommits, GroupWrites int64
}

// Stats reads the pools' counters. It is cheap: no query runs.
func (s *Store) Stats() Stats {
	w, r := s.writer.db.Stats(), s.reader.db.Stats()
	lockWaits, lockWait := s.writer.lock.waitStats()
	keyWaits, keyWait := s.keys.waited()
	// Read without a lock: a connection opened or closed between the two
	// reads must not make the count negative.
	keysOpen, keysIdle := len(s.keys.slots), len(s.keys.idle)
	keysOpen = max(keysOpen, keysIdle)
	st := Stats{
		WriterOpen: w.OpenConnections, WriterInUse: w.InUse,
		WriterWaitCount: w.WaitCount + lockWaits, WriterWait: w.WaitDuration + lockWait, WriterBusy: s.writer.lock.held(),
		ReaderOpen: r.OpenConnections + keysOpen, ReaderInUse: r.InUse + keysOpen - keysIdle,
		ReaderWaitCount: r.WaitCount + keyWaits, ReaderWait: r.WaitDuration + keyWait,
		Busy: s.busy.Load(),
	}
	st.WriterHolder, st.WriterWaiting = s.writer.lock.current()
	st.GroupCommits, st.GroupWrites = s.writer.lock.groupStats()
	return st
}

// Explain returns SQLite's EXPLAIN QUERY PLAN of query, for the
// slow-query log: one line per step, indented by its depth in the plan.
// It runs on the reader pool (EXPLAIN reads nothing and writes nothing,
// so a write statement can be explained there too) and never sees the
// query's arguments: its parameters are bound to NULL, which does not
// change the plan's shape. A statement with no plan (BEGIN, COMMIT) gives "".
func (s *Store) Explain(ctx context.Context, query string) (string, error) {
	// The driver wants a value for every parameter and ignores extra
	// ones: there are never more parameters than question marks.
	args := make([]any, strings.Count(query, "?"))
	rows, err := s.reader.db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		return "", fmt.Errorf("sqlite explain: %w", err)
	}
	defer rows.Close()
	depth := map[int64]int{}
	var b strings.Builder
	for rows.Next() {
		var id, parent, notUsed int64
		var detail string
		if err := rows.Scan(&id, &parent, &notUsed, &detail); err != nil {
			return "", fmt.Errorf("sqlite explain: %w", err)
		}
		d := 0
		if pd, ok := depth[parent]; ok {
			d = pd + 1
		}
		depth[id] = d
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(strings.Repeat("  ", d))
		b.WriteString(detail)
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("sqlite explain: %w", err)
	}
	return b.String(), nil
}
