// Package local implements media.Storage on a directory of the local
// filesystem.
//
// Each object is a plain file at its key, so the tree can be inspected,
// backed up and served as it is. Next to it, a sidecar ".<name>.meta"
// holds the content type and the SHA-256 of the bytes; the ETag is that
// hash in hex, quoted, so it is the same on every instance and after a
// restore. Keys carry no reliable extension (originals have none), hence
// the sidecar. Names whose segments begin with a dot (sidecars, temp
// files) belong to this package; the key grammar (media.ValidKey) never
// names them, and every method refuses a key outside it with
// media.ErrBadKey before touching the directory.
//
// Every file operation goes through an os.Root: a symlink inside the
// directory that points outside it is refused, not followed.
//
// Limits of a filesystem: a key cannot also be the directory of other
// keys ("a" and "a/b"); the second Put fails. A process killed during a
// Put may leave a hidden ".tmp-*" file; SweepTemp removes old ones. A Storage assumes it is the only writer of its directory: it
// orders the writes of a key with in-process locks.
package local

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"onebox/media"
)

var _ media.Storage = (*Storage)(nil)

const (
	// DefaultURLPrefix is where the service serves media (GET /media/*).
	DefaultURLPrefix = "/media/"

	dirPerm  = 0o750
	filePerm = 0o640
	// defaultContentType is stored when Put is given none.
	defaultContentType = "application/octet-stream"
	tempPrefix         = ".tmp-"
	metaSuffix         = ".meta"
)

// Storage is a media.Storage on a local directory.
type Storage struct {
	// URLPrefix is prepended to the escaped key by URL. New sets it to
	// DefaultURLPrefix; change it before the Storage is used.
	URLPrefix string

	root *os.Root
	seed maphash.Seed
	// locks order the renames and removals of a key (striped by its hash)
	// against each other and against Open, so that a reader never pairs
	// one Put's bytes with another Put's sidecar.
	locks [64]sync.RWMutex
	// fsync is (*os.File).Sync unless a test counts the syncs
	// (export_test.go): nothing else shows that a Put is durable.
	fsync func(*os.File) error
}

// New returns a Storage on dir, creating it if needed. Close releases it.
func New(dir string) (*Storage, error) {
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return nil, fmt.Errorf("media/local: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("media/local: %w", err)
	}
	return &Storage{URLPrefix: DefaultURLPrefix, root: root, seed: maphash.MakeSeed(), fsync: (*os.File).Sync}, nil
}

// Close releases the directory. The Storage must not be used afterwards.
func (s *Storage) Close() error {
	return s.root.Close()
}

// meta is the sidecar of an object. Size and MTime identify the data file
// it was written with: a sidecar that does not match its data file (a
// crash between the two renames of a Put, or a copy that did not keep
// modification times) is ignored, and Open hashes the file instead.
type meta struct {
	ContentType string `json:"content_type"`
	SHA256      string `json:"sha256"`
	Size        int64  `json:"size"`
	MTime       int64  `json:"mtime_ns"`
}

func (m meta) matches(fi fs.FileInfo) bool {
	return m.SHA256 != "" && m.Size == fi.Size() && m.MTime == fi.ModTime().UnixNano()
}

// Put writes r to a temp file in the key's directory while hashing it,
// then the sidecar likewise, fsyncs both, renames the sidecar and then
// the data into place (the data rename is the commit point) and fsyncs
// the directory. Directories it creates are fsynced into their parents.
// A failed Put leaves the previous object, if any, and no temp file.
func (s *Storage) Put(ctx context.Context, key string, r io.Reader, contentType string) (_ media.Info, err error) {
	if err := checkKey(key); err != nil {
		return media.Info{}, err
	}
	if contentType == "" {
		contentType = defaultContentType
	}
	dir := path.Dir(key)
	// Deferred first, so it runs after the temp files are removed.
	defer func() {
		if err != nil {
			s.prune(dir) // the directories this Put made for nothing
			err = fmt.Errorf("media/local: put %q: %w", key, err)
		}
	}()

	h := sha256.New()
	dataTmp, fi, err := s.writeTemp(dir, func(f *os.File) error {
		_, err := io.Copy(io.MultiWriter(f, h), ctxReader{ctx: ctx, r: r})
		return err
	})
	if err != nil {
		return media.Info{}, err
	}
	defer s.removeOnError(&err, dataTmp)
	m := meta{ContentType: contentType, SHA256: hex.EncodeToString(h.Sum(nil)), Size: fi.Size(), MTime: fi.ModTime().UnixNano()}
	metaTmp, _, err := s.writeTemp(dir, func(f *os.File) error {
		return json.NewEncoder(f).Encode(m)
	})
	if err != nil {
		return media.Info{}, err
	}
	defer s.removeOnError(&err, metaTmp)

	mu := s.lock(key)
	mu.Lock()
	err = s.root.Rename(metaTmp, metaName(key))
	if err == nil {
		err = s.root.Rename(dataTmp, filepath.FromSlash(key))
	}
	mu.Unlock()
	if err != nil {
		return media.Info{}, err
	}
	if err := s.syncDir(dir); err != nil {
		return media.Info{}, err
	}
	return media.Info{Size: fi.Size(), ModTime: fi.ModTime(), ContentType: contentType, ETag: etag(m.SHA256)}, nil
}

// writeTemp creates a temp file in dir (and dir, if needed), fills it,
// fsyncs and closes it, and returns its name and final FileInfo. On error
// no temp file remains.
func (s *Storage) writeTemp(dir string, fill func(*os.File) error) (_ string, _ fs.FileInfo, err error) {
	f, name, err := s.createTemp(dir)
	if err != nil {
		return "", nil, err
	}
	defer s.removeOnError(&err, name)
	err = fill(f)
	if err == nil {
		err = s.fsync(f)
	}
	var fi fs.FileInfo
	if err == nil {
		fi, err = f.Stat()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return name, fi, err
}

func (s *Storage) createTemp(dir string) (*os.File, string, error) {
	for attempt := 0; ; attempt++ {
		name := filepath.FromSlash(path.Join(dir, tempPrefix+rand.Text()))
		err := s.mkdirAll(dir)
		var f *os.File
		if err == nil {
			f, err = s.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
		}
		// A Delete, or a failed Put, may prune an empty directory on the
		// way before the temp file is in it: make it again.
		if errors.Is(err, fs.ErrNotExist) && attempt < 10 {
			continue
		}
		return f, name, err
	}
}

// mkdirAll is os.Root.MkdirAll, plus an fsync of the parent of each
// directory it creates, so that a durable file is not lost with its
// directory's entry.
func (s *Storage) mkdirAll(dir string) error {
	if dir == "." {
		return nil
	}
	if fi, err := s.root.Stat(filepath.FromSlash(dir)); err == nil && fi.IsDir() {
		return nil
	}
	for i := 0; i <= len(dir); i++ {
		if i < len(dir) && dir[i] != '/' {
			continue
		}
		sub := dir[:i]
		err := s.root.Mkdir(filepath.FromSlash(sub), dirPerm)
		if errors.Is(err, fs.ErrExist) {
			continue // if it is not a directory, the next step says so
		}
		if err != nil {
			return err
		}
		if err := s.syncDir(path.Dir(sub)); err != nil {
			return err
		}
	}
	return nil
}

// syncDir fsyncs dir. A directory that is gone was pruned by a Delete,
// which syncs its parent: there is nothing left to sync.
func (s *Storage) syncDir(dir string) error {
	d, err := s.root.Open(filepath.FromSlash(dir))
	if isMissing(err) {
		return nil
	}
	if err != nil {
		return err
	}
	err = s.fsync(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// removeOnError removes the temp file name if *err is set.
func (s *Storage) removeOnError(err *error, name string) {
	if *err != nil {
		_ = s.root.Remove(name)
	}
}

// Open returns the object at key, or media.ErrNotFound (also for a key
// that names a directory). It fails, without following it, on a symlink
// that leaves the directory.
func (s *Storage) Open(ctx context.Context, key string) (media.Object, error) {
	o, err := s.openObject(ctx, key)
	if err != nil {
		return nil, err
	}
	o.r = o.f
	return o, nil
}

// OpenRange is Open reading length bytes from offset: the file is
// seeked, as only a remote store cannot.
func (s *Storage) OpenRange(ctx context.Context, key string, offset, length int64) (media.Object, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if offset < 0 || length <= 0 {
		return nil, fmt.Errorf("media/local: range %d+%d of %q: %w", offset, length, key, media.ErrRange)
	}
	o, err := s.openObject(ctx, key)
	if err != nil {
		return nil, err
	}
	if offset >= o.info.Size {
		_ = o.f.Close()
		return nil, fmt.Errorf("media/local: range %d+%d of %q (%d bytes): %w", offset, length, key, o.info.Size, media.ErrRange)
	}
	if _, err := o.f.Seek(offset, io.SeekStart); err != nil {
		_ = o.f.Close()
		return nil, fmt.Errorf("media/local: open %q: %w", key, err)
	}
	o.r = io.LimitReader(o.f, length)
	return o, nil
}

// Stat returns the Info of the object at key, as Open does.
func (s *Storage) Stat(ctx context.Context, key string) (media.Info, error) {
	o, err := s.openObject(ctx, key)
	if err != nil {
		return media.Info{}, err
	}
	_ = o.f.Close()
	return o.info, nil
}

func (s *Storage) openObject(ctx context.Context, key string) (*object, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	mu := s.lock(key)
	mu.RLock()
	f, fi, m, err := s.open(key)
	mu.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("media/local: open %q: %w", key, err)
	}
	o := &object{f: f, info: media.Info{Size: fi.Size(), ModTime: fi.ModTime(), ContentType: m.ContentType, ETag: etag(m.SHA256)}}
	if !m.matches(fi) {
		if err := o.describe(); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("media/local: open %q: %w", key, err)
		}
	}
	return o, nil
}

// open opens key's data file and reads its sidecar, which is zero if
// missing or unreadable.
func (s *Storage) open(key string) (*os.File, fs.FileInfo, meta, error) {
	f, err := s.root.Open(filepath.FromSlash(key))
	if isMissing(err) {
		return nil, nil, meta{}, media.ErrNotFound
	}
	if err != nil {
		return nil, nil, meta{}, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = media.ErrNotFound
	}
	var m meta
	if err == nil {
		var b []byte
		b, err = s.root.ReadFile(metaName(key))
		if err == nil && json.Unmarshal(b, &m) != nil {
			m = meta{} // only a bug writes a bad sidecar: ignore it
		}
		if isMissing(err) {
			err = nil
		}
	}
	if err != nil {
		_ = f.Close()
		return nil, nil, meta{}, err
	}
	return f, fi, m, nil
}

// ErrDigest is wrapped by CheckDigest's error for an object whose bytes
// are not those its sidecar recorded when it was written, or that has no
// sidecar to say.
var ErrDigest = errors.New("media/local: bytes differ from the recorded SHA-256")

// CheckDigest reads key's bytes and compares their SHA-256 and size with
// what its sidecar recorded when the object was written: nil when they
// match, media.ErrNotFound when the object is missing, and ErrDigest when
// they differ or no digest was recorded. Unlike Open, it trusts the
// sidecar even when the file's modification time changed: damage that
// touched the file must not pass for a new version of it.
func (s *Storage) CheckDigest(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	mu := s.lock(key)
	mu.RLock()
	f, _, m, err := s.open(key)
	mu.RUnlock()
	if err != nil {
		return fmt.Errorf("media/local: check %q: %w", key, err)
	}
	defer f.Close()
	if m.SHA256 == "" {
		return fmt.Errorf("media/local: check %q: no recorded digest (its sidecar is missing): %w", key, ErrDigest)
	}
	h := sha256.New()
	n, err := io.Copy(h, ctxReader{ctx: ctx, r: f})
	if err != nil {
		return fmt.Errorf("media/local: check %q: %w", key, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != m.SHA256 {
		return fmt.Errorf("media/local: check %q: %d bytes with SHA-256 %s, recorded %d bytes with %s: %w", key, n, got, m.Size, m.SHA256, ErrDigest)
	}
	return nil
}

// Delete removes each key's file and sidecar, then the directories left
// empty, and fsyncs the directory that changed. It checks every key
// before removing any: a bad key removes nothing. A key that names a
// directory is missing, not an error.
func (s *Storage) Delete(ctx context.Context, keys ...string) error {
	for _, key := range keys {
		if err := checkKey(key); err != nil {
			return err
		}
	}
	for _, key := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.delete(key); err != nil {
			return fmt.Errorf("media/local: delete %q: %w", key, err)
		}
	}
	return nil
}

func (s *Storage) delete(key string) error {
	removed, err := s.remove(key)
	if err != nil || !removed {
		return err
	}
	return s.syncDir(s.prune(path.Dir(key)))
}

// prune removes dir and then its parents while they are empty, and
// returns the first directory it left.
func (s *Storage) prune(dir string) string {
	for dir != "." {
		// Remove fails on a directory that is not empty; Lstat keeps it
		// from removing a symlink that stands for a directory.
		name := filepath.FromSlash(dir)
		if fi, err := s.root.Lstat(name); err != nil || !fi.IsDir() {
			break
		}
		if s.root.Remove(name) != nil {
			break
		}
		dir = path.Dir(dir)
	}
	return dir
}

// remove removes key's file and sidecar and reports whether either was
// there.
func (s *Storage) remove(key string) (removed bool, err error) {
	mu := s.lock(key)
	mu.Lock()
	defer mu.Unlock()
	name := filepath.FromSlash(key)
	fi, err := s.root.Lstat(name)
	if err != nil && !isMissing(err) {
		return false, err
	}
	if err == nil && !fi.IsDir() {
		if err := s.root.Remove(name); err != nil && !isMissing(err) {
			return false, err
		}
		removed = true
	}
	err = s.root.Remove(metaName(key))
	if err == nil {
		removed = true
	} else if !isMissing(err) {
		return removed, err
	}
	return removed, nil
}

// URL returns URLPrefix followed by key, each segment path-escaped, for
// a public key. A private key has no URL (media.ErrNotServed): a local
// directory cannot presign, and /media refuses private keys.
func (s *Storage) URL(ctx context.Context, key string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	if !media.Public(key) {
		return "", fmt.Errorf("media/local: %q: %w", key, media.ErrNotServed)
	}
	segs := strings.Split(key, "/")
	for i, seg := range segs {
		segs[i] = url.PathEscape(seg)
	}
	return s.URLPrefix + strings.Join(segs, "/"), nil
}

func (s *Storage) lock(key string) *sync.RWMutex {
	return &s.locks[maphash.String(s.seed, key)%uint64(len(s.locks))]
}

// object is an open data file, the reader of the bytes asked for, and
// the file's Info.
type object struct {
	f    *os.File
	r    io.Reader
	info media.Info
}

func (o *object) Read(p []byte) (int, error) { return o.r.Read(p) }
func (o *object) Close() error               { return o.f.Close() }
func (o *object) Info() media.Info           { return o.info }

// describe sets the ETag and content type from the bytes, for a file
// whose sidecar is missing or stale: the type is sniffed, as the one in
// a stale sidecar belongs to other bytes.
func (o *object) describe() error {
	h := sha256.New()
	if _, err := io.Copy(h, o.f); err != nil {
		return err
	}
	head := make([]byte, 512)
	n, err := o.f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if _, err := o.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	o.info.ContentType = http.DetectContentType(head[:n])
	o.info.ETag = etag(hex.EncodeToString(h.Sum(nil)))
	return nil
}

// checkKey refuses, with media.ErrBadKey, what media.ValidKey refuses,
// which includes the segments that begin with a dot (this package's own
// files), and what the OS would not take as a local name (a reserved
// device name such as "nul" on Windows). The os.Root, not this check, is
// what confines access to the directory.
func checkKey(key string) error {
	if !media.ValidKey(key) || !filepath.IsLocal(filepath.FromSlash(key)) {
		return fmt.Errorf("%w: %.80q", media.ErrBadKey, key)
	}
	return nil
}

func metaName(key string) string {
	dir, base := path.Split(key)
	return filepath.FromSlash(dir + "." + base + metaSuffix)
}

func etag(sum string) string { return `"` + sum + `"` }

// isMissing reports a file that is not there, including one below a
// path segment that is a file rather than a directory.
func isMissing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// ctxReader ends a Put whose context ends mid-upload.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// SweepTemp removes the temp files of Puts that a killed process left
// behind, those last modified more than olderThan ago (a live Put writes
// its temp file continuously and renames it within its request's
// deadline), and says how many it removed.
func (s *Storage) SweepTemp(olderThan time.Duration) (int, error) {
	cutoff := time.Now().Add(-olderThan)
	n := 0
	err := fs.WalkDir(s.root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // renamed or removed since the directory was read
		}
		if err != nil {
			return err
		}
		if fi.ModTime().After(cutoff) {
			return nil
		}
		if err := s.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("media/local: sweep: %w", err)
	}
	return n, nil
}

// Keys lists, sorted, the key of every object in the directory with its
// modification time, skipping this package's own files (sidecars, temp
// files): what a reconcile compares with the keys a database references.
func (s *Storage) Keys(ctx context.Context) ([]media.KeyInfo, error) {
	var out []media.KeyInfo
	err := fs.WalkDir(s.root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".") || !d.Type().IsRegular() {
			return nil
		}
		key := filepath.ToSlash(name)
		if !media.ValidKey(key) {
			return nil // not written by a Put: not ours to list or sweep
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed since the directory was read
		}
		if err != nil {
			return err
		}
		out = append(out, media.KeyInfo{Key: key, ModTime: fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("media/local: keys: %w", err)
	}
	return out, nil
}
