package main

import (
	"encoding/json"
	"errors"
	"io"
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
	"onebox/media"
	medialocal "onebox/media/local"
	medias3 "onebox/media/s3"
	"onebox/media/s3/s3test"
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
	data := t.TempDir()
	m, err := medialocal.New(filepath.Join(data, "media"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	return data, seedInstanceWith(t, data, m)
}

// seedInstanceWith seeds the database in data and the media storage m as
// seedInstance does.
func seedInstanceWith(t *testing.T, data string, m media.Storage) store.User {
	t.Helper()
	ctx := t.Context()
	st, err := sqlite.New(ctx, sqlite.Options{Path: filepath.Join(data, "onebox.db"), ReadConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
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
	return u
}

// checkSeedRestored checks the data directory restored from seedInstance's,
// with restore's output out, and returns its store.
func checkSeedRestored(t *testing.T, restored string, u store.User, out string) *sqlite.Store {
	t.Helper()
	m, err := medialocal.New(filepath.Join(restored, "media"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	return checkSeedRestoredIn(t, restored, m, u, out)
}

// checkSeedRestoredIn is checkSeedRestored for the media storage m.
func checkSeedRestoredIn(t *testing.T, restored string, m media.Storage, u store.User, out string) *sqlite.Store {
	t.Helper()
	obj, err := m.Open(t.Context(), "private/originals/p1")
	if err != nil {
		t.Fatalf("restored original: %v", err)
	}
	got, err := io.ReadAll(obj)
	obj.Close()
	if err != nil || string(got) != "the original" || obj.Info().ContentType != "image/png" {
		t.Errorf("restored original = %q (%s), %v", got, obj.Info().ContentType, err)
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
	t.Setenv("AWS_ACCESS_KEY_ID", s3test.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.SecretKey)
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

// TestBackupRestoreS3MediaCommands: an instance whose own media are in
// S3 (ONEBOX_MEDIA_URL=s3://…) is backed up from its bucket, to a
// directory and to another prefix, and restored into an empty prefix,
// through media/s3 as the service opens it: the same rows and objects,
// every digest checked. A restore into a prefix that holds an object is
// refused naming it and ONEBOX_MEDIA_URL; reconcile lists and sweeps an
// object no row references and marks lost the photo whose original is
// gone. On gofakes3, and on the moto_server at ONEBOX_TEST_S3_URL.
// Credentials come from the environment, as the SDK reads them (hence
// not parallel).
func TestBackupRestoreS3MediaCommands(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", s3test.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.SecretKey)
	for _, srv := range s3test.Servers() {
		t.Run(srv.Name, func(t *testing.T) {
			ctx := t.Context()
			endpoint, bucket := srv.Bucket(t)
			mediaURL := func(prefix string) string {
				return "s3://" + bucket + "/" + prefix + "?region=us-east-1&endpoint=" + url.QueryEscape(endpoint)
			}
			openS3 := func(prefix string) *medias3.Storage {
				t.Helper()
				u, err := url.Parse(mediaURL(prefix))
				if err != nil {
					t.Fatal(err)
				}
				m, err := medias3.Open(ctx, u, medias3.Options{TempDir: t.TempDir()})
				if err != nil {
					t.Fatal(err)
				}
				return m
			}
			data := t.TempDir()
			u := seedInstanceWith(t, data, openS3("live"))
			live := map[string]string{"ONEBOX_MEDIA_URL": mediaURL("live")}

			to := filepath.Join(t.TempDir(), "b1")
			out, _, err := runCLI(t, []string{"backup", "-to", to, "-data-dir", data}, live)
			if err != nil || !strings.Contains(out, "backed up s3://"+bucket+"/live: 1 media files") {
				t.Fatalf("backup: %v\n%s", err, out)
			}
			if got, err := os.ReadFile(filepath.Join(to, "media", "private", "originals", "p1")); err != nil || string(got) != "the original" {
				t.Errorf("backed up original = %q, %v", got, err)
			}
			toS3 := mediaURL("backups/1")
			if out, _, err := runCLI(t, []string{"backup", "-to", toS3, "-data-dir", data}, live); err != nil || !strings.Contains(out, "1 media files") {
				t.Fatalf("backup to S3: %v\n%s", err, out)
			}
			if _, err := openS3("backups/1/media").Stat(ctx, "private/originals/p1"); err != nil {
				t.Errorf("original in the S3 backup: %v", err)
			}

			restored := filepath.Join(t.TempDir(), "data")
			renv := map[string]string{"ONEBOX_DATA_DIR": restored, "ONEBOX_MEDIA_URL": mediaURL("restored")}
			out, _, err = runCLI(t, []string{"restore", "-from", to}, renv)
			if err != nil || !strings.Contains(out, "media s3://"+bucket+"/restored: 1 files") {
				t.Fatalf("restore: %v\n%s", err, out)
			}
			rm := openS3("restored")
			rst := checkSeedRestoredIn(t, restored, rm, u, out)
			if _, err := os.Stat(filepath.Join(restored, "media")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("restore made a media directory: %v", err)
			}

			// The restored prefix holds objects now: a restore into it,
			// even beside an empty data directory, is refused.
			_, _, err = runCLI(t, []string{"restore", "-from", toS3}, map[string]string{
				"ONEBOX_DATA_DIR": filepath.Join(t.TempDir(), "data"), "ONEBOX_MEDIA_URL": mediaURL("restored")})
			if err == nil || !strings.Contains(err.Error(), "non-empty media storage (ONEBOX_MEDIA_URL)") ||
				!strings.Contains(err.Error(), "s3://"+bucket+"/restored is not empty") {
				t.Errorf("restore into a used prefix: %v", err)
			}

			// Reconcile: the original gone marks its photo lost; an object
			// without a row is swept.
			if _, err := rm.Put(ctx, "photos/gone/w128.jpg", strings.NewReader("x"), ""); err != nil {
				t.Fatal(err)
			}
			if err := rm.Delete(ctx, "private/originals/p1"); err != nil {
				t.Fatal(err)
			}
			out, _, err = runCLI(t, []string{"reconcile", "-sweep", "-grace", "0s"}, renv)
			if err != nil || !strings.Contains(out, "lost 0190a0a0-0000-7000-8000-000000000002") || !strings.Contains(out, "orphan photos/gone/w128.jpg") ||
				!strings.Contains(out, "1 lost, 1 files without a row, 1 swept") {
				t.Fatalf("reconcile: %v\n%s", err, out)
			}
			if _, err := rm.Stat(ctx, "photos/gone/w128.jpg"); !errors.Is(err, media.ErrNotFound) {
				t.Errorf("orphan not swept: %v", err)
			}
			ph, err := rst.Photo(ctx, store.PhotoParams{ID: "0190a0a0-0000-7000-8000-000000000002", Freshness: store.MustBeFresh})
			if err != nil || ph.Status != store.PhotoRejected {
				t.Errorf("photo without its original: %+v, %v; want rejected", ph, err)
			}
		})
	}
}
