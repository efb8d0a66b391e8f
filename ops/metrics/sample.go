package metrics

import (
	"context"
	"time"

	"onebox/jobs"
	"onebox/ops"
)

// DBStats are the database pools' numbers the sampler reads.
type DBStats struct {
	// Backend names the store: "sqlite" or "postgres".
	Backend                string
	WriterOpen, ReaderOpen int
	// WriterWait and ReaderWait are the total time callers waited for
	// the writer connection, and for a reader connection, since the store
	// opened.
	WriterWait, ReaderWait time.Duration
	// WriterBusy is the total time the writer was held by a write (SQLite's
	// one writer; zero where there is none).
	WriterBusy time.Duration
	// Replicas are the read replicas, where the store has them.
	Replicas []ReplicaStats
	// The SQLite writer now: who holds it, how many writes wait, the
	// SQLITE_BUSY answers so far, other processes' locks on the file,
	// and the WAL. Zero where there is none.
	WriterHolder  WriterHolder
	WriterWaiting int
	Busy          int64
	FileLocks     []FileLock
	WAL           *WALStats
}

// ReplicaStats is one read replica as the store last checked it.
type ReplicaStats struct {
	Name       string // host:port
	InRotation bool
	LagBytes   int64
	LagSeconds float64
}

// Sources are what Sample reads. Nil fields are skipped.
type Sources struct {
	Queue   func(ctx context.Context) (jobs.Stats, error)
	DB      func() DBStats
	DataDir string // its file system's free and total bytes
	// Interval between samples; default 5s.
	Interval time.Duration
}

// Sample reads src at once and then every Interval, until ctx is done,
// and sets the gauges from it: the queue's Stats is a query, too dear to
// run on every scrape.
func (m *Metrics) Sample(ctx context.Context, src Sources) {
	if m == nil {
		return
	}
	if src.Interval <= 0 {
		src.Interval = 5 * time.Second
	}
	t := time.NewTicker(src.Interval)
	defer t.Stop()
	for {
		m.SampleOnce(ctx, src)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SampleOnce reads src once.
func (m *Metrics) SampleOnce(ctx context.Context, src Sources) {
	if m == nil {
		return
	}
	if src.Queue != nil {
		qctx, cancel := context.WithTimeout(ctx, src.Interval+time.Second)
		st, err := src.Queue(qctx)
		cancel()
		if err != nil {
			m.log.DebugContext(ctx, "metrics: queue stats", "error", err)
		} else {
			m.QueueStats(st)
		}
	}
	if src.DB != nil {
		st := src.DB()
		m.dbOpen[0].Set(float64(st.WriterOpen))
		m.dbOpen[1].Set(float64(st.ReaderOpen))
		m.writerWait.Set(st.WriterWait.Seconds())
		m.readerWait.Set(st.ReaderWait.Seconds())
		m.writerBusy.Set(st.WriterBusy.Seconds())
		if st.Backend == "sqlite" {
			m.sampleWriter(st, time.Now())
		}
		if st.Backend != "" {
			m.set.GetOrCreateGauge(DBBackend+labels("backend", st.Backend), nil).Set(1)
		}
		for _, r := range st.Replicas {
			l := labels("replica", r.Name)
			m.set.GetOrCreateGauge(ReplicaLagBytes+l, nil).Set(float64(r.LagBytes))
			m.set.GetOrCreateGauge(ReplicaLagSeconds+l, nil).Set(r.LagSeconds)
			in := 0.0
			if r.InRotation {
				in = 1
			}
			m.set.GetOrCreateGauge(ReplicaInRotation+l, nil).Set(in)
		}
	}
	if src.DataDir != "" {
		d, err := ops.DiskUsage(src.DataDir)
		if err != nil {
			m.log.DebugContext(ctx, "metrics: disk usage", "error", err)
		} else {
			m.diskFree.Set(float64(d.Free))
			m.diskSize.Set(float64(d.Size))
		}
	}
}
