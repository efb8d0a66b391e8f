package main

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"onebox/jobs"
	medialocal "onebox/media/local"
	"onebox/store"
	"onebox/store/sqlite"
)

// TestBackupRestoreCommands: onebox backup and onebox restore as an
// operator types them, on a data directory with a user and an uploaded
// photo: the restored directory holds the same rows and file, and a
// restore into a non-empty directory is refused, naming it and the flag.
func TestBackupRestoreCommands(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	data, u := seedInstance(t)

	to := filepath.Join(t.TempDir(), "b1")
	out, _, err := runCLI(t, []string{"backup", "--to", to, "-data-dir", data}, nil)
	if err != nil || !strings.Contains(out, "1 media files") || !strings.Contains(out, "wrote "+to+" in ") {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(to, "manifest.json")); err != nil {
		t.Fatalf("no manifest: %v", err)
	}

	restored := filepath.Join(t.TempDir(), "data")
	out, _, err = runCLI(t, []string{"restore", "-from", to}, map[string]string{"ONEBOX_DATA_DIR": restored})
	if err != nil || !strings.Contains(out, "integrity check ok") || !strings.Contains(out, "restored ") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	rst := checkSeedRestored(t, restored, u, out)

	// Reconcile: the original gone marks its photo lost; a file without
	// a row, in the media and in its backup copy, is swept from both.
	copyDir := t.TempDir()
	for _, dir := range []string{filepath.Join(restored, "media"), copyDir} {
		lm, err := medialocal.New(dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lm.Put(ctx, "photos/gone/w128.jpg", strings.NewReader("x"), ""); err != nil {
			t.Fatal(err)
		}
		lm.Close()
	}
	if err := os.Remove(filepath.Join(restored, "media", "private", "originals", "p1")); err != nil {
		t.Fatal(err)
	}
	out, _, err = runCLI(t, []string{"reconcile", "-sweep", "-grace", "0s", "-media-backup-dir", copyDir}, map[string]string{"ONEBOX_DATA_DIR": restored})
	if err != nil || !strings.Contains(out, "lost 0190a0a0-0000-7000-8000-000000000002") || !strings.Contains(out, "orphan photos/gone/w128.jpg") ||
		!strings.Contains(out, "1 lost, 1 files without a row, 1 swept") {
		t.Fatalf("reconcile: %v\n%s", err, out)
	}
	for _, dir := range []string{filepath.Join(restored, "media"), copyDir} {
		if _, err := os.Stat(filepath.Join(dir, "photos", "gone", "w128.jpg")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("orphan in %s not swept: %v", dir, err)
		}
	}
	ph, err := rst.Photo(ctx, store.PhotoParams{ID: "0190a0a0-0000-7000-8000-000000000002", Freshness: store.MustBeFresh})
	if err != nil || ph.Status != store.PhotoRejected {
		t.Errorf("photo without its original: %+v, %v; want rejected", ph, err)
	}

	// Into the live data directory, by flag and by variable: refused,
	// naming the directory and where it came from; nothing is written.
	for _, tc := range []struct {
		args []string
		env  map[string]string
		name string
	}{
		{[]string{"restore", "-from", to, "-data-dir", data}, nil, "-data-dir"},
		{[]string{"restore", "-from", to}, map[string]string{"ONEBOX_DATA_DIR": data}, "ONEBOX_DATA_DIR"},
	} {
		_, _, err := runCLI(t, tc.args, tc.env)
		if err == nil || !strings.Contains(err.Error(), data) || !strings.Contains(err.Error(), "("+tc.name+")") || !strings.Contains(err.Error(), "non-empty") {
			t.Errorf("%q: err %v, want a refusal naming %s and %s", tc.args, err, data, tc.name)
		}
	}
	// A second backup into the same directory is refused too.
	if _, _, err := runCLI(t, []string{"backup", "-to", to, "-data-dir", data}, nil); err == nil || !strings.Contains(err.Error(), "-to "+to) {
		t.Errorf("backup into a used directory: %v", err)
	}
}

// seedInstance is a data directory holding a user and a photo with its
// original. Its store stays open until the test ends: backup runs beside
// the service.
func seedInstance(t *testing.T) (string, store.User) {
	t.Helper()
	ctx := t.Context()
	data := t.TempDir()
	st, err := sqlite.New(ctx, sqlite.Options{Path: filepath.Join(data, "onebox.db"), ReadConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m, err := medialocal.New(filepath.Join(data, "media"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	now := time.Now()
	u, err := st.CreateUser(ctx, store.CreateUserParams{ID: "0190a0a0-0000-7000-8000-000000000001", Handle: "ada", DisplayName: "Ada", PasswordHash: "x", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	const key = "private/originals/p1"
	if _, err := m.Put(ctx, key, strings.NewReader("the original"), "image/png"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.CreatePhoto(ctx, store.CreatePhotoParams{
		Photo: store.Photo{ID: "0190a0a0-0000-7000-8000-000000000002", OwnerID: u.ID, OriginalKey: key, ContentType: "image/png", Size: 12, CreatedAt: now},
		Job:   jobs.Message{Kind: "photo.process", Payload: json.RawMessage(`{}`)},
	}); err != nil {
		t.Fatal(err)
	}
	return data, u
}

// checkSeedRestored checks the data directory restored from seedInstance's,
// with restore's output out, and returns its store.
func checkSeedRestored(t *testing.T, restored string, u store.User, out string) *sqlite.Store {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(restored, "media", "private", "originals", "p1"))
	if err != nil || string(got) != "the original" {
		t.Errorf("restored original = %q, %v", got, err)
	}
	rst, err := sqlite.New(t.Context(), sqlite.Options{Path: filepath.Join(restored, "onebox.db"), ReadConns: 1, NoCreate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rst.Close() })
	if ru, err := rst.User(t.Context(), store.UserParams{ID: u.ID, Freshness: store.MustBeFresh}); err != nil || ru != u {
		t.Errorf("restored user = %+v, %v; want %+v", ru, err, u)
	}
	if !strings.Contains(out, "reconcile: 1 photos checked, 0 reprocessed, 0 lost, 0 files without a row") {
		t.Errorf("restore did not reconcile:\n%s", out)
	}
	return rst
}

// TestBackupRestoreS3Commands: onebox backup -to s3://… and onebox
// restore -from s3://…, on gofakes3, with credentials from the
// environment as the SDK reads them (hence not parallel). The backup's
// objects are laid out as a backup directory's files.
func TestBackupRestoreS3Commands(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "onebox")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "onebox-secret")
	be := s3mem.New()
	if err := be.CreateBucket("backups"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(be).Server())
	t.Cleanup(srv.Close)
	data, u := seedInstance(t)

	to := "s3://backups/nightly/1?region=us-east-1&endpoint=" + url.QueryEscape(srv.URL)
	out, _, err := runCLI(t, []string{"backup", "--to", to, "-data-dir", data}, nil)
	if err != nil || !strings.Contains(out, "1 media files") || !strings.Contains(out, "wrote s3://backups/nightly/1 in ") {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	for _, key := range []string{"nightly/1/manifest.json", "nightly/1/onebox.db", "nightly/1/media/private/originals/p1"} {
		if _, err := be.HeadObject("backups", key); err != nil {
			t.Errorf("object %s: %v", key, err)
		}
	}
	if _, _, err := runCLI(t, []string{"backup", "-to", to, "-data-dir", data}, nil); err == nil || !strings.Contains(err.Error(), "s3://backups/nightly/1 is not empty") {
		t.Errorf("backup into a used prefix: %v", err)
	}
	// The upload's stage, beside the database, is gone.
	if stages, err := filepath.Glob(filepath.Join(data, ".onebox-backup-*")); err != nil || len(stages) > 0 {
		t.Errorf("left in the data directory: %v, %v", stages, err)
	}

	restored := filepath.Join(t.TempDir(), "data")
	out, _, err = runCLI(t, []string{"restore", "-from", to}, map[string]string{"ONEBOX_DATA_DIR": restored})
	if err != nil || !strings.Contains(out, "integrity check ok") || !strings.Contains(out, "restored s3://backups/nightly/1 ") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	checkSeedRestored(t, restored, u, out)
}
