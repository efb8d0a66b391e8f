// Package backup writes a consistent copy of onebox's data (the SQLite
// database and exactly the media files it references) to a directory or
// an S3 bucket's prefix (a Target), and restores one into an empty data
// directory, checking both ways that what was copied is what was read:
// PRAGMA integrity_check, the row count of every table and the SHA-256
// of every file, against a manifest.
//
// A backup holds, as files of a directory or objects under a prefix:
//
//	manifest.json   what the backup holds, written last: a backup without it is incomplete
//	onebox.db       the database, as of one instant (VACUUM INTO)
//	media/          each referenced media file at its key (media/local's layout in a directory)
//
// Media files are copied after the database snapshot, so a photo deleted
// in between may have lost its files already: the manifest lists those
// keys as missing instead of failing the backup, and the restored
// database still references them until Reconcile (reconcile.go), which
// onebox restore runs, makes those photos again or marks them lost.
package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"onebox/media"
	"onebox/store/sqlite"
)

// The names in a backup directory.
const (
	ManifestFile = "manifest.json"
	DatabaseFile = "onebox.db"
	MediaDir     = "media"
)

// format is the manifest's format version; Restore refuses others.
const format = 1

// ErrNotEmpty is returned (wrapped, with the path) for a destination
// that is not empty: a backup never mixes with another, and a restore
// never mixes with live data.
var ErrNotEmpty = errors.New("not empty")

// ErrMismatch is wrapped by every error that says the data differs from
// its manifest: a digest, a size, a row count, the set of media keys.
var ErrMismatch = errors.New("does not match the manifest")

// Manifest describes a backup.
type Manifest struct {
	Format   int              `json:"format"`
	Created  time.Time        `json:"created"`
	Version  string           `json:"version"` // of the onebox that wrote it
	Database File             `json:"database"`
	Tables   map[string]int64 `json:"tables"` // row count of each table
	Media    []File           `json:"media"`  // sorted by Name
	// Missing are keys the database references that were gone when the
	// media were copied (see the package comment).
	Missing []string `json:"missing,omitempty"`
}

// File is one file of a backup: the database file's name, or a media key.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Options configure Backup.
type Options struct {
	Version string           // recorded in the manifest
	Now     func() time.Time // default time.Now
}

// Backup writes a backup of db and of the media files it references,
// read from src, into to, which must be empty. It works while the
// service runs (see sqlite.Store.Snapshot). Every file is written whole
// or not at all (a temp name, fsynced and renamed, or one upload), and
// the manifest comes last, so a backup killed half-way has no manifest,
// and Restore refuses it.
func Backup(ctx context.Context, db *sqlite.Store, src media.Storage, to Target, o Options) (_ Manifest, err error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := to.CheckEmpty(ctx); err != nil {
		return Manifest{}, err
	}
	stage, done, err := to.Stage()
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	defer func() { err = errors.Join(err, done()) }()
	m := Manifest{Format: format, Created: o.Now().UTC(), Version: o.Version}

	// The snapshot is checked and counted before it is hashed: opening
	// it turns it into a WAL database like the one it came from, which
	// changes its header.
	tmp := filepath.Join(stage, "."+DatabaseFile+".tmp")
	if err := db.Snapshot(ctx, tmp); err != nil {
		return Manifest{}, fmt.Errorf("backup: snapshot of the database: %w", err)
	}
	var keys []string
	err = inspect(ctx, tmp, func(snap *sqlite.Store) error {
		if err := snap.IntegrityCheck(ctx); err != nil {
			return err
		}
		var err error
		if m.Tables, err = snap.RowCounts(ctx); err != nil {
			return err
		}
		keys, err = snap.MediaKeys(ctx)
		return err
	})
	if err == nil {
		m.Database, err = hashFile(tmp, DatabaseFile)
	}
	if err == nil {
		err = to.Commit(ctx, tmp, DatabaseFile)
	}
	if err != nil {
		return Manifest{}, errors.Join(fmt.Errorf("backup: database snapshot: %w", err), removeIfExists(tmp))
	}

	dst, release, err := to.Media()
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	defer func() { err = errors.Join(err, release()) }()
	m.Media = []File{}
	for _, key := range keys {
		f, err := copyObject(ctx, src, dst, key)
		if errors.Is(err, media.ErrNotFound) {
			m.Missing = append(m.Missing, key)
			continue
		}
		if err != nil {
			return Manifest{}, fmt.Errorf("backup: media %s: %w", key, err)
		}
		m.Media = append(m.Media, f)
	}

	if err := writeManifest(ctx, to, stage, m); err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	return m, nil
}

// Restored says what Restore did.
type Restored struct {
	Manifest Manifest
	Bytes    int64 // of the database and media copied
}

// Restore copies the backup in from into the database file dbPath and
// the media storage dst, which the caller has checked are empty (see
// CheckEmpty), and checks the result: the backup's files against the
// manifest's digests as they are copied, then the restored database
// (integrity check, row counts, the media keys it references) and every
// restored media file's digest. Any difference is an error wrapping
// ErrMismatch that names the file; the data directory is then
// incomplete, and must be emptied before another attempt.
func Restore(ctx context.Context, from Target, dbPath string, dst media.Storage) (_ Restored, err error) {
	m, err := ReadManifest(ctx, from)
	if err != nil {
		return Restored{}, err
	}
	r := Restored{Manifest: m}

	if err := os.MkdirAll(filepath.Dir(dbPath), 0o750); err != nil {
		return r, fmt.Errorf("restore: %w", err)
	}
	tmp := dbPath + ".restore-tmp"
	if err := copyFile(ctx, from, tmp, m.Database); err != nil {
		return r, errors.Join(fmt.Errorf("restore: database %s in %s: %w", DatabaseFile, from, err), removeIfExists(tmp))
	}
	if err := commit(tmp, dbPath); err != nil {
		return r, errors.Join(fmt.Errorf("restore: database: %w", err), removeIfExists(tmp))
	}
	r.Bytes += m.Database.Size
	err = inspect(ctx, dbPath, func(st *sqlite.Store) error {
		if err := st.IntegrityCheck(ctx); err != nil {
			return fmt.Errorf("%w (%w)", err, ErrMismatch)
		}
		tables, err := st.RowCounts(ctx)
		if err != nil {
			return err
		}
		if err := sameCounts(tables, m.Tables); err != nil {
			return err
		}
		keys, err := st.MediaKeys(ctx)
		if err != nil {
			return err
		}
		return sameKeys(keys, m)
	})
	if err != nil {
		return r, fmt.Errorf("restore: database %s: %w", dbPath, err)
	}

	src, release, err := from.Media()
	if err != nil {
		return r, fmt.Errorf("restore: %w", err)
	}
	defer func() { err = errors.Join(err, release()) }()
	for _, want := range m.Media {
		got, err := copyObject(ctx, src, dst, want.Name)
		if err == nil {
			err = same(got, want)
		}
		if err != nil {
			// No file that differs from its manifest stays behind.
			return r, errors.Join(fmt.Errorf("restore: media %s in %s: %w", want.Name, from, err), dst.Delete(ctx, want.Name))
		}
		r.Bytes += got.Size
	}
	// Read back what was written, as onebox will read it.
	for _, want := range m.Media {
		got, err := hashObject(ctx, dst, want.Name)
		if err == nil {
			err = same(got, want)
		}
		if err != nil {
			return r, fmt.Errorf("restore: restored media %s: %w", want.Name, err)
		}
	}
	return r, nil
}

// ReadManifest reads and checks the manifest of the backup in from.
func ReadManifest(ctx context.Context, from Target) (Manifest, error) {
	b, err := readAll(ctx, from, ManifestFile)
	if errors.Is(err, fs.ErrNotExist) {
		return Manifest{}, fmt.Errorf("restore: %s has no %s: not a backup, or one that did not finish", from, ManifestFile)
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("restore: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, fmt.Errorf("restore: %s in %s: %w", ManifestFile, from, err)
	}
	if m.Format != format {
		return Manifest{}, fmt.Errorf("restore: %s in %s: format %d, this onebox reads format %d", ManifestFile, from, m.Format, format)
	}
	if m.Database.Name != DatabaseFile {
		return Manifest{}, fmt.Errorf("restore: %s in %s: database %q, want %q", ManifestFile, from, m.Database.Name, DatabaseFile)
	}
	for _, f := range m.Media {
		// The key names a file under media/: nothing else may.
		if !media.ValidKey(f.Name) {
			return Manifest{}, fmt.Errorf("restore: %s in %s: bad media key %q", ManifestFile, from, f.Name)
		}
	}
	return m, nil
}

func readAll(ctx context.Context, from Target, name string) ([]byte, error) {
	r, err := from.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(r)
	return b, errors.Join(err, r.Close())
}

// CheckEmpty returns nil for a missing or empty directory, and otherwise
// an error wrapping ErrNotEmpty (or the error reading it) with its path.
func CheckEmpty(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("%s is %w (it holds %s)", dir, ErrNotEmpty, entries[0].Name())
	}
	return nil
}

// inspect opens the database file at path without creating or migrating
// it, runs fn and closes it, which checkpoints its WAL into the file.
func inspect(ctx context.Context, path string, fn func(*sqlite.Store) error) error {
	st, err := sqlite.New(ctx, sqlite.Options{Path: path, ReadConns: 1, NoCreate: true, SkipMigrate: true})
	if err != nil {
		return err
	}
	err = fn(st)
	if err := errors.Join(err, st.Close()); err != nil {
		return err
	}
	// The Store was the file's only user: closing it must have folded
	// the WAL in, or the file alone is not the database.
	if _, err := os.Stat(path + "-wal"); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s-wal remains after closing the database (%v)", path, err)
	}
	return nil
}

// copyObject copies key from src to dst, with its content type,
// returning its size and the SHA-256 of the bytes read. dst.Put is
// durable and atomic, so a copy cut short leaves no partial file.
func copyObject(ctx context.Context, src, dst media.Storage, key string) (File, error) {
	obj, err := src.Open(ctx, key)
	if err != nil {
		return File{}, err
	}
	defer obj.Close()
	h := newHasher()
	if _, err := dst.Put(ctx, key, io.TeeReader(obj, h), obj.Info().ContentType); err != nil {
		return File{}, err
	}
	f := h.file(key)
	return f, sameDigest(obj.Info(), f)
}

// sameDigest checks the bytes read against the SHA-256 the storage
// recorded when they were written, where its ETag is one (media/local
// and media/s3 write it): a file damaged at rest fails as it is read
// instead of entering a backup, or a restore, as if it were whole. An
// ETag that is not a SHA-256 (an object written by another tool) says
// nothing.
func sameDigest(info media.Info, got File) error {
	tag := strings.Trim(info.ETag, `"`)
	if len(tag) != hex.EncodedLen(sha256.Size) || tag == got.SHA256 {
		return nil
	}
	return fmt.Errorf("%s: %d bytes with SHA-256 %s, stored with %s: %w", got.Name, got.Size, got.SHA256, tag, ErrMismatch)
}

func hashObject(ctx context.Context, st media.Storage, key string) (File, error) {
	obj, err := st.Open(ctx, key)
	if err != nil {
		return File{}, err
	}
	defer obj.Close()
	h := newHasher()
	if _, err := io.Copy(h, obj); err != nil {
		return File{}, err
	}
	return h.file(key), nil
}

func hashFile(path, name string) (File, error) {
	f, err := os.Open(path)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	h := newHasher()
	if _, err := io.Copy(h, f); err != nil {
		return File{}, err
	}
	return h.file(name), nil
}

// copyFile copies want.Name of from to a new file dst, fsynced, and
// checks that the bytes read match want; on a mismatch dst is left for
// the caller to remove.
func copyFile(ctx context.Context, from Target, dst string, want File) error {
	in, err := from.Open(ctx, want.Name)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	h := newHasher()
	_, err = io.Copy(io.MultiWriter(out, h), in)
	if err == nil {
		err = out.Sync()
	}
	if err := errors.Join(err, out.Close()); err != nil {
		return err
	}
	return same(h.file(want.Name), want)
}

// commit renames tmp to path, fsyncing the file and its directory, so
// path is either missing or whole after a crash.
func commit(tmp, path string) error {
	f, err := os.Open(tmp)
	if err != nil {
		return err
	}
	err = f.Sync()
	if err := errors.Join(err, f.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

func writeManifest(ctx context.Context, to Target, stage string, m Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(stage, "."+ManifestFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o640); err != nil {
		return errors.Join(err, removeIfExists(tmp))
	}
	return errors.Join(to.Commit(ctx, tmp, ManifestFile), removeIfExists(tmp))
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// same compares a file as read with the manifest's entry for it.
func same(got, want File) error {
	if got.SHA256 != want.SHA256 || got.Size != want.Size {
		return fmt.Errorf("%s: %d bytes with SHA-256 %s, the manifest says %d bytes with %s: %w",
			want.Name, got.Size, got.SHA256, want.Size, want.SHA256, ErrMismatch)
	}
	return nil
}

func sameCounts(got, want map[string]int64) error {
	var errs []error
	for _, t := range slices.Sorted(maps.Keys(mergeKeys(got, want))) {
		g, inGot := got[t]
		w, inWant := want[t]
		switch {
		case !inWant:
			errs = append(errs, fmt.Errorf("table %s: %d rows, and no count in the manifest: %w", t, g, ErrMismatch))
		case !inGot:
			errs = append(errs, fmt.Errorf("table %s: missing, the manifest counts %d rows: %w", t, w, ErrMismatch))
		case g != w:
			errs = append(errs, fmt.Errorf("table %s: %d rows, the manifest says %d: %w", t, g, w, ErrMismatch))
		}
	}
	return errors.Join(errs...)
}

func mergeKeys(a, b map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(a)+len(b))
	maps.Copy(out, a)
	maps.Copy(out, b)
	return out
}

// sameKeys checks that the database references exactly the media the
// manifest lists, copied or missing.
func sameKeys(keys []string, m Manifest) error {
	listed := slices.Clone(m.Missing)
	for _, f := range m.Media {
		listed = append(listed, f.Name)
	}
	slices.Sort(listed)
	if slices.Equal(keys, listed) {
		return nil
	}
	for _, k := range keys {
		if _, found := slices.BinarySearch(listed, k); !found {
			return fmt.Errorf("media key %s is referenced but not in the manifest: %w", k, ErrMismatch)
		}
	}
	return fmt.Errorf("the manifest lists %d media keys, the database references %d: %w", len(listed), len(keys), ErrMismatch)
}

// hasher hashes and counts what is written to it.
type hasher struct {
	h hash.Hash
	n int64
}

func newHasher() *hasher { return &hasher{h: sha256.New()} }

func (h *hasher) Write(p []byte) (int, error) {
	h.n += int64(len(p))
	return h.h.Write(p)
}

func (h *hasher) file(name string) File {
	return File{Name: name, Size: h.n, SHA256: hex.EncodeToString(h.h.Sum(nil))}
}
