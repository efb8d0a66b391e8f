package mediatest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"testing"

	"onebox/media"
)

func testConcurrentPuts(t *testing.T, s media.Storage) {
	const workers = 16
	data := func(i int) []byte { return bytes.Repeat(fmt.Appendf(nil, "worker %d;", i), 1000) }
	// Keys share directories, which the puts create concurrently.
	key := func(i int) string { return fmt.Sprintf("photos/p%d/w%d.jpg", i%4, i) }
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			if _, err := s.Put(t.Context(), key(i), bytes.NewReader(data(i)), "image/jpeg"); err != nil {
				t.Errorf("Put(%q): %v", key(i), err)
			}
		})
	}
	wg.Wait()
	for i := range workers {
		if got, _ := read(t, s, key(i)); !bytes.Equal(got, data(i)) {
			t.Errorf("%q holds %d bytes, not the %d put", key(i), len(got), len(data(i)))
		}
	}
}

// testConcurrentPutDelete puts and deletes keys of one directory at once,
// so that a backend that removes emptied directories races its own puts.
func testConcurrentPutDelete(t *testing.T, s media.Storage) {
	const (
		workers = 8
		rounds  = 50
	)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			key := fmt.Sprintf("photos/p1/w%d.jpg", w)
			for range rounds {
				if _, err := s.Put(t.Context(), key, bytes.NewReader([]byte(key)), "image/jpeg"); err != nil {
					t.Errorf("Put(%q): %v", key, err)
					return
				}
				if err := s.Delete(t.Context(), key); err != nil {
					t.Errorf("Delete(%q): %v", key, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for w := range workers {
		requireNotFound(t, s, fmt.Sprintf("photos/p1/w%d.jpg", w))
	}
}

// testConcurrentReplace puts two versions of one key over and over while
// readers open it: each open must see one version whole, with that
// version's Info, never the bytes of one and the Info of the other.
func testConcurrentReplace(t *testing.T, s media.Storage) {
	const (
		key     = "photos/p1/w640.jpg"
		writers = 4
		readers = 4
		rounds  = 50
	)
	type version struct {
		data []byte
		info media.Info
	}
	versions := []version{
		{data: bytes.Repeat([]byte("a"), 3000)},
		{data: bytes.Repeat([]byte("bb"), 1000)},
	}
	for i, ct := range []string{"image/jpeg", "image/png"} {
		versions[i].info = mustPut(t, s, key, versions[i].data, ct)
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range rounds {
				v := versions[(w+i)%len(versions)]
				if _, err := s.Put(t.Context(), key, bytes.NewReader(v.data), v.info.ContentType); err != nil {
					t.Errorf("Put: %v", err)
					return
				}
			}
		})
	}
	for range readers {
		wg.Go(func() {
			for range rounds {
				if err := checkVersion(t.Context(), s, key, func(data []byte, info media.Info) bool {
					for _, v := range versions {
						if bytes.Equal(data, v.data) && info.Size == v.info.Size &&
							info.ContentType == v.info.ContentType && info.ETag == v.info.ETag {
							return true
						}
					}
					return false
				}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// checkVersion opens key and asks ok whether its bytes and Info belong
// together. It returns an error rather than failing, as it runs outside
// the test's goroutine.
func checkVersion(ctx context.Context, s media.Storage, key string, ok func([]byte, media.Info) bool) error {
	obj, err := s.Open(ctx, key)
	if err != nil {
		return fmt.Errorf("Open(%q): %w", key, err)
	}
	defer obj.Close()
	data, err := io.ReadAll(obj)
	if err != nil {
		return fmt.Errorf("reading %q: %w", key, err)
	}
	if !ok(data, obj.Info()) {
		return fmt.Errorf("Open(%q) = %d bytes with Info %+v: not a version put", key, len(data), obj.Info())
	}
	return nil
}
