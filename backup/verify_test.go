package backup_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"onebox/backup"
	"onebox/store"
	"onebox/store/sqlite"
)

// replicaFunc is a backup.Replica made of a function.
type replicaFunc func(ctx context.Context, path string) error

func (f replicaFunc) Restore(ctx context.Context, path string) error { return f(ctx, path) }

// current restores the live database as it is now: a replica that is
// never behind.
func current(db *sqlite.Store) backup.Replica {
	return replicaFunc(func(ctx context.Context, path string) error { return db.Snapshot(ctx, path) })
}

// frozen restores a copy of the live database taken now, whatever
// happens later: a replica that stopped here.
func frozen(t *testing.T, db *sqlite.Store) backup.Replica {
	t.Helper()
	snap := filepath.Join(t.TempDir(), "frozen.db")
	if err := db.Snapshot(t.Context(), snap); err != nil {
		t.Fatal(err)
	}
	return copyOf(t, snap, nil)
}

// copyOf restores the file at from, first changed by edit if not nil.
func copyOf(t *testing.T, from string, edit func([]byte)) backup.Replica {
	return replicaFunc(func(ctx context.Context, path string) error {
		b, err := os.ReadFile(from)
		if err != nil {
			return err
		}
		if edit != nil {
			edit(b)
		}
		return os.WriteFile(path, b, 0o640)
	})
}

func noSleep(context.Context, time.Duration) error { return nil }

// TestVerify: a replica that is current and a media copy that holds
// every referenced file as written pass; each way a backup goes wrong
// fails with its own error, and what is fine only because the live
// system moved on (a photo deleted since the backup's instant) passes.
func TestVerify(t *testing.T) {
	for _, tt := range []struct {
		name string
		// setup returns the replica to restore and may damage the media.
		setup func(t *testing.T, in *instance) backup.Replica
		want  error  // nil: passes
		text  string // the error says this
	}{
		{"current", func(t *testing.T, in *instance) backup.Replica { return current(in.db) }, nil, ""},
		{"restore fails", func(t *testing.T, in *instance) backup.Replica {
			return replicaFunc(func(context.Context, string) error { return errors.New("no backups found") })
		}, backup.ErrRestore, ""},
		{"damaged database", func(t *testing.T, in *instance) backup.Replica {
			snap := filepath.Join(t.TempDir(), "snap.db")
			if err := in.db.Snapshot(t.Context(), snap); err != nil {
				t.Fatal(err)
			}
			// Page 2 (after the schema's page 1) overwritten: a b-tree
			// page of no valid type.
			return copyOf(t, snap, func(b []byte) {
				copy(b[4096:8192], bytes.Repeat([]byte{0xff}, 4096))
			})
		}, backup.ErrCorrupt, ""},
		{"not a database", func(t *testing.T, in *instance) backup.Replica {
			junk := filepath.Join(t.TempDir(), "junk")
			if err := os.WriteFile(junk, bytes.Repeat([]byte("junk"), 4096), 0o640); err != nil {
				t.Fatal(err)
			}
			return copyOf(t, junk, nil)
		}, backup.ErrCorrupt, ""},
		{"stopped before any sentinel", func(t *testing.T, in *instance) backup.Replica { return frozen(t, in.db) }, backup.ErrStale, "holds no sentinel"},
		{"stopped after an older sentinel", func(t *testing.T, in *instance) backup.Replica {
			if err := in.db.WriteSentinel(t.Context(), time.Now().Add(-time.Minute)); err != nil {
				t.Fatal(err)
			}
			return frozen(t, in.db)
		}, backup.ErrStale, ""},
		{"media file missing", func(t *testing.T, in *instance) backup.Replica {
			if err := in.media.Delete(t.Context(), in.ready.Variants[0].Key); err != nil {
				t.Fatal(err)
			}
			return current(in.db)
		}, backup.ErrMediaMissing, ""},
		{"media file deleted since the backup's instant", func(t *testing.T, in *instance) backup.Replica {
			// The replica is as of before the delete, with the
			// sentinel; the live database and the copy are after it.
			if err := in.db.WriteSentinel(t.Context(), time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			r := frozen(t, in.db)
			if _, _, err := in.db.DeletePhoto(t.Context(), store.DeletePhotoParams{ID: in.ready.ID, OwnerID: in.ready.OwnerID}); err != nil {
				t.Fatal(err)
			}
			keys := []string{in.ready.OriginalKey}
			for _, v := range in.ready.Variants {
				keys = append(keys, v.Key)
			}
			if err := in.media.Delete(t.Context(), keys...); err != nil {
				t.Fatal(err)
			}
			return r
		}, nil, ""},
		{"media file damaged", func(t *testing.T, in *instance) backup.Replica {
			flipByte(t, filepath.Join(in.dir, "media", in.ready.Variants[1].Key))
			return current(in.db)
		}, backup.ErrMediaDigest, ""},
		{"media sidecar lost", func(t *testing.T, in *instance) backup.Replica {
			dir, base := filepath.Split(in.inWork.OriginalKey)
			if err := os.Remove(filepath.Join(in.dir, "media", dir, "."+base+".meta")); err != nil {
				t.Fatal(err)
			}
			return current(in.db)
		}, backup.ErrMediaDigest, "no recorded digest"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := seed(t)
			r := tt.setup(t, in)
			v, err := backup.Verify(t.Context(), backup.VerifyOptions{
				Live: in.db, Replica: r, Media: in.media, Scratch: t.TempDir(), Sleep: noSleep,
			})
			if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
				t.Fatalf("Verify: %v, want %v", err, tt.want)
			}
			if err != nil && !strings.Contains(err.Error(), tt.text) {
				t.Errorf("Verify: %v, want it to say %q", err, tt.text)
			}
			if tt.want != nil {
				return
			}
			if v.RestoredSentinel.Before(v.SentinelAt) || v.DatabaseBytes == 0 || v.MediaDigests == 0 || v.MediaDigests > v.MediaFiles {
				t.Errorf("passed with %+v", v)
			}
		})
	}
}

// TestVerifySample: the digests checked are a sample of the files, every
// file is checked to exist, and the scratch directory is gone after, as
// is one a killed run left hours ago (not one a running one may use).
func TestVerifySample(t *testing.T) {
	t.Parallel()
	in := seed(t)
	scratch := t.TempDir()
	// A killed run's directory, and one as young as a running one's.
	old, young := filepath.Join(scratch, ".backup-verify-1"), filepath.Join(scratch, ".backup-verify-2")
	for _, d := range []string{old, young} {
		if err := os.MkdirAll(filepath.Join(d, "x"), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(old, time.Now().Add(-7*time.Hour), time.Now().Add(-7*time.Hour)); err != nil {
		t.Fatal(err)
	}
	v, err := backup.Verify(t.Context(), backup.VerifyOptions{
		Live: in.db, Replica: current(in.db), Media: in.media, Scratch: scratch, Sleep: noSleep, Sample: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if v.MediaFiles != len(in.files) || v.MediaDigests != 1 {
		t.Errorf("%d files, %d digests; want %d and 1", v.MediaFiles, v.MediaDigests, len(in.files))
	}
	if entries, _ := os.ReadDir(scratch); len(entries) != 1 || entries[0].Name() != filepath.Base(young) {
		t.Errorf("scratch directory holds %v, want only the young %s", entries, filepath.Base(young))
	}
}

// TestVerifyWaitsTheRecoveryPoint: the restore comes a recovery point
// after the sentinel, and the sentinel is the time Verify began.
func TestVerifyWaitsTheRecoveryPoint(t *testing.T) {
	t.Parallel()
	in := seed(t)
	var slept time.Duration
	var sentinelAtRestore time.Time
	r := replicaFunc(func(ctx context.Context, path string) error {
		var err error
		sentinelAtRestore, err = in.db.Sentinel(ctx)
		if err != nil {
			return err
		}
		return in.db.Snapshot(ctx, path)
	})
	v, err := backup.Verify(t.Context(), backup.VerifyOptions{
		Live: in.db, Replica: r, Scratch: t.TempDir(), RecoveryPoint: 3 * time.Second,
		Sleep: func(_ context.Context, d time.Duration) error { slept += d; return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if slept != 3*time.Second || !sentinelAtRestore.Equal(v.SentinelAt) || !v.SentinelAt.Equal(v.Start) {
		t.Errorf("slept %s (want 3s); sentinel %s at the restore, %s written, start %s", slept, sentinelAtRestore, v.SentinelAt, v.Start)
	}
	if v.MediaFiles != 0 {
		t.Errorf("no media copy, yet %d files checked", v.MediaFiles)
	}
}
