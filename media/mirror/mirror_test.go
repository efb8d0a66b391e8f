package mirror_test

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"onebox/media"
	"onebox/media/local"
	"onebox/media/mediatest"
	"onebox/media/mirror"
)

func newLocal(t *testing.T) *local.Storage {
	t.Helper()
	s, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	mediatest.Run(t, func(t *testing.T) media.Storage {
		return mirror.New(newLocal(t), newLocal(t), slog.New(slog.DiscardHandler))
	})
}

func read(t *testing.T, s media.Storage, key string) (string, error) {
	t.Helper()
	obj, err := s.Open(t.Context(), key)
	if err != nil {
		return "", err
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	return string(b), err
}

// The backup holds every object a Put acknowledged, with its bytes and
// type, and loses it with a Delete.
func TestBackupFollows(t *testing.T) {
	t.Parallel()
	primary, backup := newLocal(t), newLocal(t)
	m := mirror.New(primary, backup, slog.New(slog.DiscardHandler))
	const key = "private/originals/p1"
	for _, data := range []string{"first", "second"} {
		info, err := m.Put(t.Context(), key, strings.NewReader(data), "image/png")
		if err != nil {
			t.Fatal(err)
		}
		got, err := read(t, backup, key)
		if err != nil || got != data {
			t.Fatalf("backup holds %q, %v; want %q", got, err, data)
		}
		obj, err := backup.Open(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		if bi := obj.Info(); bi.ETag != info.ETag || bi.ContentType != "image/png" {
			t.Errorf("backup's Info %+v, want the ETag %s and type of the Put", bi, info.ETag)
		}
		obj.Close()
	}
	if err := m.Delete(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]media.Storage{"primary": primary, "backup": backup} {
		if _, err := read(t, s, key); !errors.Is(err, media.ErrNotFound) {
			t.Errorf("%s after Delete: %v, want ErrNotFound", name, err)
		}
	}
}

// A Put the backup could not take is not acknowledged; a Delete the
// backup could not do is, and is logged for the sweep.
func TestBackupFails(t *testing.T) {
	t.Parallel()
	primary := newLocal(t)
	backup, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	m := mirror.New(primary, backup, slog.New(slog.NewTextHandler(&logs, nil)))
	if _, err := m.Put(t.Context(), "a", strings.NewReader("x"), ""); err != nil {
		t.Fatal(err)
	}
	backup.Close() // every later operation on it fails
	if _, err := m.Put(t.Context(), "b", strings.NewReader("y"), ""); err == nil {
		t.Fatal("Put succeeded with the backup failing")
	}
	if err := m.Delete(t.Context(), "a"); err != nil {
		t.Fatalf("Delete with the backup failing: %v, want nil (logged)", err)
	}
	if _, err := read(t, primary, "a"); !errors.Is(err, media.ErrNotFound) {
		t.Errorf("primary after Delete: %v, want ErrNotFound", err)
	}
	if !strings.Contains(logs.String(), "backup delete failed") {
		t.Errorf("no warning logged: %q", logs.String())
	}
}
