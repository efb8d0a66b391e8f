// Package mediatest is the conformance suite for media.Storage: every
// backend's tests call Run, and a change to the contract lands here first.
package mediatest

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"onebox/media"
)

// Run runs the suite against storages made by newStorage, a fresh, empty
// one per subtest (newStorage may register its own clean-up with
// t.Cleanup). The subtests run in parallel. skips names subtests that a
// backend's server is known to fail, each with its reason.
func Run(t *testing.T, newStorage func(t *testing.T) media.Storage, skips ...Skip) {
	t.Helper()
	tests := []struct {
		name string
		test func(t *testing.T, s media.Storage)
	}{
		{"RoundTrip", testRoundTrip},
		{"Empty", testEmpty},
		{"ETag", testETag},
		{"Replace", testReplace},
		{"NotFound", testNotFound},
		{"Delete", testDelete},
		{"DeleteMissing", testDeleteMissing},
		{"PutAfterDelete", testPutAfterDelete},
		{"FailedPut", testFailedPut},
		{"CanceledPut", testCanceledPut},
		{"BadKeys", testBadKeys},
		{"KeyLimits", testKeyLimits},
		{"Large", testLarge},
		{"Stat", testStat},
		{"OpenRange", testOpenRange},
		{"Ranges", testRanges},
		{"URL", testURL},
		{"ConcurrentPuts", testConcurrentPuts},
		{"ConcurrentPutDelete", testConcurrentPutDelete},
		{"ConcurrentReplace", testConcurrentReplace},
	}
	skipped := make(map[string]string)
	for _, sk := range skips {
		skipped[sk.Test] = sk.Reason
	}
	for _, tt := range tests {
		reason, skip := skipped[tt.name]
		delete(skipped, tt.name)
		t.Run(tt.name, func(t *testing.T) {
			if skip {
				t.Skip(reason)
			}
			t.Parallel()
			tt.test(t, newStorage(t))
		})
	}
	for name := range skipped {
		t.Errorf("a skip names %q, which is no test of the suite", name)
	}
}

// Skip is a subtest that Run skips, and why.
type Skip struct{ Test, Reason string }

func mustPut(t *testing.T, s media.Storage, key string, data []byte, contentType string) media.Info {
	t.Helper()
	info, err := s.Put(t.Context(), key, bytes.NewReader(data), contentType)
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	if info.Size != int64(len(data)) || info.ContentType != contentType {
		t.Fatalf("Put(%q) = size %d, type %q; want %d, %q", key, info.Size, info.ContentType, len(data), contentType)
	}
	requireETag(t, info.ETag)
	return info
}

func mustDelete(t *testing.T, s media.Storage, keys ...string) {
	t.Helper()
	if err := s.Delete(t.Context(), keys...); err != nil {
		t.Fatalf("Delete(%q): %v", keys, err)
	}
}

// read opens key and returns all its bytes and its Info.
func read(t *testing.T, s media.Storage, key string) ([]byte, media.Info) {
	t.Helper()
	obj, err := s.Open(t.Context(), key)
	if err != nil {
		t.Fatalf("Open(%q): %v", key, err)
	}
	defer obj.Close()
	data, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("reading %q: %v", key, err)
	}
	return data, obj.Info()
}

// requireObject checks that key holds data with the Info that Put
// returned for it.
func requireObject(t *testing.T, s media.Storage, key string, data []byte, want media.Info) {
	t.Helper()
	got, info := read(t, s, key)
	if !bytes.Equal(got, data) {
		t.Fatalf("Open(%q) read %d bytes, not the %d put", key, len(got), len(data))
	}
	if info.Size != want.Size || info.ContentType != want.ContentType || info.ETag != want.ETag {
		t.Fatalf("Open(%q).Info() = %+v, want the %+v of Put", key, info, want)
	}
	if info.ModTime.IsZero() {
		t.Fatalf("Open(%q).Info().ModTime is zero", key)
	}
}

func requireNotFound(t *testing.T, s media.Storage, key string) {
	t.Helper()
	obj, err := s.Open(t.Context(), key)
	if err == nil {
		obj.Close()
		t.Fatalf("Open(%q) succeeded, want ErrNotFound", key)
	}
	if !errors.Is(err, media.ErrNotFound) {
		t.Fatalf("Open(%q) = %v, want ErrNotFound", key, err)
	}
}

// requireETag checks the form of a strong validator: quoted, not weak.
func requireETag(t *testing.T, etag string) {
	t.Helper()
	if len(etag) < 3 || !strings.HasPrefix(etag, `"`) || !strings.HasSuffix(etag, `"`) ||
		strings.Contains(etag[1:len(etag)-1], `"`) {
		t.Fatalf("ETag %q is not a quoted strong validator", etag)
	}
}
