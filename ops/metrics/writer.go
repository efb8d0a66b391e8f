package metrics

import (
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	vm "github.com/VictoriaMetrics/metrics"
)

// The SQLite writer's holders and the WAL. Every hold of the writer is
// labelled by its holder, the route ("PATCH /v1/users/:id") or job kind
// ("job photo.process") on whose behalf it ran, "internal" for the
// store's own work, and by the store's query name: both closed sets, and
// the pairs past maxHolderSeries count as "other".
const (
	// DBWriterHold is the histogram of holds of the writer per {holder,
	// query}: its _sum is the time each held it, its highest bucket the
	// longest single hold.
	DBWriterHold = "onebox_db_writer_hold_seconds"
	// DBWriterWaited is the time writes waited for the writer per
	// {holder}: whose requests or jobs the queue slowed.
	DBWriterWaited = "onebox_db_writer_waited_seconds_total"
	// DBWriterBlocked counts, per {holder, query}, the writes that were
	// waiting when a hold of it ended: how many it kept waiting.
	DBWriterBlocked = "onebox_db_writer_blocked_total"
	// DBWriterWaiting is the writes queued for the writer now (sampled).
	DBWriterWaiting = "onebox_db_writer_waiting"
	// DBWriterHolding is the age of the hold in progress, {holder, query,
	// state}: state "running", or "other_process" while its BEGIN waits
	// for a lock another process holds. Absent while the writer is free.
	DBWriterHolding = "onebox_db_writer_holding_seconds"
	// DBWriterForeign is the time transactions' BEGIN IMMEDIATE waited
	// for SQLite's lock: held by another process.
	DBWriterForeign = "onebox_db_writer_other_process_seconds_total"
	// DBBusy counts SQLITE_BUSY answers: another process held the
	// database past busy_timeout.
	DBBusy = "onebox_db_sqlite_busy_total"
	// DBFileLock is 1 for each lock another process holds on the database
	// file now, {lock "write|checkpoint|recover|read0..read4", process,
	// pid}, sampled. Absent when no other process holds one.
	DBFileLock = "onebox_db_file_lock"
	// DBWALBytes is the WAL file's size, DBWALMaxBytes its bound
	// (ONEBOX_WAL_MAX_BYTES); the alert fires on their ratio.
	DBWALBytes    = "onebox_db_wal_bytes"
	DBWALMaxBytes = "onebox_db_wal_max_bytes"
	// DBCheckpoints counts checkpoints by {mode "passive|passive-gated|
	// truncate", result "ok|busy|error"}.
	DBCheckpoints = "onebox_db_checkpoints_total"
	// DBCheckpointLast is the last checkpoint's Unix time, duration and
	// outcome (1 ok, 0 busy or failed).
	DBCheckpointLastTime     = "onebox_db_checkpoint_last_timestamp_seconds"
	DBCheckpointLastDuration = "onebox_db_checkpoint_last_duration_seconds"
	DBCheckpointLastOK       = "onebox_db_checkpoint_last_ok"
)

// maxHolderSeries bounds the {holder, query} pairs with series of their own.
const maxHolderSeries = 500

// Internal is the holder of the store's own writes (migrations, pings).
const Internal = "internal"

// WriterHold is one hold of the SQLite writer (sqlite.WriterHold).
type WriterHold struct {
	Query, OnBehalfOf string
	Waited, Held      time.Duration
	Foreign           time.Duration
	Queued            int
}

// WriterHolder is who holds the writer now (sqlite.WriterHolder).
type WriterHolder struct {
	Query, OnBehalfOf string
	Since             time.Time
	Beginning         bool
}

// FileLock is a lock another process holds on the database
// (sqlite.FileLock).
type FileLock struct {
	Lock      string
	Exclusive bool
	PID       int
	Process   string
}

// WALStats is the WAL's size and its last checkpoint.
type WALStats struct {
	Bytes, MaxBytes int64
	LastMode        string
	LastResult      string // "ok", "busy", "error"; "" before the first
	LastAt          time.Time
	LastDuration    time.Duration
	Counts          map[string]int64 // "mode/result" → checkpoints
}

type holderSeries struct {
	hold    *vm.Histogram
	blocked *vm.Counter
}

// writer is the SQLite writer's series.
type writer struct {
	mu      sync.Mutex
	holds   map[[2]string]*holderSeries
	waited  map[string]*vm.FloatCounter
	now     WriterHolder // as last sampled
	at      time.Time
	locks   []FileLock
	foreign *vm.FloatCounter
}

func holderName(onBehalfOf string) string {
	if onBehalfOf == "" {
		return Internal
	}
	return onBehalfOf
}

// WriterHold records one hold of the writer: sqlite.Options.OnWriterHold.
func (m *Metrics) WriterHold(h WriterHold) {
	if m == nil {
		return
	}
	who := holderName(h.OnBehalfOf)
	w := &m.writer
	w.mu.Lock()
	s := w.holds[[2]string{who, h.Query}]
	if s == nil {
		k := [2]string{who, h.Query}
		if len(w.holds) >= maxHolderSeries {
			k = [2]string{Other, Other}
		}
		if s = w.holds[k]; s == nil {
			l := labels("holder", k[0], "query", k[1])
			s = &holderSeries{hold: m.set.GetOrCreateHistogram(DBWriterHold + l), blocked: m.set.GetOrCreateCounter(DBWriterBlocked + l)}
			w.holds[k] = s
		}
		w.holds[[2]string{who, h.Query}] = s
	}
	waited := w.waited[who]
	if waited == nil {
		waited = m.set.GetOrCreateFloatCounter(DBWriterWaited + labels("holder", who))
		w.waited[who] = waited
	}
	w.mu.Unlock()
	s.hold.Update(h.Held.Seconds())
	if h.Queued > 0 {
		s.blocked.Add(h.Queued)
	}
	if h.Waited > 0 {
		waited.Add(h.Waited.Seconds())
	}
	if h.Foreign > 0 {
		w.foreign.Add(h.Foreign.Seconds())
	}
}

// sampleWriter keeps the writer's state now and the file's locks for
// writeWriter.
func (m *Metrics) sampleWriter(st DBStats, now time.Time) {
	w := &m.writer
	w.mu.Lock()
	w.now, w.at, w.locks = st.WriterHolder, now, st.FileLocks
	w.mu.Unlock()
	m.set.GetOrCreateGauge(DBWriterWaiting, nil).Set(float64(st.WriterWaiting))
	m.set.GetOrCreateCounter(DBBusy).Set(uint64(st.Busy))
	if wal := st.WAL; wal != nil {
		m.set.GetOrCreateGauge(DBWALBytes, nil).Set(float64(wal.Bytes))
		m.set.GetOrCreateGauge(DBWALMaxBytes, nil).Set(float64(wal.MaxBytes))
		for k, n := range wal.Counts {
			mode, result := k, ""
			for i := range k {
				if k[i] == '/' {
					mode, result = k[:i], k[i+1:]
				}
			}
			m.set.GetOrCreateCounter(DBCheckpoints + labels("mode", mode, "result", result)).Set(uint64(n))
		}
		if wal.LastResult != "" {
			m.set.GetOrCreateGauge(DBCheckpointLastTime, nil).Set(float64(wal.LastAt.UnixMilli()) / 1e3)
			m.set.GetOrCreateGauge(DBCheckpointLastDuration, nil).Set(wal.LastDuration.Seconds())
			ok := 0.0
			if wal.LastResult == "ok" {
				ok = 1
			}
			m.set.GetOrCreateGauge(DBCheckpointLastOK, nil).Set(ok)
		}
	}
}

// writeWriter writes the series of the sampled state: the hold in
// progress and other processes' locks, which come and go.
func (m *Metrics) writeWriter(out io.Writer) {
	w := &m.writer
	w.mu.Lock()
	now, at, locks := w.now, w.at, w.locks
	w.mu.Unlock()
	if !now.Since.IsZero() {
		state := "running"
		if now.Beginning {
			state = "other_process"
		}
		fmt.Fprintf(out, "# HELP %s age of the writer's hold in progress, as last sampled\n# TYPE %s gauge\n", DBWriterHolding, DBWriterHolding)
		fmt.Fprintf(out, "%s%s %g\n", DBWriterHolding, labels("holder", holderName(now.OnBehalfOf), "query", now.Query, "state", state), at.Sub(now.Since).Seconds())
	}
	if len(locks) > 0 {
		fmt.Fprintf(out, "# HELP %s locks other processes hold on the database file, as last sampled\n# TYPE %s gauge\n", DBFileLock, DBFileLock)
		for _, l := range locks {
			p := l.Process
			if p == "" {
				p = "unknown"
			}
			fmt.Fprintf(out, "%s%s 1\n", DBFileLock, labels("lock", l.Lock, "process", p, "pid", strconv.Itoa(l.PID)))
		}
	}
}
