package backup_test

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "modernc.org/sqlite" // for the test that corrupts a backup's schema

	"onebox/backup"
	"onebox/jobs"
	"onebox/media"
	medialocal "onebox/media/local"
	"onebox/store"
	"onebox/store/sqlite"
)

// instance is a data directory with a running store and media storage,
// seeded with two users, a ready photo with its variants and a photo
// still processing, and a media file no row references.
type instance struct {
	dir    string
	db     *sqlite.Store
	media  *medialocal.Storage
	users  []store.User
	ready  store.Photo
	inWork store.Photo
	files  map[string][]byte // every referenced media key's bytes
}

func newID(t *testing.T) string {
	t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}

func open(t *testing.T, dir string) (*sqlite.Store, *medialocal.Storage) {
	t.Helper()
	db, err := sqlite.New(t.Context(), sqlite.Options{Path: filepath.Join(dir, "onebox.db"), ReadConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	m, err := medialocal.New(filepath.Join(dir, "media"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return db, m
}

func seed(t *testing.T) *instance {
	t.Helper()
	in := &instance{dir: t.TempDir(), files: map[string][]byte{}}
	in.db, in.media = open(t, in.dir)
	fill(t, in, in.media)
	return in
}

// fill seeds in's database and the media storage m (seed's, or another).
func fill(t *testing.T, in *instance, m media.Storage) {
	t.Helper()
	ctx := t.Context()
	now := time.Now().UTC().Truncate(time.Millisecond)
	for _, h := range []string{"alice", "bob"} {
		u, err := in.db.CreateUser(ctx, store.CreateUserParams{ID: newID(t), Handle: h, DisplayName: strings.ToUpper(h), PasswordHash: "hash-" + h, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		in.users = append(in.users, u)
	}
	put := func(key, body, contentType string) {
		t.Helper()
		if _, err := m.Put(ctx, key, strings.NewReader(body), contentType); err != nil {
			t.Fatal(err)
		}
		in.files[key] = []byte(body)
	}
	create := func(owner store.User) store.Photo {
		t.Helper()
		id := newID(t)
		original := "private/originals/" + id
		put(original, "original bytes of "+id, "image/jpeg")
		ph, _, err := in.db.CreatePhoto(ctx, store.CreatePhotoParams{
			Photo: store.Photo{ID: id, OwnerID: owner.ID, OriginalKey: original, ContentType: "image/jpeg", Size: 10, CreatedAt: now},
			Job:   jobs.Message{Kind: "photo.process", Payload: json.RawMessage(`{}`)},
		})
		if err != nil {
			t.Fatal(err)
		}
		return ph
	}
	ready := create(in.users[0])
	var variants []store.Variant
	for _, name := range []string{"w128", "w512"} {
		key := "photos/" + ready.ID + "/" + name + ".webp"
		put(key, "variant "+name+" of "+ready.ID, "image/webp")
		variants = append(variants, store.Variant{Name: name, Key: key, Width: 128, Height: 96, Size: 20, ContentType: "image/webp"})
	}
	var err error
	if in.ready, err = in.db.FinishPhoto(ctx, store.FinishPhotoParams{ID: ready.ID, Status: store.PhotoReady, Width: 640, Height: 480, Variants: variants, Now: now}); err != nil {
		t.Fatal(err)
	}
	in.inWork = create(in.users[1])
	// Not referenced by any row: a backup leaves it out.
	if _, err := m.Put(ctx, "photos/orphan/w128.webp", strings.NewReader("orphan"), "image/webp"); err != nil {
		t.Fatal(err)
	}
}

func mustBackup(t *testing.T, in *instance) (string, backup.Manifest) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "backup")
	m, err := backup.Backup(t.Context(), in.db, in.media, backup.Dir(dir), backup.Options{Version: "test"})
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	return dir, m
}

// restore restores from into a new data directory, which it returns.
func restore(t *testing.T, from backup.Target) (string, error) {
	t.Helper()
	dir := t.TempDir()
	m, err := medialocal.New(filepath.Join(dir, "media"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	_, err = backup.Restore(t.Context(), from, filepath.Join(dir, "onebox.db"), m)
	return dir, err
}

func readAll(t *testing.T, st media.Storage, key string) ([]byte, media.Info) {
	t.Helper()
	obj, err := st.Open(t.Context(), key)
	if err != nil {
		t.Fatalf("open %s: %v", key, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	return b, obj.Info()
}

// TestRoundTrip: a backup taken while the store is open and written to
// holds the database as of the snapshot and exactly the referenced media;
// restored into a new directory, the rows and files are the same.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	in := seed(t)
	ctx := t.Context()
	from, m := mustBackup(t, in)

	// A write after the backup is not in it.
	if _, err := in.db.CreateUser(ctx, store.CreateUserParams{ID: newID(t), Handle: "carol", DisplayName: "C", PasswordHash: "x", Now: time.Now()}); err != nil {
		t.Fatal(err)
	}

	if m.Tables["users"] != 2 || m.Tables["photos"] != 2 {
		t.Errorf("manifest tables = %v, want 2 users and 2 photos", m.Tables)
	}
	var keys []string
	for _, f := range m.Media {
		keys = append(keys, f.Name)
		sum := sha256.Sum256(in.files[f.Name])
		if f.SHA256 != hex.EncodeToString(sum[:]) || f.Size != int64(len(in.files[f.Name])) {
			t.Errorf("manifest %s = %+v, want the digest and size of its bytes", f.Name, f)
		}
	}
	want := slices.Sorted(func(yield func(string) bool) {
		for k := range in.files {
			if !yield(k) {
				return
			}
		}
	})
	if !slices.Equal(keys, want) || len(m.Missing) != 0 {
		t.Errorf("manifest media = %v, missing %v; want %v", keys, m.Missing, want)
	}
	if _, err := os.Stat(filepath.Join(from, "media", "photos", "orphan")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unreferenced media was backed up: %v", err)
	}

	dir, err := restore(t, backup.Dir(from))
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	db, st := open(t, dir)
	for _, u := range in.users {
		got, err := db.User(ctx, store.UserParams{ID: u.ID, Freshness: store.MustBeFresh})
		if err != nil || got != u {
			t.Errorf("restored user = %+v, %v; want %+v", got, err, u)
		}
	}
	if _, err := db.UserByHandle(ctx, store.UserByHandleParams{Handle: "carol"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a user created after the backup: %v, want ErrNotFound", err)
	}
	for _, ph := range []store.Photo{in.ready, in.inWork} {
		got, err := db.Photo(ctx, store.PhotoParams{ID: ph.ID, Freshness: store.MustBeFresh})
		if err != nil || !photoEqual(got, ph) {
			t.Errorf("restored photo = %+v, %v; want %+v", got, err, ph)
		}
	}
	for key, body := range in.files {
		got, info := readAll(t, st, key)
		if !bytes.Equal(got, body) {
			t.Errorf("restored %s = %q, want %q", key, got, body)
		}
		if want := map[bool]string{true: "image/webp", false: "image/jpeg"}[strings.HasPrefix(key, "photos/")]; info.ContentType != want {
			t.Errorf("restored %s content type %q, want %q", key, info.ContentType, want)
		}
	}
	if _, err := st.Open(ctx, "photos/orphan/w128.webp"); !errors.Is(err, media.ErrNotFound) {
		t.Errorf("unreferenced media restored: %v", err)
	}
	// The queued job of the processing photo comes back too.
	if n := m.Tables["goqite"]; n != 2 {
		t.Errorf("manifest counts %d goqite rows, want the 2 process jobs", n)
	}
}

func photoEqual(a, b store.Photo) bool {
	va, vb := a.Variants, b.Variants
	a.Variants, b.Variants = nil, nil
	return a.ID == b.ID && a.OwnerID == b.OwnerID && a.Status == b.Status && a.Width == b.Width &&
		a.OriginalKey == b.OriginalKey && a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt) &&
		slices.Equal(va, vb)
}

// TestMissingMedia: a referenced file already gone at backup time (a
// photo deleted after the snapshot) is listed as missing, not fatal.
func TestMissingMedia(t *testing.T) {
	t.Parallel()
	in := seed(t)
	gone := in.ready.Variants[0].Key
	if err := in.media.Delete(t.Context(), gone); err != nil {
		t.Fatal(err)
	}
	from, m := mustBackup(t, in)
	if !slices.Equal(m.Missing, []string{gone}) || len(m.Media) != len(in.files)-1 {
		t.Errorf("missing = %v with %d files, want [%s] with %d", m.Missing, len(m.Media), gone, len(in.files)-1)
	}
	if _, err := restore(t, backup.Dir(from)); err != nil {
		t.Errorf("Restore: %v", err)
	}
}

// TestRestoreRefusesTampering: each way a backup can differ from its
// manifest fails the restore with ErrMismatch, naming what differs.
func TestRestoreRefusesTampering(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, in *instance, dir string)
		want   string // in the error
		// file, if set, is the media key tampered with, which must not
		// be left in the data directory; it is also in the error.
		file func(in *instance) string
	}{{
		name: "variant file",
		file: func(in *instance) string { return in.ready.Variants[1].Key },
	}, {
		name: "original file",
		file: func(in *instance) string { return in.inWork.OriginalKey },
	}, {
		name: "database file",
		tamper: func(t *testing.T, in *instance, dir string) {
			flipByte(t, filepath.Join(dir, "onebox.db"))
		},
		want: "bytes with SHA-256", // the digest check, not a later one
	}, {
		name: "row count",
		tamper: func(t *testing.T, in *instance, dir string) {
			editManifest(t, backup.Dir(dir), func(m *backup.Manifest) { m.Tables["users"]++ })
		},
		want: "table users: 2 rows, the manifest says 3",
	}, {
		name: "media list",
		tamper: func(t *testing.T, in *instance, dir string) {
			editManifest(t, backup.Dir(dir), func(m *backup.Manifest) { m.Media = m.Media[1:] })
		},
		want: "is referenced but not in the manifest",
	}, {
		// The digest matches, the schema does not match the data: only
		// the integrity check sees it (the rows still count the same).
		name: "corrupt index",
		tamper: func(t *testing.T, in *instance, dir string) {
			path := filepath.Join(dir, "onebox.db")
			db, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for _, q := range []string{
				`PRAGMA writable_schema = ON`,
				`UPDATE sqlite_schema SET sql = 'CREATE INDEX photos_owner_id ON photos (status, id)' WHERE name = 'photos_owner_id'`,
			} {
				if _, err := db.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(b)
			editManifest(t, backup.Dir(dir), func(m *backup.Manifest) {
				m.Database.SHA256, m.Database.Size = hex.EncodeToString(sum[:]), int64(len(b))
			})
		},
		want: "integrity check failed",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := seed(t)
			from, _ := mustBackup(t, in)
			want := tc.want
			if tc.file != nil {
				want = tc.file(in)
				flipByte(t, filepath.Join(from, "media", filepath.FromSlash(want)))
			} else {
				tc.tamper(t, in, from)
			}
			dir, err := restore(t, backup.Dir(from))
			if !errors.Is(err, backup.ErrMismatch) || !strings.Contains(err.Error(), want) {
				t.Errorf("Restore = %v, want ErrMismatch naming %q", err, want)
			}
			// A file that differs from its manifest is not left in the
			// data directory.
			if tc.file != nil {
				if _, err := os.Stat(filepath.Join(dir, "media", filepath.FromSlash(want))); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the tampered %s was restored (%v)", want, err)
				}
			}
		})
	}
}

func flipByte(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x20
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// editManifest rewrites the manifest of the backup in a directory or a
// bucket with edit.
func editManifest(t *testing.T, to backup.Target, edit func(*backup.Manifest)) {
	t.Helper()
	m, err := backup.ReadManifest(t.Context(), to)
	if err != nil {
		t.Fatal(err)
	}
	edit(&m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	switch to := to.(type) {
	case backup.Dir:
		err = os.WriteFile(filepath.Join(string(to), backup.ManifestFile), b, 0o640)
	case backup.Objects:
		_, err = to.Root.Put(t.Context(), backup.ManifestFile, bytes.NewReader(b), "")
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestRefusals: a backup never goes into a non-empty directory, and a
// directory without a manifest (a backup killed before the end) is no
// backup to restore.
func TestRefusals(t *testing.T) {
	t.Parallel()
	in := seed(t)
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Backup(t.Context(), in.db, in.media, backup.Dir(full), backup.Options{}); !errors.Is(err, backup.ErrNotEmpty) || !strings.Contains(err.Error(), full) {
		t.Errorf("Backup into a non-empty directory = %v, want ErrNotEmpty naming it", err)
	}
	if err := backup.CheckEmpty(full); !errors.Is(err, backup.ErrNotEmpty) {
		t.Errorf("CheckEmpty(non-empty) = %v", err)
	}
	for _, dir := range []string{t.TempDir(), filepath.Join(t.TempDir(), "missing")} {
		if err := backup.CheckEmpty(dir); err != nil {
			t.Errorf("CheckEmpty(%s) = %v", dir, err)
		}
	}
	from, _ := mustBackup(t, in)
	if err := os.Remove(filepath.Join(from, backup.ManifestFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := restore(t, backup.Dir(from)); err == nil || !strings.Contains(err.Error(), "manifest.json") {
		t.Errorf("Restore without a manifest = %v, want an error naming it", err)
	}
}

// TestBackupUnderWrites: a backup taken while users and photos are
// being created is consistent: what the manifest counts and lists is
// the snapshot's, so the restore checks out.
func TestBackupUnderWrites(t *testing.T) {
	t.Parallel()
	in := seed(t)
	ctx := t.Context()
	stop := make(chan struct{})
	done := make(chan error, 1)
	wrote := make(chan struct{}, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			u, err := in.db.CreateUser(ctx, store.CreateUserParams{ID: uuid.Must(uuid.NewV7()).String(), Handle: "w" + strconv.Itoa(i), DisplayName: "W", PasswordHash: "x", Now: time.Now()})
			if err == nil {
				id := uuid.Must(uuid.NewV7()).String()
				key := "private/originals/" + id
				if _, err = in.media.Put(ctx, key, strings.NewReader(id), "image/jpeg"); err == nil {
					_, _, err = in.db.CreatePhoto(ctx, store.CreatePhotoParams{
						Photo: store.Photo{ID: id, OwnerID: u.ID, OriginalKey: key, ContentType: "image/jpeg", Size: 36, CreatedAt: time.Now()},
						Job:   jobs.Message{Kind: "photo.process", Payload: json.RawMessage(`{}`)},
					})
				}
			}
			if err != nil {
				done <- err
				return
			}
			select {
			case wrote <- struct{}{}:
			default:
			}
		}
	}()
	<-wrote // the writes are under way
	from, m := mustBackup(t, in)
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("writer: %v", err)
	}
	if m.Tables["users"] <= 2 {
		t.Logf("the backup caught none of the concurrent users (%v)", m.Tables)
	}
	if _, err := restore(t, backup.Dir(from)); err != nil {
		t.Errorf("Restore of a backup taken under writes: %v", err)
	}
}
