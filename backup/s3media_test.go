package backup_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"onebox/backup"
	"onebox/media"
	medias3 "onebox/media/s3"
	"onebox/media/s3/s3test"
	"onebox/store/sqlite"
)

// TestS3Media: an instance whose media are in S3 is backed up from its
// bucket and restored into another prefix through media.Storage, with
// the digests checked on both sides: the manifest holds the SHA-256 of
// the bytes stored, an object whose bytes differ from the digest stored
// with it fails the backup, a backup file that differs from the
// manifest fails the restore and leaves no object behind; reconcile
// lists and sweeps the objects of the restored prefix.
func TestS3Media(t *testing.T) {
	t.Parallel()
	for _, srv := range s3test.Servers() {
		t.Run(srv.Name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			endpoint, bucket := srv.Bucket(t)
			openS3 := func(prefix string) *medias3.Storage { return openS3(t, endpoint, bucket, prefix) }
			in := &instance{dir: t.TempDir(), files: map[string][]byte{}}
			in.db, _ = open(t, in.dir)
			fill(t, in, openS3("live"))

			dir := filepath.Join(t.TempDir(), "backup")
			m, err := backup.Backup(ctx, in.db, openS3("live"), backup.Dir(dir), backup.Options{Version: "test"})
			if err != nil {
				t.Fatalf("Backup: %v", err)
			}
			if len(m.Media) != len(in.files) || len(m.Missing) > 0 {
				t.Fatalf("manifest: %d media files, missing %v; want %d", len(m.Media), m.Missing, len(in.files))
			}
			for _, f := range m.Media {
				if sum := sha256.Sum256(in.files[f.Name]); f.SHA256 != hex.EncodeToString(sum[:]) {
					t.Errorf("manifest: %s has SHA-256 %s, its bytes %x", f.Name, f.SHA256, sum)
				}
			}

			dst := openS3("restored")
			dbPath := filepath.Join(t.TempDir(), "onebox.db")
			if _, err := backup.Restore(ctx, backup.Dir(dir), dbPath, dst); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			for key, want := range in.files {
				if got, _ := readAll(t, dst, key); string(got) != string(want) {
					t.Errorf("restored %s = %q, want %q", key, got, want)
				}
			}
			st, err := sqlite.New(ctx, sqlite.Options{Path: dbPath, ReadConns: 1, NoCreate: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			if _, err := dst.Put(ctx, "photos/orphan/w128.webp", strings.NewReader("orphan"), ""); err != nil {
				t.Fatal(err)
			}
			r, err := backup.Reconcile(ctx, st, dst, backup.ReconcileOptions{Lists: []backup.Lister{dst}, Sweep: true})
			if err != nil || r.Photos != 2 || len(r.Lost)+len(r.Reprocessed) > 0 || r.Swept != 1 || len(r.Orphans) != 1 {
				t.Errorf("Reconcile = %+v, %v; want 2 photos intact, the orphan swept", r, err)
			}
			if _, err := dst.Stat(ctx, "photos/orphan/w128.webp"); !errors.Is(err, media.ErrNotFound) {
				t.Errorf("orphan not swept: %v", err)
			}

			// A backup file changed since the backup: the restore fails
			// naming it, and the object it wrote is deleted.
			key := in.ready.Variants[0].Key
			if err := os.WriteFile(filepath.Join(dir, backup.MediaDir, filepath.FromSlash(key)), []byte("changed"), 0o640); err != nil {
				t.Fatal(err)
			}
			tampered := openS3("tampered")
			_, err = backup.Restore(ctx, backup.Dir(dir), filepath.Join(t.TempDir(), "onebox.db"), tampered)
			if !errors.Is(err, backup.ErrMismatch) || !strings.Contains(err.Error(), key) {
				t.Errorf("Restore of a changed file: %v; want a mismatch naming %s", err, key)
			}
			if _, err := tampered.Stat(ctx, key); !errors.Is(err, media.ErrNotFound) {
				t.Errorf("the changed file was left in the media: %v", err)
			}

			// An object whose bytes are not those its digest was stored
			// with (damaged at rest): the backup fails naming it.
			client := s3.New(s3.Options{BaseEndpoint: aws.String(endpoint), UsePathStyle: true, Region: "us-east-1", Credentials: s3test.Credentials()})
			sum := sha256.Sum256(in.files[key])
			if _, err := client.PutObject(ctx, &s3.PutObjectInput{
				Bucket: &bucket, Key: aws.String("live/" + key), Body: strings.NewReader("damaged"),
				Metadata: map[string]string{"sha256": hex.EncodeToString(sum[:])},
			}); err != nil {
				t.Fatal(err)
			}
			_, err = backup.Backup(ctx, in.db, openS3("live"), backup.Dir(filepath.Join(t.TempDir(), "b2")), backup.Options{})
			if !errors.Is(err, backup.ErrMismatch) || !strings.Contains(err.Error(), key) {
				t.Errorf("Backup of a damaged object: %v; want a mismatch naming %s", err, key)
			}
		})
	}
}
