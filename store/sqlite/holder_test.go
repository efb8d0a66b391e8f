package sqlite_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"onebox/correlation"
	"onebox/store"
	"onebox/store/sqlite"
)

// holds collects the writer's holds.
type holds struct {
	mu   sync.Mutex
	list []sqlite.WriterHold
}

func (h *holds) add(x sqlite.WriterHold) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.list = append(h.list, x)
}

func (h *holds) find(query string) (sqlite.WriterHold, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := len(h.list) - 1; i >= 0; i-- { // the last
		if h.list[i].Query == query {
			return h.list[i], true
		}
	}
	return sqlite.WriterHold{}, false
}

// A hold names its query and the job kind or route on whose behalf it
// ran, while it runs (Stats) and once it ended (OnWriterHold), with the
// writes that queued behind it and how long they waited.
func TestWriterHolds(t *testing.T) {
	t.Parallel()
	var got holds
	s := mustNew(t, sqlite.Options{OnWriterHold: got.add})
	u := mustCreateUser(t, s)
	name := "x"

	jobCtx := correlation.WithOnBehalfOf(t.Context(), correlation.Job("drill.hold_writer"))
	held := make(chan error, 1)
	go func() { held <- s.HoldWriter(jobCtx, 300*time.Millisecond) }()
	waitFor(t, func() bool { return s.Stats().WriterHolder.Query == "hold_writer" })
	if h := s.Stats().WriterHolder; h.OnBehalfOf != "job drill.hold_writer" || h.Since.IsZero() || h.Beginning {
		t.Fatalf("holder now = %+v, want hold_writer on behalf of job drill.hold_writer, begun", h)
	}

	reqCtx := correlation.WithOnBehalfOf(t.Context(), correlation.Route("PATCH", "/v1/users/me"))
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if _, err := s.UpdateUser(reqCtx, store.UpdateUserParams{ID: u.ID, DisplayName: &name, Now: time.Now()}); err != nil {
				t.Errorf("UpdateUser: %v", err)
			}
		})
	}
	waitFor(t, func() bool { return s.Stats().WriterWaiting == 2 })
	if err := <-held; err != nil {
		t.Fatalf("HoldWriter: %v", err)
	}
	wg.Wait()

	h, ok := got.find("hold_writer")
	if !ok {
		t.Fatalf("no hold_writer hold among %+v", got.list)
	}
	if h.OnBehalfOf != "job drill.hold_writer" || h.Held < 300*time.Millisecond || h.Queued != 2 {
		t.Errorf("hold = %+v, want on behalf of the job, held ≥ 300ms, 2 queued", h)
	}
	w, ok := got.find("users_update")
	if !ok {
		t.Fatalf("no users_update hold among %+v", got.list)
	}
	if w.OnBehalfOf != "PATCH /v1/users/me" || w.Waited < 100*time.Millisecond {
		t.Errorf("update hold = %+v, want on behalf of the route, waited", w)
	}
	if h := s.Stats().WriterHolder; !h.Since.IsZero() {
		t.Errorf("holder after = %+v, want none", h)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestForeignLock: another process holds the database's write lock. The
// store's write answers busy with its own writer idle, Stats counts it,
// and FileLocks names the process that holds the lock.
func TestForeignLock(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "onebox.db")
	s := mustNew(t, sqlite.Options{Path: path, BusyTimeout: 100 * time.Millisecond})
	u := mustCreateUser(t, s)

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldLock$")
	cmd.Env = append(os.Environ(), "ONEBOX_HELPER_DB="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}

	name := "y"
	_, err = s.UpdateUser(t.Context(), store.UpdateUserParams{ID: u.ID, DisplayName: &name, Now: time.Now()})
	if !errors.Is(err, store.ErrBusy) {
		t.Fatalf("UpdateUser under a foreign lock = %v, want ErrBusy", err)
	}
	if st := s.Stats(); st.Busy != 1 || !st.WriterHolder.Since.IsZero() {
		t.Errorf("Stats: busy %d, holder %+v; want 1 busy answer, no holder", st.Busy, st.WriterHolder)
	}
	locks, err := s.FileLocks()
	if err != nil {
		t.Fatal(err)
	}
	var write *sqlite.FileLock
	for i := range locks {
		if locks[i].Lock == "write" {
			write = &locks[i]
		}
	}
	if write == nil || write.PID != cmd.Process.Pid || !write.Exclusive {
		t.Fatalf("FileLocks = %+v, want the helper's (pid %d) exclusive write lock", locks, cmd.Process.Pid)
	}
	if want := filepath.Base(os.Args[0]); len(want) > 15 {
		want = want[:15] // /proc/PID/comm keeps 15 bytes
		if write.Process != want {
			t.Errorf("process = %q, want %q", write.Process, want)
		}
	}
}

// TestHelperHoldLock is TestForeignLock's other process: it takes the
// write lock, says "locked" and holds it until its stdin closes.
func TestHelperHoldLock(t *testing.T) {
	path := os.Getenv("ONEBOX_HELPER_DB")
	if path == "" {
		t.Skip("helper process of TestForeignLock")
	}
	db := openRaw(t, path, 0)
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	fmt.Println("locked")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}
