package backup_test

import (
	"bytes"
	"errors"
	"net/url"
	"strings"
	"testing"

	"onebox/backup"
	"onebox/media"
	medias3 "onebox/media/s3"
	"onebox/media/s3/s3test"
	"onebox/store"
)

// objects is a backup target at s3://bucket/prefix on endpoint, opened
// as onebox backup opens one: the media under prefix/media.
func objects(t *testing.T, endpoint, bucket, prefix string) backup.Objects {
	t.Helper()
	return backup.Objects{
		Root: openS3(t, endpoint, bucket, prefix), MediaFiles: openS3(t, endpoint, bucket, prefix+"/media"),
		Name: "s3://" + bucket + "/" + prefix, TempDir: t.TempDir(),
	}
}

// openS3 is a media/s3 storage at s3://bucket/prefix on endpoint.
func openS3(t *testing.T, endpoint, bucket, prefix string) *medias3.Storage {
	t.Helper()
	u := &url.URL{Scheme: "s3", Host: bucket, Path: "/" + prefix, RawQuery: url.Values{"endpoint": {endpoint}}.Encode()}
	st, err := medias3.Open(t.Context(), u, medias3.Options{Credentials: s3test.Credentials(), TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestObjects: a backup to an S3 bucket's prefix restores with the same
// rows and files, and is checked as a directory's is: a prefix already
// used is refused, and a changed database, media file or row count, or
// a missing manifest, fails the restore naming it.
func TestObjects(t *testing.T) {
	t.Parallel()
	for _, srv := range s3test.Servers() {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			endpoint, bucket := srv.Bucket(t)
			in := seed(t)
			to := objects(t, endpoint, bucket, "nightly/1")
			m, err := backup.Backup(ctx, in.db, in.media, to, backup.Options{Version: "test"})
			if err != nil {
				t.Fatalf("Backup: %v", err)
			}
			if len(m.Media) != len(in.files) || m.Tables["users"] != 2 {
				t.Fatalf("manifest: %d media files, tables %v; want %d files, 2 users", len(m.Media), m.Tables, len(in.files))
			}
			if _, err := to.Root.Stat(ctx, backup.ManifestFile); err != nil {
				t.Errorf("no %s object: %v", backup.ManifestFile, err)
			}
			if _, err := to.Root.Stat(ctx, "media/photos/orphan/w128.webp"); !errors.Is(err, media.ErrNotFound) {
				t.Errorf("unreferenced media was backed up: %v", err)
			}
			if _, err := backup.Backup(ctx, in.db, in.media, to, backup.Options{}); !errors.Is(err, backup.ErrNotEmpty) || !strings.Contains(err.Error(), to.Name) {
				t.Errorf("Backup into a used prefix = %v, want ErrNotEmpty naming it", err)
			}

			dir, err := restore(t, to)
			if err != nil {
				t.Fatalf("Restore: %v", err)
			}
			db, st := open(t, dir)
			for _, u := range in.users {
				if got, err := db.User(ctx, store.UserParams{ID: u.ID, Freshness: store.MustBeFresh}); err != nil || got != u {
					t.Errorf("restored user = %+v, %v; want %+v", got, err, u)
				}
			}
			for key, body := range in.files {
				if got, _ := readAll(t, st, key); !bytes.Equal(got, body) {
					t.Errorf("restored %s = %q, want %q", key, got, body)
				}
			}

			for _, tc := range []struct {
				name   string
				tamper func(t *testing.T, to backup.Objects)
				want   string
			}{{
				name:   "media file",
				tamper: func(t *testing.T, to backup.Objects) { flipObject(t, to.MediaFiles, in.ready.Variants[0].Key) },
				want:   in.ready.Variants[0].Key,
			}, {
				name:   "database file",
				tamper: func(t *testing.T, to backup.Objects) { flipObject(t, to.Root, backup.DatabaseFile) },
				want:   "bytes with SHA-256",
			}, {
				name: "row count",
				tamper: func(t *testing.T, to backup.Objects) {
					editManifest(t, to, func(m *backup.Manifest) { m.Tables["photos"]++ })
				},
				want: "table photos: 2 rows, the manifest says 3",
			}} {
				t.Run(tc.name, func(t *testing.T) {
					to := objects(t, endpoint, bucket, "tampered/"+strings.ReplaceAll(tc.name, " ", "-"))
					if _, err := backup.Backup(ctx, in.db, in.media, to, backup.Options{}); err != nil {
						t.Fatal(err)
					}
					tc.tamper(t, to)
					if _, err := restore(t, to); !errors.Is(err, backup.ErrMismatch) || !strings.Contains(err.Error(), tc.want) {
						t.Errorf("Restore = %v, want ErrMismatch naming %q", err, tc.want)
					}
				})
			}
			if err := to.Root.Delete(ctx, backup.ManifestFile); err != nil {
				t.Fatal(err)
			}
			if _, err := restore(t, to); err == nil || !strings.Contains(err.Error(), "has no manifest.json") {
				t.Errorf("Restore without a manifest = %v, want an error naming it", err)
			}
		})
	}
}

// flipObject replaces key with its bytes, one of them changed.
func flipObject(t *testing.T, st media.Storage, key string) {
	t.Helper()
	b, info := readAll(t, st, key)
	b[len(b)/2] ^= 0x20
	if _, err := st.Put(t.Context(), key, bytes.NewReader(b), info.ContentType); err != nil {
		t.Fatal(err)
	}
}
