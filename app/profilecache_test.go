package app_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"onebox/cache"
	"onebox/media"
)

// originStorage serves public keys from a base URL the test moves, as a
// restart with another ONEBOX_MEDIA_PUBLIC_URL would.
type originStorage struct {
	media.Storage
	base atomic.Pointer[string]
}

func (s *originStorage) URL(ctx context.Context, key string) (string, error) {
	u, err := s.Storage.URL(ctx, key)
	if err != nil {
		return "", err
	}
	return *s.base.Load() + strings.TrimPrefix(u, "/media/"), nil
}

// TestCachedProfileFollowsMediaOrigin: the cached public profile holds
// media keys, not URLs, so when the media origin moves, the next read,
// still a cache hit, shows the new origin: no flush. Its body is byte for
// byte the fresh encode of GET /v1/users/me.
func TestCachedProfileFollowsMediaOrigin(t *testing.T) {
	t.Parallel()
	origin := &originStorage{}
	old, moved := "https://old.example/media/", "https://cdn.example/m/"
	origin.base.Store(&old)
	b := newBundle(t, func(s *setup) {
		s.wrapMedia = func(m media.Storage) media.Storage { origin.Storage = m; return origin }
	})
	id, token := b.signup("wanderer")
	photoID := b.readyAvatar(token)

	read := func(base string) response {
		t.Helper()
		r := b.do("GET", "/v1/users/"+id, "")
		mustStatus(t, r, http.StatusOK)
		avatar, _ := r.json(t)["avatar"].([]any)
		if len(avatar) == 0 {
			t.Fatalf("profile without its avatar: %s", r.body)
		}
		for _, v := range avatar {
			if u := v.(map[string]any)["url"].(string); !strings.HasPrefix(u, base+"photos/"+photoID+"/") {
				t.Errorf("variant url %q, want it under %s", u, base)
			}
		}
		me := b.do("GET", "/v1/users/me", "", bearer(token)...)
		mustStatus(t, me, http.StatusOK)
		if !bytes.Equal(r.body, me.body) || r.Header.Get("ETag") != me.Header.Get("ETag") {
			t.Errorf("cached answer %s %s\nfresh encode %s %s", r.Header.Get("ETag"), r.body, me.Header.Get("ETag"), me.body)
		}
		return r
	}
	read(old) // loads and caches it
	loads := b.count("users_by_id")
	first := read(old)
	origin.base.Store(&moved)
	second := read(moved)
	// GET /v1/users/me reads the user each time (twice here); the public
	// profile never did.
	if n := b.count("users_by_id") - loads; n != 2 {
		t.Errorf("users_by_id ran %d times, want 2 (the two reads of /me): the public profile was not served from the cache", n)
	}
	if first.Header.Get("ETag") != second.Header.Get("ETag") {
		t.Errorf("ETag %s then %s", first.Header.Get("ETag"), second.Header.Get("ETag"))
	}
}

// TestProfileOldCacheFormatIsAMiss: an entry of the first cached form
// (ETag, newline, body with its URLs), as an older onebox sharing the
// cache leaves it, is read as a miss: the answer comes from the store,
// and the entry is replaced, so the next read is a hit.
func TestProfileOldCacheFormatIsAMiss(t *testing.T) {
	t.Parallel()
	var shared cache.Cache
	b := newBundle(t, func(s *setup) {
		s.wrapCache = func(c cache.Cache) cache.Cache { shared = c; return c }
	})
	id, _ := b.signup("oldtimer")
	older := cache.NewAside(shared, cache.AsideOptions{TTL: time.Minute})
	if _, err := older.Get(t.Context(), "u:p2:"+id, func(context.Context) ([]byte, error) {
		return []byte(`"1"` + "\n" + `{"id":"` + id + `","handle":"oldtimer","display_name":"stale"}`), nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		before := b.count("users_by_id")
		r := b.do("GET", "/v1/users/"+id, "")
		mustStatus(t, r, http.StatusOK)
		if p := r.json(t); p["display_name"] != "oldtimer" || p["version"] == nil {
			t.Errorf("read %d: %s, want the store's profile", i, r.body)
		}
		if n, want := b.count("users_by_id")-before, int64(1-i); n != want {
			t.Errorf("read %d loaded the user %d times, want %d", i, n, want)
		}
	}
}
