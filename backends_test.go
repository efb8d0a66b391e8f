package main

import (
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"onebox/config"
	"onebox/jobs"
	jobsqlite "onebox/jobs/sqlite"
	"onebox/store/sqlite"
)

// TestBackendTableIsWhatConfigAccepts: every scheme the table opens
// passes configuration, and one it lacks is refused with the table's
// list, so the two cannot drift apart.
func TestBackendTableIsWhatConfigAccepts(t *testing.T) {
	t.Parallel()
	for env, schemes := range backendTable().schemes() {
		for _, s := range append(schemes, "gopher") {
			v := s + "://host/x"
			switch s {
			case "sqlite", "file":
				v = s + ":x"
			case "", "none":
				v = s
			}
			err := run(t.Context(), []string{"config"}, func(k string) (string, bool) {
				if k == env {
					return v, true
				}
				return "", false
			}, io.Discard, io.Discard)
			if s == "gopher" {
				if err == nil || !strings.Contains(err.Error(), "want one of "+strings.Join(schemes, ", ")) {
					t.Errorf("%s=%s: %v, want unknown scheme, want one of %v", env, v, err, schemes)
				}
			} else if err != nil {
				t.Errorf("%s=%s: %v", env, v, err)
			}
		}
	}
}

// TestSQLiteSettings: each SQLite setting reaches the store's options.
func TestSQLiteSettings(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"ONEBOX_DB_READ_CONNS": "7", "ONEBOX_DB_BUSY_TIMEOUT": "3s", "ONEBOX_DB_MAX_READ": "2s", "ONEBOX_WAL_MAX_BYTES": "1048576",
	}
	cfg, err := config.Load(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	o := sqliteOptions(wiring{cfg: cfg}, "x.db")
	want := sqlite.Options{Path: "x.db", ReadConns: 7, BusyTimeout: 3 * time.Second, MaxReadSnapshot: 2 * time.Second, Checkpoint: sqlite.CheckpointOptions{MaxWALBytes: 1 << 20}}
	if o.Path != want.Path || o.ReadConns != want.ReadConns || o.BusyTimeout != want.BusyTimeout || o.MaxReadSnapshot != want.MaxReadSnapshot || o.Checkpoint.MaxWALBytes != want.Checkpoint.MaxWALBytes {
		t.Errorf("options %+v, want %+v", o, want)
	}
}

// TestJobQueueAckPacer: the Runner, which sees the queue through
// jobQueue, gets the store queue's ack interval (1 ms, its acks sharing
// the store's COMMITs).
func TestJobQueueAckPacer(t *testing.T) {
	t.Parallel()
	st, err := sqlite.New(t.Context(), sqlite.Options{Path: filepath.Join(t.TempDir(), "onebox.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var q any = jobQueue{Queue: st.Queue(jobsqlite.Options{})}
	p, ok := q.(jobs.AckPacer)
	if !ok {
		t.Fatal("jobQueue hides the queue's ack interval from the Runner")
	}
	if got := p.AckInterval(); got != time.Millisecond {
		t.Errorf("AckInterval = %v, want 1ms", got)
	}
}
