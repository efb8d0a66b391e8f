package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"modernc.org/sqlite"
)

func TestAssign(t *testing.T) {
	type status string
	var (
		s  string
		n  int64
		b  bool
		st status
		i  int
		i8 int8
		a  any
		tm textTimeDest
	)
	tests := []struct {
		name    string
		dest    any
		src     driver.Value
		check   func() bool
		wantErr bool
	}{
		{"string", &s, "x", func() bool { return s == "x" }, false},
		{"int64", &n, int64(-7), func() bool { return n == -7 }, false},
		{"bool true", &b, int64(1), func() bool { return b }, false},
		{"bool false", &b, int64(0), func() bool { return !b }, false},
		{"named string", &st, "ready", func() bool { return st == "ready" }, false},
		{"int", &i, int64(2048), func() bool { return i == 2048 }, false},
		{"any", &a, int64(3), func() bool { return a == int64(3) }, false},
		{"scanner", &tm, "2026-11-27T09:00:00.000000000Z", func() bool { return tm.got == "2026-11-27T09:00:00.000000000Z" }, false},
		{"int8 overflow", &i8, int64(300), nil, true},
		{"bool out of range", &b, int64(2), nil, true},
		{"text into int64", &n, "12", nil, true},
		{"null into string", &s, nil, nil, true},
		{"not a pointer", s, "x", nil, true},
		{"nil pointer", (*int)(nil), int64(1), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := assign(tt.dest, tt.src)
			if (err != nil) != tt.wantErr {
				t.Fatalf("assign(%T, %#v) = %v, want error %v", tt.dest, tt.src, err, tt.wantErr)
			}
			if tt.check != nil && !tt.check() {
				t.Fatalf("assign(%T, %#v) stored the wrong value", tt.dest, tt.src)
			}
		})
	}
	if err := (values{"a", int64(1)}).Scan(&s); err == nil {
		t.Error("Scan with fewer destinations than columns: no error")
	}
}

type textTimeDest struct{ got string }

func (d *textTimeDest) Scan(src any) error {
	d.got, _ = src.(string)
	return nil
}

// TestKeyReaderPool: concurrent reads never open more connections than
// the pool's size, reuse them, and no row is sql.ErrNoRows.
func TestKeyReaderPool(t *testing.T) {
	k, opened := testKeyReader(t, 3)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			for range 20 {
				var one int64
				if err := k.read(t.Context(), true, "SELECT ?", []any{int64(1)}, func(r scanner) error { return r.Scan(&one) }); err != nil || one != 1 {
					t.Errorf("read: %d, %v", one, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := opened.Load(); n < 1 || n > 3 {
		t.Errorf("opened %d connections, want 1 to 3", n)
	}
	err := k.read(t.Context(), true, "SELECT 1 WHERE 0", nil, func(scanner) error { return nil })
	if !errors.Is(err, sql.ErrNoRows) {
		t.Errorf("no row: %v, want sql.ErrNoRows", err)
	}
	// A statement error leaves the connection usable.
	if err := k.read(t.Context(), true, "SELECT nope", nil, func(scanner) error { return nil }); err == nil {
		t.Error("bad SQL: no error")
	}
	var one int64
	if err := k.read(t.Context(), true, "SELECT 1", nil, func(r scanner) error { return r.Scan(&one) }); err != nil {
		t.Errorf("read after an error: %v", err)
	}
}

// TestKeyReaderClose: a read after close fails, and a connection in use
// at close is closed when it comes back.
func TestKeyReaderClose(t *testing.T) {
	k, opened := testKeyReader(t, 2)
	inUse, err := k.get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := k.close(); err != nil {
		t.Fatal(err)
	}
	k.put(inUse, nil)
	if len(k.idle) != 0 || len(k.slots) != 0 {
		t.Errorf("after close: %d idle, %d open, want none", len(k.idle), len(k.slots))
	}
	if err := k.read(t.Context(), true, "SELECT 1", nil, func(scanner) error { return nil }); !errors.Is(err, errKeyReaderClosed) {
		t.Errorf("read after close: %v", err)
	}
	if n := opened.Load(); n != 1 {
		t.Errorf("opened %d connections, want 1", n)
	}
}

// TestKeyReaderBadConn: a connection the driver calls broken is closed
// rather than pooled.
func TestKeyReaderBadConn(t *testing.T) {
	k, opened := testKeyReader(t, 2)
	c, err := k.get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	k.put(c, driver.ErrBadConn)
	if len(k.idle) != 0 || len(k.slots) != 0 {
		t.Errorf("after a bad connection: %d idle, %d open, want none", len(k.idle), len(k.slots))
	}
	if err := k.read(t.Context(), true, "SELECT 1", nil, func(scanner) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if n := opened.Load(); n != 2 {
		t.Errorf("opened %d connections, want 2", n)
	}
}

func testKeyReader(t *testing.T, size int) (*keyReader, *atomic.Int64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "k.db")
	var opened atomic.Int64
	k := newKeyReader(size, new(writeMarks), func() (driver.Conn, error) {
		opened.Add(1)
		return (&sqlite.Driver{}).Open(path)
	})
	t.Cleanup(func() { _ = k.close() })
	return k, &opened
}

// TestKeyReaderPanicInScan: a scan that panics costs its connection, not
// the pool's slot: the next read on a pool of one gets a connection.
func TestKeyReaderPanicInScan(t *testing.T) {
	k, opened := testKeyReader(t, 1)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic was swallowed")
			}
		}()
		_ = k.read(t.Context(), true, "SELECT 1", nil, func(scanner) error { panic("boom") })
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var one int64
	if err := k.read(ctx, true, "SELECT 1", nil, func(r scanner) error { return r.Scan(&one) }); err != nil {
		t.Fatalf("read after a panic: %v", err)
	}
	if n := opened.Load(); n != 2 {
		t.Errorf("opened %d connections, want 2 (the panicked one is closed)", n)
	}
}

// TestKeyReaderWaitEnds: a read waiting for a busy pool gives up when its
// context ends.
func TestKeyReaderWaitEnds(t *testing.T) {
	k, _ := testKeyReader(t, 1)
	c, err := k.get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer k.put(c, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := k.read(ctx, true, "SELECT 1", nil, func(scanner) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("read on a busy pool with a cancelled context: %v", err)
	}
	if n, _ := k.waited(); n != 1 {
		t.Errorf("%d waits counted, want 1", n)
	}
}

// TestKeyReaderArgs: arguments are converted as database/sql converts
// them for a driver without a converter.
func TestKeyReaderArgs(t *testing.T) {
	k, _ := testKeyReader(t, 1)
	type handle string
	var n int64
	var s string
	err := k.read(t.Context(), true, "SELECT ? + 1, ?", []any{int(41), handle("ann")}, func(r scanner) error { return r.Scan(&n, &s) })
	if err != nil || n != 42 || s != "ann" {
		t.Fatalf("read = %d %q, %v; want 42 \"ann\"", n, s, err)
	}
	if err := k.read(t.Context(), true, "SELECT ?", []any{struct{}{}}, func(scanner) error { return nil }); err == nil {
		t.Error("an argument of no driver type: no error")
	}
}

// TestKeyReaderSnapshots: while this process is not writing, reads share
// a snapshot until it writes or the snapshot is snapshotAge old; for
// quietFor after a write, each read has a transaction of its own; the
// sweep ends the snapshots of idle connections. The clock stands still
// unless moved, so the outcome does not depend on the machine's speed.
func TestKeyReaderSnapshots(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.db")
	w, err := sql.Open("sqlite", path+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	if _, err := w.Exec(`CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	var marks writeMarks
	k := newKeyReader(1, &marks, func() (driver.Conn, error) { return (&sqlite.Driver{}).Open(path) })
	t.Cleanup(func() { _ = k.close() })
	clock := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	k.now = func() time.Time { return clock }
	readAs := func(share bool) int64 {
		t.Helper()
		var v int64
		if err := k.read(t.Context(), share, "SELECT v FROM t", nil, func(r scanner) error { return r.Scan(&v) }); err != nil {
			t.Fatal(err)
		}
		return v
	}
	read := func() int64 { t.Helper(); return readAs(true) }
	// set writes as another process would: not in marks.
	set := func(v int) {
		t.Helper()
		if _, err := w.Exec(`UPDATE t SET v = ?`, v); err != nil {
			t.Fatal(err)
		}
	}
	snapOpen := func() bool {
		c := <-k.idle
		defer k.put(c, nil)
		return c.snap
	}

	if v := read(); v != 1 {
		t.Fatalf("first read: %d", v)
	}
	set(2)
	if v := read(); v != 1 {
		t.Fatalf("read in the same snapshot: %d, want 1 (snapshots are not shared)", v)
	}
	// A read that must be fresh sees the other process's write, and ends
	// the connection's snapshot.
	if v := readAs(false); v != 2 || snapOpen() {
		t.Fatalf("fresh read: %d, want 2 and no snapshot left open", v)
	}
	set(1)
	if v := read(); v != 1 {
		t.Fatalf("shared read after a fresh one: %d, want 1", v)
	}
	set(2)
	marks.done(clock.Add(-quietFor)) // this process wrote, a while ago
	if v := read(); v != 2 {
		t.Fatalf("read after a write of this process: %d, want 2", v)
	}
	set(3)
	clock = clock.Add(snapshotAge)
	if v := read(); v != 3 {
		t.Fatalf("read a snapshotAge later: %d, want 3", v)
	}

	// Right after a write, each read has its own transaction: nothing is
	// held between reads.
	marks.done(clock)
	if v := read(); v != 3 {
		t.Fatalf("read just after a write: %d, want 3", v)
	}
	if snapOpen() {
		t.Fatal("a snapshot is held just after a write")
	}
	set(4)
	if v := read(); v != 4 || snapOpen() {
		t.Fatal("a snapshot is shared just after a write")
	}
	clock = clock.Add(quietFor) // quiet again: shared
	read()
	if !snapOpen() {
		t.Fatal("no snapshot shared once writes stopped")
	}

	// An idle connection's snapshot: kept while young, ended by the sweep
	// once old, or once this process has written since it began.
	k.sweep(clock.Add(snapshotAge - 1))
	if !snapOpen() {
		t.Fatal("the sweep ended a young snapshot")
	}
	k.sweep(clock.Add(snapshotAge))
	if snapOpen() {
		t.Fatal("the sweep left an old snapshot open")
	}
	read()
	marks.done(clock)
	k.sweep(clock)
	if snapOpen() {
		t.Fatal("the sweep left a snapshot from before a write open")
	}
	// With no snapshot open, a checkpoint can empty the WAL.
	set(5)
	var busy, log, done int
	if err := w.QueryRow(`PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &log, &done); err != nil || busy != 0 {
		t.Fatalf("checkpoint: busy %d, %v", busy, err)
	}
}
