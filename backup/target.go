package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"onebox/media"
	medialocal "onebox/media/local"
)

// Target is where a backup is written and read back from: a directory
// (Dir) or a prefix of an object store such as an S3 bucket (Objects).
// Both hold the same names: ManifestFile, DatabaseFile, and each media
// file at its key under MediaDir.
type Target interface {
	// CheckEmpty is nil for a target that holds nothing yet, and
	// otherwise an error wrapping ErrNotEmpty that names it.
	CheckEmpty(ctx context.Context) error
	// Stage returns a local directory in which Backup makes the files it
	// then Commits (the database snapshot needs room for the database),
	// and a function that removes what is left of it.
	Stage() (dir string, done func() error, err error)
	// Commit moves the finished local file at path into the target as
	// name, durably: a rename into a directory, an upload to a bucket.
	Commit(ctx context.Context, path, name string) error
	// Open reads name; a missing name is an error wrapping fs.ErrNotExist.
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	// Media returns the storage of the media files, and a function that
	// releases it.
	Media() (m media.Storage, release func() error, err error)
	String() string
}

// Dir is a backup directory on the local filesystem; its media/ is a
// media/local directory.
type Dir string

var _ Target = Dir("")

// CheckEmpty is CheckEmpty of the directory.
func (d Dir) CheckEmpty(context.Context) error { return CheckEmpty(string(d)) }

// Stage is the directory itself (created if missing): the snapshot is
// renamed into place, never copied.
func (d Dir) Stage() (string, func() error, error) {
	if err := os.MkdirAll(string(d), 0o750); err != nil {
		return "", nil, err
	}
	return string(d), func() error { return nil }, nil
}

// Commit renames path, in the directory, to name, fsyncing both.
func (d Dir) Commit(_ context.Context, path, name string) error {
	return commit(path, filepath.Join(string(d), name))
}

// Open opens the file name in the directory.
func (d Dir) Open(_ context.Context, name string) (io.ReadCloser, error) {
	return os.Open(filepath.Join(string(d), name))
}

// Media is a media/local storage on the directory's media/.
func (d Dir) Media() (media.Storage, func() error, error) {
	m, err := medialocal.New(filepath.Join(string(d), MediaDir))
	if err != nil {
		return nil, nil, err
	}
	return m, m.Close, nil
}

func (d Dir) String() string { return string(d) }

// Bucket is a media.Storage that can tell whether it holds any object
// (media/s3 can).
type Bucket interface {
	media.Storage
	// FirstKey returns a key it holds, or ok false when it holds none.
	FirstKey(ctx context.Context) (key string, ok bool, err error)
}

// Objects is a backup in an object store: the manifest and the database
// are objects of Root named as in a directory, and the media files are
// in MediaFiles, which must be Root's MediaDir (for S3, the same bucket
// under the prefix followed by "media/"), so that Root is empty only
// when MediaFiles is.
type Objects struct {
	Root       Bucket
	MediaFiles media.Storage
	// Name names the backup in messages (its s3:// URL).
	Name string
	// TempDir is where Backup makes the database snapshot and the
	// manifest before their upload, in a directory of their own; "" is
	// os.TempDir.
	TempDir string
}

var _ Target = Objects{}

// CheckEmpty refuses a Root that holds any object.
func (o Objects) CheckEmpty(ctx context.Context) error { return CheckBucketEmpty(ctx, o.Root, o.Name) }

// CheckBucketEmpty is CheckEmpty for a bucket's prefix: nil if b holds
// no object, and otherwise an error wrapping ErrNotEmpty that names it
// (name) and the object.
func CheckBucketEmpty(ctx context.Context, b Bucket, name string) error {
	key, ok, err := b.FirstKey(ctx)
	if err != nil {
		return err
	}
	if ok {
		return fmt.Errorf("%s is %w (it holds %s)", name, ErrNotEmpty, key)
	}
	return nil
}

// Stage is a new temp directory under TempDir.
func (o Objects) Stage() (string, func() error, error) {
	dir, err := os.MkdirTemp(o.TempDir, ".onebox-backup-*")
	if err != nil {
		return "", nil, err
	}
	return dir, func() error { return os.RemoveAll(dir) }, nil
}

// Commit uploads the file at path as the object name. The upload
// replaces an object in one step, so name is whole or missing.
func (o Objects) Commit(ctx context.Context, path, name string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := o.Root.Put(ctx, name, f, ""); err != nil {
		return err
	}
	return os.Remove(path)
}

// Open reads the object name.
func (o Objects) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	obj, err := o.Root.Open(ctx, name)
	if errors.Is(err, media.ErrNotFound) {
		return nil, fmt.Errorf("%s in %s: %w (%w)", name, o.Name, fs.ErrNotExist, err)
	}
	return obj, err
}

// Media is MediaFiles, which the caller owns.
func (o Objects) Media() (media.Storage, func() error, error) {
	return o.MediaFiles, func() error { return nil }, nil
}

func (o Objects) String() string { return o.Name }
