package local_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"onebox/media"
	"onebox/media/local"
	"onebox/media/mediatest"
)

func newStorage(t *testing.T, dir string) *local.Storage {
	t.Helper()
	s, err := local.New(dir)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	mediatest.Run(t, func(t *testing.T) media.Storage { return newStorage(t, t.TempDir()) })
}

func TestNewCreatesDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data", "media")
	s := newStorage(t, dir)
	if _, err := s.Put(t.Context(), "k", strings.NewReader("v"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "k")); err != nil {
		t.Fatalf("the object is not a file at its key: %v", err)
	}
}

// TestFiles checks what a Put leaves on disk: a file at the key and one
// hidden sidecar, no temp file, also when the Put fails; and that Delete
// removes both and the directories it leaves empty.
func TestFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := newStorage(t, dir)
	ctx := t.Context()
	keys := []string{"photos/p1/w640.jpg", "photos/p1/w1280.jpg", "private/originals/p1", "top"}
	for _, key := range keys {
		if _, err := s.Put(ctx, key, strings.NewReader(key), "image/jpeg"); err != nil {
			t.Fatalf("Put(%q): %v", key, err)
		}
	}
	requireFiles(t, dir, keys)

	failing := io.MultiReader(strings.NewReader("partial"), iotest.ErrReader(errors.New("boom")))
	for _, key := range []string{"photos/p1/w640.jpg", "photos/p2/new.jpg"} {
		if _, err := s.Put(ctx, key, failing, "image/jpeg"); err == nil {
			t.Fatalf("Put(%q) of a failing reader succeeded", key)
		}
	}
	requireFiles(t, dir, keys)

	if err := s.Delete(ctx, keys...); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Fatalf("after deleting every key the directory holds %v", entries)
	}
}

// requireFiles checks that dir holds a file at each key, one hidden file
// per key beside it, and nothing else.
func requireFiles(t *testing.T, dir string, keys []string) {
	t.Helper()
	var visible []string
	hidden := make(map[string]int) // by directory
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(d.Name(), ".") {
			hidden[filepath.Dir(rel)]++
		} else {
			visible = append(visible, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Sorted(slices.Values(keys))
	slices.Sort(visible)
	if !slices.Equal(visible, want) {
		t.Fatalf("files %q, want the keys %q", visible, want)
	}
	wantHidden := make(map[string]int)
	for _, key := range keys {
		wantHidden[filepath.Dir(key)]++
	}
	for d, n := range wantHidden {
		if hidden[d] != n {
			t.Fatalf("%d hidden files in %q, want one sidecar for each of its %d keys (temp files left?)", hidden[d], d, n)
		}
	}
	if len(hidden) != len(wantHidden) {
		t.Fatalf("hidden files in directories %v, want only in %v", hidden, wantHidden)
	}
}

func TestSymlinks(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := newStorage(t, dir)
	ctx := t.Context()
	if _, err := s.Put(ctx, "inside/target.jpg", strings.NewReader("inside"), "image/jpeg"); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"abs":    secret,
		"rel":    filepath.Join("..", filepath.Base(outside), "secret"),
		"dir":    outside,
		"inside": "", // the directory made by the Put above
		"ok.jpg": filepath.Join("inside", "target.jpg"),
	}
	for name, target := range links {
		if target == "" {
			continue
		}
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}

	for _, key := range []string{"abs", "rel", "dir/secret"} {
		obj, err := s.Open(ctx, key)
		if err == nil {
			obj.Close()
			t.Errorf("Open(%q) followed a symlink out of the directory", key)
		}
	}
	if _, err := s.Put(ctx, "dir/secret", strings.NewReader("overwritten"), "text/plain"); err == nil {
		t.Error("Put(\"dir/secret\") went through a symlink out of the directory")
	}
	if err := s.Delete(ctx, "dir/secret"); err == nil {
		t.Error("Delete(\"dir/secret\") went through a symlink out of the directory")
	}
	// A Put at a link replaces the link, not what it points to.
	if _, err := s.Put(ctx, "abs", strings.NewReader("overwritten"), "text/plain"); err != nil {
		t.Errorf("Put(\"abs\"): %v", err)
	}
	if got, err := os.ReadFile(secret); err != nil || string(got) != "secret" {
		t.Fatalf("the file outside holds %q, %v", got, err)
	}

	// A symlink that stays inside is followed.
	obj, err := s.Open(ctx, "ok.jpg")
	if err != nil {
		t.Fatalf("Open of a symlink inside the directory: %v", err)
	}
	defer obj.Close()
	if got, _ := io.ReadAll(obj); string(got) != "inside" {
		t.Fatalf("Open(\"ok.jpg\") read %q", got)
	}
}

// TestReservedKeys: segments that begin with a dot name sidecars and temp
// files, so they are not keys.
func TestReservedKeys(t *testing.T) {
	t.Parallel()
	s := newStorage(t, t.TempDir())
	ctx := t.Context()
	if _, err := s.Put(ctx, "photos/p1/w640.jpg", strings.NewReader("v"), "image/jpeg"); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{".meta", "photos/p1/.w640.jpg.meta", ".tmp-x", "a/.hidden/b", ".."} {
		if _, err := s.Put(ctx, key, strings.NewReader("v"), "text/plain"); !errors.Is(err, media.ErrBadKey) {
			t.Errorf("Put(%q) = %v, want ErrBadKey", key, err)
		}
		if _, err := s.Open(ctx, key); !errors.Is(err, media.ErrBadKey) {
			t.Errorf("Open(%q) = %v, want ErrBadKey", key, err)
		}
		if err := s.Delete(ctx, key); !errors.Is(err, media.ErrBadKey) {
			t.Errorf("Delete(%q) = %v, want ErrBadKey", key, err)
		}
	}
}

// TestPrefixKeys: on a filesystem a key cannot also be the directory of
// other keys.
func TestPrefixKeys(t *testing.T) {
	t.Parallel()
	s := newStorage(t, t.TempDir())
	ctx := t.Context()
	for _, key := range []string{"file", "dir/k"} {
		if _, err := s.Put(ctx, key, strings.NewReader(key), "text/plain"); err != nil {
			t.Fatal(err)
		}
	}
	for _, key := range []string{"file/k", "dir"} {
		_, err := s.Put(ctx, key, strings.NewReader("v"), "text/plain")
		if err == nil || errors.Is(err, media.ErrBadKey) {
			t.Errorf("Put(%q) = %v, want an I/O error", key, err)
		}
		if _, err := s.Open(ctx, key); !errors.Is(err, media.ErrNotFound) {
			t.Errorf("Open(%q) = %v, want ErrNotFound", key, err)
		}
		if err := s.Delete(ctx, key); err != nil {
			t.Errorf("Delete(%q) = %v, want nil", key, err)
		}
	}
	for _, key := range []string{"file", "dir/k"} {
		obj, err := s.Open(ctx, key)
		if err != nil {
			t.Fatalf("Open(%q) after the failed puts: %v", key, err)
		}
		obj.Close()
	}
}

// TestSidecarMismatch: a sidecar that does not describe the file at the
// key (lost, or left by a crash between a Put's renames) is not trusted.
func TestSidecarMismatch(t *testing.T) {
	t.Parallel()
	png := []byte("\x89PNG\r\n\x1a\n a PNG, as far as sniffing goes")
	gif := []byte("GIF89a same length as the PNG before it")[:len(png)]
	tests := []struct {
		name     string
		change   func(t *testing.T, dir string)
		want     []byte
		wantType string
	}{
		{
			name:     "Removed",
			change:   func(t *testing.T, dir string) { removeHidden(t, dir) },
			want:     png,
			wantType: "image/png",
		},
		{
			name: "OtherBytesSameSize",
			change: func(t *testing.T, dir string) {
				name := filepath.Join(dir, "photos", "k")
				if err := os.WriteFile(name, gif, 0o600); err != nil {
					t.Fatal(err)
				}
				// A fresh write may land in the same clock tick as the Put.
				later := time.Now().Add(time.Hour)
				if err := os.Chtimes(name, later, later); err != nil {
					t.Fatal(err)
				}
			},
			want:     gif,
			wantType: "image/gif",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := newStorage(t, dir)
			ctx := t.Context()
			put, err := s.Put(ctx, "photos/k", bytes.NewReader(png), "image/x-declared")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Put(ctx, "photos/same", bytes.NewReader(tt.want), "text/plain"); err != nil {
				t.Fatal(err)
			}
			same, err := s.Open(ctx, "photos/same")
			if err != nil {
				t.Fatal(err)
			}
			same.Close()
			tt.change(t, dir)

			obj, err := s.Open(ctx, "photos/k")
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer obj.Close()
			got, err := io.ReadAll(obj)
			if err != nil {
				t.Fatal(err)
			}
			info := obj.Info()
			if !bytes.Equal(got, tt.want) || info.ContentType != tt.wantType || info.Size != int64(len(tt.want)) {
				t.Fatalf("Open read %q, Info %+v; want %q of type %s", got, info, tt.want, tt.wantType)
			}
			// The ETag is the one Put gives these bytes.
			if info.ETag != same.Info().ETag {
				t.Fatalf("ETag %s, want %s as for the same bytes put (the old one was %s)", info.ETag, same.Info().ETag, put.ETag)
			}
		})
	}
}

func removeHidden(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasPrefix(d.Name(), ".") {
			return err
		}
		return os.Remove(p)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestURL(t *testing.T) {
	t.Parallel()
	s := newStorage(t, t.TempDir())
	custom := newStorage(t, t.TempDir())
	custom.URLPrefix = "https://cdn.example.com/m/"
	tests := []struct {
		s    *local.Storage
		key  string
		want string
	}{
		{s, "photos/p1/w640.jpg", "/media/photos/p1/w640.jpg"},
		{s, "photos/a_b-c/d.e.jpg", "/media/photos/a_b-c/d.e.jpg"},
		{custom, "photos/p1/w640.jpg", "https://cdn.example.com/m/photos/p1/w640.jpg"},
	}
	for _, tt := range tests {
		if got, err := tt.s.URL(t.Context(), tt.key); err != nil || got != tt.want {
			t.Errorf("URL(%q) = %q, %v; want %q", tt.key, got, err, tt.want)
		}
	}
	// A directory cannot presign: a private key has no URL.
	if got, err := s.URL(t.Context(), "private/originals/p1"); !errors.Is(err, media.ErrNotServed) {
		t.Errorf("URL of a private key = %q, %v; want ErrNotServed", got, err)
	}
}

// TestSweepTemp: old temp files go, wherever they are; young ones,
// objects and sidecars stay.
func TestSweepTemp(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := newStorage(t, dir)
	if _, err := s.Put(t.Context(), "originals/a", strings.NewReader("v"), "image/jpeg"); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	files := map[string]bool{ // name → removed by the sweep
		"originals/.tmp-old":    true,
		"variants/x/.tmp-older": true,
		".tmp-top":              true,
		"originals/.tmp-young":  false,
	}
	for name, stale := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("partial"), 0o640); err != nil {
			t.Fatal(err)
		}
		if stale {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	n, err := s.SweepTemp(time.Hour)
	if err != nil || n != 3 {
		t.Fatalf("SweepTemp = %d, %v; want 3", n, err)
	}
	for name, stale := range files {
		_, err := os.Stat(filepath.Join(dir, filepath.FromSlash(name)))
		if gone := errors.Is(err, fs.ErrNotExist); gone != stale {
			t.Errorf("%s: removed %v, want %v", name, gone, stale)
		}
	}
	if obj, err := s.Open(t.Context(), "originals/a"); err != nil {
		t.Errorf("the object went too: %v", err)
	} else {
		obj.Close()
	}
}

// fsyncEvent is one fsync a Storage made: of what, relative to its
// directory, and whether the key's file existed at that moment.
type fsyncEvent struct {
	name     string // slash-separated, "." for the directory itself
	dir      bool
	keyThere bool
}

// recordFsyncs makes s record its fsyncs, checking for key's file at
// each one.
func recordFsyncs(t *testing.T, s *local.Storage, dir, key string) *[]fsyncEvent {
	t.Helper()
	var events []fsyncEvent
	local.SetFsync(s, func(f *os.File) error {
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, f.Name())
		if err != nil {
			return err
		}
		_, err = os.Lstat(filepath.Join(dir, filepath.FromSlash(key)))
		events = append(events, fsyncEvent{name: filepath.ToSlash(rel), dir: fi.IsDir(), keyThere: err == nil})
		return f.Sync()
	})
	return &events
}

// TestFsyncs: nothing but the fsyncs themselves shows that a Put is
// durable, so this counts them. A Put fsyncs each temp file (data, then
// sidecar) before the renames make them visible, the parent of each
// directory it creates, and the key's directory after the renames; a
// Delete fsyncs the directory whose entries changed.
func TestFsyncs(t *testing.T) {
	t.Parallel()
	const key = "photos/p1/w640.jpg"
	tmp := func(name string) bool { return strings.HasPrefix(path.Base(name), ".tmp-") }
	tests := []struct {
		name string
		// before runs first, unrecorded.
		before func(t *testing.T, s *local.Storage)
		op     func(t *testing.T, s *local.Storage) error
		want   []fsyncEvent // a name "tmp" stands for any temp file in photos/p1
	}{
		{
			name: "PutNewDirectories",
			op: func(t *testing.T, s *local.Storage) error {
				_, err := s.Put(t.Context(), key, strings.NewReader("v"), "image/jpeg")
				return err
			},
			want: []fsyncEvent{
				{name: ".", dir: true},      // holds the new photos
				{name: "photos", dir: true}, // holds the new photos/p1
				{name: "tmp"},               // the data
				{name: "tmp"},               // the sidecar
				{name: "photos/p1", dir: true, keyThere: true},
			},
		},
		{
			name: "PutExistingDirectory",
			before: func(t *testing.T, s *local.Storage) {
				if _, err := s.Put(t.Context(), "photos/p1/w128.jpg", strings.NewReader("v"), "image/jpeg"); err != nil {
					t.Fatal(err)
				}
			},
			op: func(t *testing.T, s *local.Storage) error {
				_, err := s.Put(t.Context(), key, strings.NewReader("v"), "image/jpeg")
				return err
			},
			want: []fsyncEvent{
				{name: "tmp"},
				{name: "tmp"},
				{name: "photos/p1", dir: true, keyThere: true},
			},
		},
		{
			name: "Delete",
			before: func(t *testing.T, s *local.Storage) {
				for _, k := range []string{key, "photos/p2/w640.jpg"} {
					if _, err := s.Put(t.Context(), k, strings.NewReader("v"), "image/jpeg"); err != nil {
						t.Fatal(err)
					}
				}
			},
			op: func(t *testing.T, s *local.Storage) error { return s.Delete(t.Context(), key) },
			// photos/p1 is pruned; photos lost an entry.
			want: []fsyncEvent{{name: "photos", dir: true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := newStorage(t, dir)
			if tt.before != nil {
				tt.before(t, s)
			}
			events := recordFsyncs(t, s, dir, key)
			if err := tt.op(t, s); err != nil {
				t.Fatal(err)
			}
			got := *events
			for i := range got {
				if !got[i].dir && path.Dir(got[i].name) == "photos/p1" && tmp(got[i].name) {
					got[i].name = "tmp"
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("fsyncs %+v,\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := newStorage(t, dir)
	for _, k := range []string{"photos/b/w128.jpg", "private/originals/a", "z"} {
		if _, err := s.Put(t.Context(), k, strings.NewReader("x"), ""); err != nil {
			t.Fatal(err)
		}
	}
	// A temp file a killed Put left, and a file no Put could have named.
	for _, name := range []string{"photos/.tmp-abc", "Stray"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(t.Context(), "z"); err != nil {
		t.Fatal(err)
	}
	got, err := s.Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, k := range got {
		if k.ModTime.IsZero() {
			t.Errorf("%s: zero ModTime", k.Key)
		}
		keys = append(keys, k.Key)
	}
	if want := []string{"photos/b/w128.jpg", "private/originals/a"}; !slices.Equal(keys, want) {
		t.Fatalf("Keys = %q, want %q", keys, want)
	}
}

// TestCheckDigest: an object as written passes; one whose bytes changed
// fails with ErrDigest whether its time changed too or stayed (bit rot),
// and so does one without a sidecar; a missing one is not found.
func TestCheckDigest(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	s := newStorage(t, dir)
	for _, k := range []string{"a/ok", "a/touched", "a/rot", "a/bare", "a/short"} {
		if _, err := s.Put(ctx, k, strings.NewReader("the bytes of "+k), "text/plain"); err != nil {
			t.Fatal(err)
		}
	}
	rewrite := func(key, body string, keepTime bool) {
		name := filepath.Join(dir, filepath.FromSlash(key))
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(body), 0o640); err != nil {
			t.Fatal(err)
		}
		if keepTime {
			if err := os.Chtimes(name, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
		}
	}
	rewrite("a/touched", "THE bytes of a/touched", false)
	rewrite("a/rot", "the bytes of a/ROT", true)
	rewrite("a/short", "the bytes", true)
	if err := os.Remove(filepath.Join(dir, "a", ".bare.meta")); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]error{
		"a/ok": nil, "a/touched": local.ErrDigest, "a/rot": local.ErrDigest, "a/short": local.ErrDigest,
		"a/bare": local.ErrDigest, "a/gone": media.ErrNotFound,
	} {
		if err := s.CheckDigest(ctx, key); !errors.Is(err, want) || want == nil && err != nil {
			t.Errorf("CheckDigest(%s) = %v, want %v", key, err, want)
		}
	}
	if err := s.CheckDigest(ctx, "../x"); !errors.Is(err, media.ErrBadKey) {
		t.Errorf("CheckDigest(../x) = %v, want %v", err, media.ErrBadKey)
	}
}
