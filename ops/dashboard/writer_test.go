package dashboard_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"onebox/ops/dashboard"
)

func (p *proc) hold(holder, query string, d time.Duration, blocked int) {
	l := fmt.Sprintf(`{holder=%q,query=%q}`, holder, query)
	p.set.GetOrCreateHistogram("onebox_db_writer_hold_seconds" + l).Update(d.Seconds())
	p.set.GetOrCreateCounter("onebox_db_writer_blocked_total" + l).Add(blocked)
}

// writerTraffic is one second of writes: 50 short profile edits.
func (p *proc) writerTraffic() {
	for range 50 {
		p.hold("PATCH /v1/users/me", "users_update", 200*time.Microsecond, 0)
	}
	p.gauge("onebox_db_writer_waiting", 0)
	p.gauge("onebox_db_wal_bytes", 4<<20)
	p.gauge("onebox_db_wal_max_bytes", 64<<20)
}

// A job holds the writer for seconds while requests queue behind it:
// the database is the root cause, and its first sentence names the job
// kind; the writer panel ranks the holders and shows who holds it now.
func TestWriterHolderIsTheRootCause(t *testing.T) {
	t.Parallel()
	p := newProc(t, dashboard.Options{})
	for range 10 {
		p.normal()
		p.writerTraffic()
		p.tick()
	}
	holding := p.set.NewGauge(`onebox_db_writer_holding_seconds{holder="job drill.hold_writer",query="hold_writer",state="running"}`, nil)
	for s := range 4 {
		p.slowDatabase(s)
		p.writerTraffic()
		holding.Set(float64(s+1) / 2) // 2 s at the end: degraded, while the queries fail
		p.gauge("onebox_db_writer_waiting", 12)
		p.tick()
	}
	p.hold("job drill.hold_writer", "hold_writer", 3500*time.Millisecond, 12)
	p.tick()
	st := p.d.State()
	d := st.Diagnosis
	if d.Root == nil || d.Root.Component != "database" {
		t.Fatalf("root = %+v, want the database; summary %q", d.Root, d.Summary)
	}
	if !strings.Contains(d.Summary, "job drill.hold_writer") || !strings.Contains(d.Root.Evidence[0], "held 2.0 s so far by job drill.hold_writer (query hold_writer); writes waiting: 12") {
		t.Errorf("summary %q, evidence %q: want the holder named first", d.Summary, d.Root.Evidence)
	}
	w := st.Writer
	if w == nil {
		t.Fatal("no writer panel")
	}
	if w.Holding != "job drill.hold_writer (hold_writer) for 2.0 s" || w.Waiting != "12" {
		t.Errorf("writer now: %q, %q waiting", w.Holding, w.Waiting)
	}
	if len(w.Holders) < 2 || w.Holders[0].Holder != "job drill.hold_writer" || w.Holders[0].Blocked != "12" || w.Holders[1].Holder != "PATCH /v1/users/me" {
		t.Errorf("holders = %+v, want the job first (12 kept waiting), then the route", w.Holders)
	}
	if !strings.Contains(w.Longest, "by job drill.hold_writer (hold_writer)") || !strings.Contains(w.Longest, "3.") {
		t.Errorf("longest = %q, want the job's 3.5 s bucket", w.Longest)
	}
}

// SQLite answers busy while onebox's writer is free: the evidence says
// another process holds the database, and which, from the file's locks.
func TestWriterBusyFromAnotherProcess(t *testing.T) {
	t.Parallel()
	p := newProc(t, dashboard.Options{})
	busy := p.set.NewCounter("onebox_db_sqlite_busy_total")
	for range 5 {
		p.normal()
		p.writerTraffic()
		p.tick()
	}
	p.gauge(`onebox_db_file_lock{lock="write",process="litestream",pid="4242"}`, 1)
	busy.Add(3)
	p.normal()
	p.writerTraffic()
	p.tick()
	db := panel(t, p.d.State(), "database")
	if !db.State.Bad() {
		t.Fatalf("database %s, want degraded", db.State)
	}
	want := "another process (Litestream, a CLI, a second onebox) holds the database: write lock held by pid 4242 (litestream)"
	if !strings.Contains(strings.Join(db.Evidence, "\n"), want) {
		t.Errorf("evidence %q, want %q", db.Evidence, want)
	}
}
