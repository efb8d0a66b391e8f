package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"onebox/backup"
)

// TestBackupVerify runs onebox backup verify against a real Litestream
// replica of a serving instance, with uploads in its media copy, and
// breaks the backup one way at a time: each must fail with its own
// error, and the healthy backup must pass. The serving instance also
// verifies on its schedule (ONEBOX_BACKUP_VERIFY_EVERY), and /metrics
// reports it.
func TestBackupVerify(t *testing.T) {
	bin := litestreamBin(t, "no backup verification against Litestream")
	t.Parallel()
	root := t.TempDir()
	data, replica, mediaCopy := filepath.Join(root, "data"), filepath.Join(root, "replica"), filepath.Join(root, "media-copy")
	db := filepath.Join(data, "onebox.db")
	config := writeLitestreamConfig(t, filepath.Join(root, "litestream.yml"), db, replica)
	const recoveryPoint = "2s"
	env := []string{
		"ONEBOX_MEDIA_BACKUP_DIR=" + mediaCopy,
		"ONEBOX_LITESTREAM=" + bin, "ONEBOX_LITESTREAM_CONFIG=" + config,
		"ONEBOX_BACKUP_RECOVERY_POINT=" + recoveryPoint, "ONEBOX_BACKUP_VERIFY_EVERY=3s",
	}
	c := startChild(t, data, env...)
	_, token := c.signup("verify")
	var photos []string
	for range 2 {
		photos = append(photos, c.upload(token, filepath.Join("testdata", "images", "formats", "jpeg_baseline_testorig.jpg")))
	}
	for _, id := range photos {
		if ph := c.waitPhoto(token, id); ph["status"] != "ready" {
			t.Fatalf("photo %s: %v", id, ph)
		}
	}
	ls := startLitestream(t, bin, config, replica)

	verify := func(t *testing.T, extra ...string) (string, error) {
		t.Helper()
		settings := map[string]string{"ONEBOX_DATA_DIR": data, "ONEBOX_BACKUP_VERIFY_SAMPLE": "0"}
		for _, kv := range append(env, extra...) {
			k, v, _ := strings.Cut(kv, "=")
			settings[k] = v
		}
		lookup := func(k string) (string, bool) { v, ok := settings[k]; return v, ok }
		var out, errOut bytes.Buffer
		err := run(t.Context(), []string{"backup", "verify"}, lookup, &out, &errOut)
		t.Logf("onebox backup verify: %v\n%s", err, out.String())
		return out.String(), err
	}
	// Files of the media copy: an original and a variant of a photo.
	original := filepath.Join(mediaCopy, "private", "originals", photos[0])
	var variant string
	filepath.WalkDir(mediaCopy, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasPrefix(d.Name(), ".") && strings.Contains(p, photos[1]) && !strings.Contains(p, "originals") {
			variant = p
		}
		return err
	})
	if variant == "" {
		t.Fatalf("no variant of %s in the media copy", photos[1])
	}

	t.Run("fresh", func(t *testing.T) {
		out, err := verify(t)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"integrity check in", "sentinel written " + recoveryPoint + " before the restore: present", "SHA-256 checked", "backup verified in"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q", want)
			}
		}
		// Every file in the copy is referenced (no upload is in work).
		visible, _ := files(t, mediaCopy)
		if want := fmt.Sprintf("%d files referenced, %d SHA-256 checked", len(visible), len(visible)); len(visible) < 4 || !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	})
	t.Run("scheduled", func(t *testing.T) {
		// serve's own verification, on its schedule: it started before
		// Litestream, so it failed first; it passes once the replica is
		// there.
		var metrics string
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			_, b, err := request(http.DefaultClient, "GET", c.adm+"/metrics", "", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if metrics = string(b); strings.Contains(metrics, "\nonebox_backup_verify_ok 1\n") {
				break
			}
		}
		for _, want := range []string{"\nonebox_backup_verify_ok 1\n", "\nonebox_backup_verify_interval_seconds 3\n", "\nonebox_backup_verify_restore_seconds ", "\nonebox_backup_verify_age_seconds "} {
			if !strings.Contains(metrics, want) {
				t.Errorf("/metrics lacks %q; the child's log:\n%s", strings.TrimSpace(want), lastLines(c.log.String(), 10))
			}
		}
	})
	t.Run("media digest", func(t *testing.T) {
		// Bit rot: one byte changes, the size and time stay.
		undo := damage(t, original)
		defer undo()
		if _, err := verify(t); !errors.Is(err, backup.ErrMediaDigest) {
			t.Fatalf("got %v, want %v", err, backup.ErrMediaDigest)
		}
	})
	t.Run("missing media", func(t *testing.T) {
		if err := os.Rename(variant, variant+".away"); err != nil {
			t.Fatal(err)
		}
		defer os.Rename(variant+".away", variant)
		if _, err := verify(t); !errors.Is(err, backup.ErrMediaMissing) {
			t.Fatalf("got %v, want %v", err, backup.ErrMediaMissing)
		}
	})
	t.Run("corrupted replica", func(t *testing.T) {
		// A copy of the replica with every file damaged, restored
		// through a config of its own; the live replica goes on.
		broken := filepath.Join(root, "replica-broken")
		mustRun(t, "cp", "-a", replica, broken)
		n := 0
		filepath.WalkDir(broken, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".ltx") {
				damage(t, p)
				n++
			}
			return err
		})
		if n == 0 {
			t.Fatalf("no .ltx file in the replica %s", replica)
		}
		brokenConfig := writeLitestreamConfig(t, filepath.Join(root, "broken.yml"), db, broken)
		_, err := verify(t, "ONEBOX_LITESTREAM_CONFIG="+brokenConfig)
		if !errors.Is(err, backup.ErrRestore) && !errors.Is(err, backup.ErrCorrupt) {
			t.Fatalf("got %v, want %v or %v", err, backup.ErrRestore, backup.ErrCorrupt)
		}
	})
	t.Run("stale", func(t *testing.T) {
		// Litestream stopped: the replica holds everything but the
		// sentinel verify writes.
		ls.kill()
		if _, err := verify(t); !errors.Is(err, backup.ErrStale) {
			t.Fatalf("got %v, want %v", err, backup.ErrStale)
		}
	})
}

// litestreamBin is ONEBOX_TEST_LITESTREAM, the litestream binary; the
// test skips, saying it does without, when it is unset.
func litestreamBin(t *testing.T, without string) string {
	t.Helper()
	bin := os.Getenv("ONEBOX_TEST_LITESTREAM")
	if bin == "" {
		t.Skip("ONEBOX_TEST_LITESTREAM unset: " + without + " (.ci/run sets it to the litestream binary)")
	}
	if _, err := exec.LookPath(bin); err != nil {
		t.Fatalf("ONEBOX_TEST_LITESTREAM=%s: %v", bin, err)
	}
	return bin
}

// writeLitestreamConfig writes a Litestream config that replicates db to
// a file replica at replica, with the disaster drill's timing.
func writeLitestreamConfig(t *testing.T, path, db, replica string) string {
	t.Helper()
	if err := os.WriteFile(path, fmt.Appendf(nil, `dbs:
  - path: %s
    monitor-interval: %s
    replica:
      type: file
      path: %s
      sync-interval: %s
`, db, monitorInterval, replica, syncInterval), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// damage flips a byte in the middle of the file at path, keeping its
// size and modification time, as bit rot would; undo puts it back.
func damage(t *testing.T, path string) (undo func()) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	write := func(b []byte) {
		if err := os.WriteFile(path, b, fi.Mode()); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	orig := bytes.Clone(b)
	b[len(b)/2] ^= 0xff
	write(b)
	return func() { write(orig) }
}
