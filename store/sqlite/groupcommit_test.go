package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"onebox/jobs"
	"onebox/jobs/jobstest"
	jobsqlite "onebox/jobs/sqlite"
	"onebox/store"
	"onebox/store/sqlite"
)

// groupStore is a store with a table the group commit tests write names
// to, and a connection of its own that sees only what committed.
func groupStore(t *testing.T) (*sqlite.Store, *sql.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "onebox.db")
	// No checkpointer: its truncate, after 5 s without writes, commits
	// an open group, and would hide a group nobody commits as a stall.
	s := mustNew(t, sqlite.Options{Path: path, Checkpoint: sqlite.CheckpointOptions{Off: true}})
	s.SetGroupAge(time.Minute) // the tests' writes queue in milliseconds
	err := s.InTxAlone(t.Context(), "gc_table", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(t.Context(), `CREATE TABLE gc (name TEXT PRIMARY KEY) STRICT`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("sqlite", path+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close() })
	return s, other
}

// committed lists the names another connection sees.
func committed(t *testing.T, db *sql.DB) []string {
	t.Helper()
	return column(t, db, `SELECT name FROM gc ORDER BY name`)
}

// column runs query, which returns one text column, on db.
func column(t *testing.T, db *sql.DB, query string) []string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

func insert(ctx context.Context, tx *sql.Tx, name string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO gc (name) VALUES (?)`, name)
	return err
}

// waitWaiting waits until n writes queue for the writer. It may run on
// any goroutine: it reports a timeout with Errorf.
func waitWaiting(t *testing.T, s *sqlite.Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().WriterWaiting < n {
		if time.Now().After(deadline) {
			t.Errorf("%d writes waiting for the writer, want %d", s.Stats().WriterWaiting, n)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// waitHolder waits until the write named name holds the writer.
func waitHolder(t *testing.T, s *sqlite.Store, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().WriterHolder.Query != name {
		if time.Now().After(deadline) {
			t.Fatalf("the writer's holder is %q, want %q", s.Stats().WriterHolder.Query, name)
		}
		time.Sleep(time.Millisecond)
	}
}

// writeAsync runs a write on its own goroutine; its error arrives on
// the channel returned.
func writeAsync(ctx context.Context, s *sqlite.Store, alone bool, name string, fn func(*sql.Tx) error) <-chan error {
	done := make(chan error, 1)
	go func() {
		if alone {
			done <- s.InTxAlone(ctx, name, fn)
		} else {
			done <- s.InTx(ctx, name, fn)
		}
	}()
	return done
}

// holdFirst starts the write "a", which inserts its row once waiting
// writes queue behind it, and returns once it holds the writer: the
// start of every case here.
func holdFirst(t *testing.T, s *sqlite.Store, waiting int) <-chan error {
	t.Helper()
	a := writeAsync(t.Context(), s, false, "a", func(tx *sql.Tx) error {
		waitWaiting(t, s, waiting)
		return insert(t.Context(), tx, "a")
	})
	waitHolder(t, s, "a")
	return a
}

// succeeds waits for the write named name and reports its error.
func succeeds(t *testing.T, name string, done <-chan error) {
	t.Helper()
	if err := mustReturn(t, name, done); err != nil {
		t.Errorf("%s: %v", name, err)
	}
}

func mustReturn(t *testing.T, name string, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s has not returned after 10s", name)
		return nil
	}
}

// TestGroupCommit: writes that queue for the writer while another runs
// share one COMMIT, and none returns before it: a write handed on to
// the next one waits for the group, and what it wrote is visible to
// every connection once it returns.
func TestGroupCommit(t *testing.T) {
	s, other := groupStore(t)
	ctx := t.Context()
	before := s.Stats()
	marks := s.WriteMarks()

	release := make(chan struct{})
	a := holdFirst(t, s, 1)
	b := writeAsync(ctx, s, false, "b", func(tx *sql.Tx) error {
		if err := insert(ctx, tx, "b"); err != nil {
			return err
		}
		<-release // b holds the group open
		return nil
	})
	// a ran and handed the group to b: it must not return before b's
	// COMMIT, which is also a's.
	select {
	case err := <-a:
		t.Fatalf("a returned (%v) before the COMMIT it shares with b; committed: %v", err, committed(t, other))
	case <-time.After(100 * time.Millisecond):
	}
	if got := committed(t, other); len(got) != 0 {
		t.Errorf("committed while the group is open: %v", got)
	}
	// The key reader shares snapshots until a write is marked finished:
	// marked before its COMMIT, a write could return and not be in the
	// snapshot its writer reads next.
	if got := s.WriteMarks(); got != marks {
		t.Errorf("%d writes marked finished while the group is open, want none", got-marks)
	}
	close(release)
	succeeds(t, "a", a)
	succeeds(t, "b", b)
	if got, want := committed(t, other), []string{"a", "b"}; !slices.Equal(got, want) {
		t.Errorf("committed %v, want %v", got, want)
	}
	if s.WriteMarks() == marks {
		t.Error("no write marked finished after the COMMIT")
	}
	after := s.Stats()
	if commits, writes := after.GroupCommits-before.GroupCommits, after.GroupWrites-before.GroupWrites; commits != 1 || writes != 2 {
		t.Errorf("%d commits of %d writes, want 1 of 2", commits, writes)
	}
}

// TestGroupCommitFailedWrite: a write that fails takes back its own
// changes only; the group's other writes commit.
func TestGroupCommitFailedWrite(t *testing.T) {
	s, other := groupStore(t)
	ctx := t.Context()
	failed := errors.New("failed")

	a := holdFirst(t, s, 2)
	b := writeAsync(ctx, s, false, "b", func(tx *sql.Tx) error {
		if err := insert(ctx, tx, "b"); err != nil {
			return err
		}
		return failed // after writing a row
	})
	waitWaiting(t, s, 1)
	c := writeAsync(ctx, s, false, "c", func(tx *sql.Tx) error { return insert(ctx, tx, "c") })
	succeeds(t, "a", a)
	if err := mustReturn(t, "b", b); !errors.Is(err, failed) {
		t.Errorf("b = %v, want its own error", err)
	}
	succeeds(t, "c", c)
	if got, want := committed(t, other), []string{"a", "c"}; !slices.Equal(got, want) {
		t.Errorf("committed %v, want %v: b's row rolled back, the others kept", got, want)
	}
}

// TestGroupCommitBrokenTransaction: when a write ends the shared
// transaction (SQLite rolls it back on some errors), no write of the
// group reports success, and none of their rows is there.
func TestGroupCommitBrokenTransaction(t *testing.T) {
	s, other := groupStore(t)
	ctx := t.Context()

	a := holdFirst(t, s, 2)
	b := writeAsync(ctx, s, false, "b", func(tx *sql.Tx) error {
		// What SQLite does to the transaction on SQLITE_FULL or an
		// interrupted write; b itself reports nothing wrong.
		_, err := tx.ExecContext(ctx, `ROLLBACK`)
		return err
	})
	waitWaiting(t, s, 1)
	// c queued behind b: it must not write into what is left of the
	// group (its SAVEPOINT would begin a transaction of its own), but
	// in a group of its own.
	c := writeAsync(ctx, s, false, "c", func(tx *sql.Tx) error { return insert(ctx, tx, "c") })
	for name, done := range map[string]<-chan error{"a": a, "b": b} {
		if err := mustReturn(t, name, done); err == nil {
			t.Errorf("%s succeeded, but the shared transaction was rolled back", name)
		}
	}
	succeeds(t, "c, after the broken group", c)
	if got, want := committed(t, other), []string{"c"}; !slices.Equal(got, want) {
		t.Errorf("committed %v, want %v", got, want)
	}
	// The writer goes on.
	if err := s.InTx(ctx, "d", func(tx *sql.Tx) error { return insert(ctx, tx, "d") }); err != nil {
		t.Fatalf("a write after the broken group: %v", err)
	}
	if got, want := committed(t, other), []string{"c", "d"}; !slices.Equal(got, want) {
		t.Errorf("committed %v, want %v", got, want)
	}
}

// TestGroupCommitCancelledWrite: a write whose request ends while its
// statement runs is not interrupted. SQLite rolls back the whole
// transaction under an interrupted INSERT, UPDATE or DELETE, and with it
// every write of the group; once a write holds the writer, it runs to
// its end.
func TestGroupCommitCancelledWrite(t *testing.T) {
	s, other := groupStore(t)
	ctx := t.Context()

	a := holdFirst(t, s, 1)
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b := writeAsync(bctx, s, false, "b", func(tx *sql.Tx) error {
		// The request ends 2 ms into a statement that takes 50 ms here
		// (and seconds under -race).
		time.AfterFunc(2*time.Millisecond, cancel)
		_, err := tx.ExecContext(bctx, `INSERT INTO gc (name)
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000) SELECT 'b' || max(i) FROM n`)
		return err
	})
	succeeds(t, "a, in a group with a write whose request ended", a)
	succeeds(t, "b, whose request ended while its statement ran", b)
	if got, want := committed(t, other), []string{"a", "b200000"}; !slices.Equal(got, want) {
		t.Errorf("committed %v, want %v", got, want)
	}
}

// TestGroupCommitAlone: a write that must not be shared (a migration, a
// drill's hold) commits the group before it, which does not wait for it.
func TestGroupCommitAlone(t *testing.T) {
	s, other := groupStore(t)
	ctx := t.Context()

	release := make(chan struct{})
	a := holdFirst(t, s, 1)
	long := writeAsync(ctx, s, true, "long", func(tx *sql.Tx) error {
		<-release
		return insert(ctx, tx, "long")
	})
	succeeds(t, "a", a)
	if got, want := committed(t, other), []string{"a"}; !slices.Equal(got, want) {
		t.Errorf("committed %v while the long write runs, want %v", got, want)
	}
	close(release)
	succeeds(t, "long", long)
}

// TestGroupCommitStatement: a single statement (UpdateUser, a session)
// that queues behind a group does not wait for a connection the group
// holds: it commits the group first.
func TestGroupCommitStatement(t *testing.T) {
	s, other := groupStore(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	a := holdFirst(t, s, 1)
	stmt := make(chan error, 1)
	go func() {
		id := newID(t)
		_, err := s.CreateUser(ctx, store.CreateUserParams{ID: id, Handle: "user-" + id, DisplayName: "x", PasswordHash: "x", Now: time.Now()})
		stmt <- err
	}()
	succeeds(t, "CreateUser behind a group", stmt)
	succeeds(t, "a", a)
	if got, want := committed(t, other), []string{"a"}; !slices.Equal(got, want) {
		t.Errorf("committed %v, want %v", got, want)
	}
}

// TestGroupCommitSingleStatement: a single statement of the job queue
// (Receive, Ack) joins the open group, sharing its COMMIT, and runs on
// its own, without a transaction around it, when none is open and no
// write waits.
func TestGroupCommitSingleStatement(t *testing.T) {
	s, other := groupStore(t)
	ctx := t.Context()
	stmt := func(name string) func(w jobsqlite.Writer) error {
		return func(w jobsqlite.Writer) error {
			_, err := w.ExecContext(ctx, `INSERT INTO gc (name) VALUES (?)`, name)
			return err
		}
	}

	before := s.Stats()
	if err := s.ExecWrite(ctx, "alone", stmt("alone")); err != nil {
		t.Fatal(err)
	}
	after := s.Stats()
	if commits := after.GroupCommits - before.GroupCommits; commits != 0 {
		t.Errorf("a statement with nothing open and nobody waiting ran in %d transactions of the store's, want none", commits)
	}
	if got, want := committed(t, other), []string{"alone"}; !slices.Equal(got, want) {
		t.Errorf("committed %v, want %v", got, want)
	}

	before = s.Stats()
	a := holdFirst(t, s, 1)
	joined := make(chan error, 1)
	go func() { joined <- s.ExecWrite(ctx, "joined", stmt("joined")) }()
	succeeds(t, "a", a)
	succeeds(t, "joined", joined)
	after = s.Stats()
	if commits, writes := after.GroupCommits-before.GroupCommits, after.GroupWrites-before.GroupWrites; commits != 1 || writes != 2 {
		t.Errorf("%d commits of %d writes, want the statement in a's: 1 of 2", commits, writes)
	}
	if got, want := committed(t, other), []string{"a", "alone", "joined"}; !slices.Equal(got, want) {
		t.Errorf("committed %v, want %v", got, want)
	}
}

// TestGroupCommitWaiterGivesUp: a write whose context ends while it
// queues gets the group handed on all the same, and commits it, so the
// writes before it return.
func TestGroupCommitWaiterGivesUp(t *testing.T) {
	s, other := groupStore(t)
	ctx := t.Context()

	bctx, bcancel := context.WithCancel(ctx)
	a := writeAsync(ctx, s, false, "a", func(tx *sql.Tx) error {
		waitWaiting(t, s, 1)
		bcancel() // b gives up while it waits
		return insert(ctx, tx, "a")
	})
	waitHolder(t, s, "a")
	b := writeAsync(bctx, s, false, "b", func(tx *sql.Tx) error { return insert(ctx, tx, "b") })
	succeeds(t, "a", a)
	if err := mustReturn(t, "b", b); !errors.Is(err, context.Canceled) {
		t.Errorf("b = %v, want context.Canceled", err)
	}
	if got, want := committed(t, other), []string{"a"}; !slices.Equal(got, want) {
		t.Errorf("committed %v, want %v", got, want)
	}
}

// TestQueueSuite runs the job queue's conformance suite on the store's
// queue, whose transactions and statements go through the store's
// writer and share its COMMITs, as in production.
func TestQueueSuite(t *testing.T) {
	jobstest.Run(t, func(t *testing.T) jobs.Queue {
		return capable{mustNew(t, sqlite.Options{}).Queue(jobsqlite.Options{})}
	})
}

// capable is the store's queue, which honours priorities and serves
// fair keys in turn as jobs/sqlite's does (its test files say so to
// jobstest; these cannot see them).
type capable struct{ *jobsqlite.Queue }

func (capable) HonoursPriority()  {}
func (capable) ServesKeysInTurn() {}

// TestQueueAckInterval: the store's queue, whose acks share its COMMITs,
// asks the Runner for acks gathered over 1 ms (jobs.AckPacer).
func TestQueueAckInterval(t *testing.T) {
	q := mustNew(t, sqlite.Options{}).Queue(jobsqlite.Options{})
	if got := q.AckInterval(); got != time.Millisecond {
		t.Errorf("AckInterval = %v, want 1ms", got)
	}
}

// TestQueueWritesAreTheStores: the store's queue writes through the
// store's writer (its lock, its holds, its group commit), every write
// named, not on a transaction or statement of its own beside it.
func TestQueueWritesAreTheStores(t *testing.T) {
	var mu sync.Mutex
	held := map[string]bool{}
	s := mustNew(t, sqlite.Options{OnWriterHold: func(h sqlite.WriterHold) {
		mu.Lock()
		held[h.Query] = true
		mu.Unlock()
	}})
	q := s.Queue(jobsqlite.Options{})
	ctx := t.Context()
	receive := func() jobs.Message {
		t.Helper()
		if err := q.Send(ctx, jobs.Message{Kind: "k"}, jobs.SendOptions{}); err != nil {
			t.Fatalf("Send: %v", err)
		}
		msgs, err := q.Receive(ctx, "k", 1, time.Minute)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("Receive = %v, %v; want one message", msgs, err)
		}
		return msgs[0]
	}
	m := receive()
	if err := q.Extend(ctx, m.Receipt(), time.Minute); err != nil {
		t.Fatalf("Extend: %v", err)
	}
	if err := q.Retry(ctx, m.Receipt(), time.Now().Add(-time.Second), "boom"); err != nil {
		t.Fatalf("Retry: %v", err)
	}
	if err := q.Ack(ctx, receive().Receipt()); err != nil { // the retried one, or a new one
		t.Fatalf("Ack: %v", err)
	}
	if err := q.DeadLetter(ctx, receive().Receipt(), "dead"); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	if _, err := q.Redrive(ctx, jobs.DeadFilter{Kind: "k"}); err != nil {
		t.Fatalf("Redrive: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, name := range []string{"jobs_send", "jobs_receive", "jobs_extend", "jobs_retry", "jobs_ack", "jobs_dead_letter", "jobs_redrive"} {
		if !held[name] {
			t.Errorf("no hold of the store's writer named %s; held: %v", name, held)
		}
	}
}
