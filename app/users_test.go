package app_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"onebox/store"
)

func TestPatchIsVisibleToNextRead(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	id, token := b.signup("alice")

	first := b.do("GET", "/v1/users/"+id, "") // fills the cache
	mustStatus(t, first, http.StatusOK)
	if got := first.Header.Get("ETag"); got != `"1"` {
		t.Fatalf("ETag %q", got)
	}
	if got := first.Header.Get("Cache-Control"); got != "public, no-cache, s-maxage=10" {
		t.Fatalf("Cache-Control %q", got)
	}
	mustStatus(t, b.do("GET", "/v1/users/"+id, "", "If-None-Match", `"1"`), http.StatusNotModified)

	r := b.do("PATCH", "/v1/users/me", `{"bio":"hello","display_name":null}`, append(bearer(token), "If-Match", `"1"`, "Content-Type", "application/merge-patch+json")...)
	mustStatus(t, r, http.StatusOK)
	if m := r.json(t); m["bio"] != "hello" || m["display_name"] != "" || m["version"] != 2.0 {
		t.Fatalf("patched profile %v", m)
	}
	if r.Header.Get("Cache-Control") != "private, no-store" {
		t.Fatalf("PATCH Cache-Control %q", r.Header.Get("Cache-Control"))
	}

	next := b.do("GET", "/v1/users/"+id, "", "If-None-Match", `"1"`)
	mustStatus(t, next, http.StatusOK)
	if m := next.json(t); m["bio"] != "hello" || next.Header.Get("ETag") != `"2"` {
		t.Fatalf("stale read after PATCH: %v, ETag %s", m, next.Header.Get("ETag"))
	}

	stale := b.do("PATCH", "/v1/users/me", `{"bio":"lost update"}`, append(bearer(token), "If-Match", `"1"`)...)
	mustStatus(t, stale, http.StatusPreconditionFailed)
	me := b.do("GET", "/v1/users/me", "", bearer(token)...)
	mustStatus(t, me, http.StatusOK)
	if m := me.json(t); m["bio"] != "hello" || me.Header.Get("Cache-Control") != "private, no-store" {
		t.Fatalf("me after stale PATCH: %v", m)
	}

	// An empty patch changes nothing, not even the version.
	same := b.do("PATCH", "/v1/users/me", `{}`, bearer(token)...)
	mustStatus(t, same, http.StatusOK)
	if same.json(t)["version"] != 2.0 {
		t.Fatalf("empty patch bumped the version: %s", same.body)
	}
}

func TestConcurrentMissesLoadOnce(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	id, _ := b.signup("bob")
	before := b.count("users_by_id")

	const n = 500
	var wg sync.WaitGroup
	codes := make(chan int, n)
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			req, _ := http.NewRequest("GET", b.url+"/v1/users/"+id, nil)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			codes <- res.StatusCode
		})
	}
	close(start)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Fatalf("status %d", c)
		}
	}
	if loads := b.count("users_by_id") - before; loads != 1 {
		t.Fatalf("%d database loads for %d concurrent reads of one profile, want 1", loads, n)
	}
}

func TestNotFoundIsCachedBriefly(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	const missing = "01900000-0000-7000-8000-000000000000"
	for range 3 {
		mustStatus(t, b.do("GET", "/v1/users/"+missing, ""), http.StatusNotFound)
	}
	if n := b.count("users_by_id"); n != 1 {
		t.Fatalf("%d loads for three reads of a missing user, want 1", n)
	}
}

func TestCacheOff(t *testing.T) {
	t.Parallel()
	b := newBundle(t, func(s *setup) { s.noCache = true })
	id, token := b.signup("carol")
	mustStatus(t, b.do("GET", "/v1/users/"+id, ""), http.StatusOK)
	mustStatus(t, b.do("PATCH", "/v1/users/me", `{"bio":"x"}`, bearer(token)...), http.StatusOK)
	r := b.do("GET", "/v1/users/"+id, "")
	if r.json(t)["bio"] != "x" {
		t.Fatalf("read after write without cache: %s", r.body)
	}
}

func TestListUsersPages(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	want := map[string]bool{}
	for i := range 25 {
		id, _ := b.signup(fmt.Sprintf("user%02d", i))
		want[id] = true
	}
	seen := map[string]bool{}
	cursor, pages := "", 0
	for {
		r := b.do("GET", "/v1/users?limit=10&cursor="+cursor, "")
		mustStatus(t, r, http.StatusOK)
		m := r.json(t)
		pages++
		for _, it := range m["items"].([]any) {
			id := it.(map[string]any)["id"].(string)
			if seen[id] {
				t.Fatalf("user %s on two pages", id)
			}
			seen[id] = true
		}
		next, _ := m["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if pages != 3 || len(seen) != 25 {
		t.Fatalf("%d pages, %d users; want 3 and 25", pages, len(seen))
	}
	for id := range want {
		if !seen[id] {
			t.Fatalf("user %s missing from the pages", id)
		}
	}
}

func TestLogoutRevokesAtOnce(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	_, token := b.signup("dave")
	mustStatus(t, b.do("GET", "/v1/users/me", "", bearer(token)...), http.StatusOK) // now cached
	mustStatus(t, b.do("DELETE", "/v1/sessions/current", "", bearer(token)...), http.StatusNoContent)
	r := b.do("GET", "/v1/users/me", "", bearer(token)...)
	mustStatus(t, r, http.StatusUnauthorized)
	if r.Header.Get("WWW-Authenticate") == "" {
		t.Fatal("401 without WWW-Authenticate")
	}
}

func TestPasswordChangeRevokesOtherSessions(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	_, keep := b.signup("erin")
	other := b.login("erin", "correct horse")
	mustStatus(t, b.do("GET", "/v1/users/me", "", bearer(other)...), http.StatusOK) // cached

	wrong := b.do("PUT", "/v1/users/me/password", `{"current_password":"nope nope","new_password":"battery staple"}`, bearer(keep)...)
	mustStatus(t, wrong, http.StatusUnprocessableEntity)
	mustStatus(t, b.do("PUT", "/v1/users/me/password", `{"current_password":"correct horse","new_password":"battery staple"}`, bearer(keep)...), http.StatusNoContent)

	mustStatus(t, b.do("GET", "/v1/users/me", "", bearer(other)...), http.StatusUnauthorized)
	mustStatus(t, b.do("GET", "/v1/users/me", "", bearer(keep)...), http.StatusOK)
	mustStatus(t, b.do("POST", "/v1/sessions", `{"handle":"erin","password":"correct horse"}`), http.StatusUnauthorized)
	b.login("ERIN", "battery staple") // handles are case-insensitive
}

func TestDeleteAccount(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	id, token := b.signup("frank")
	mustStatus(t, b.do("GET", "/v1/users/"+id, ""), http.StatusOK) // cached
	mustStatus(t, b.do("DELETE", "/v1/users/me", "", bearer(token)...), http.StatusNoContent)
	mustStatus(t, b.do("GET", "/v1/users/"+id, ""), http.StatusNotFound)
	mustStatus(t, b.do("GET", "/v1/users/me", "", bearer(token)...), http.StatusUnauthorized)
	// The handle is free again.
	mustStatus(t, b.do("POST", "/v1/users", `{"handle":"frank","password":"correct horse"}`), http.StatusCreated)
}

func TestCookieSessionNeedsOrigin(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	b.signup("grace")
	r := b.do("POST", "/v1/sessions", `{"handle":"grace","password":"correct horse"}`)
	mustStatus(t, r, http.StatusCreated)
	var cookie *http.Cookie
	for _, c := range r.Cookies() {
		if c.Name == "onebox_session" {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Secure {
		t.Fatalf("session cookie %+v", cookie)
	}
	ck := []string{"Cookie", "onebox_session=" + cookie.Value}
	mustStatus(t, b.do("GET", "/v1/users/me", "", ck...), http.StatusOK)
	mustStatus(t, b.do("PATCH", "/v1/users/me", `{"bio":"x"}`, ck...), http.StatusForbidden)
	mustStatus(t, b.do("PATCH", "/v1/users/me", `{"bio":"x"}`, append(ck, "Origin", "https://evil.example")...), http.StatusForbidden)
	mustStatus(t, b.do("PATCH", "/v1/users/me", `{"bio":"x"}`, append(ck, "Origin", b.url)...), http.StatusOK)
	// A stale cookie is anonymous on public routes, 401 on private ones.
	stale := []string{"Cookie", "onebox_session=" + strings.Repeat("A", 43)}
	mustStatus(t, b.do("GET", "/v1/users", "", stale...), http.StatusOK)
	mustStatus(t, b.do("GET", "/v1/users/me", "", stale...), http.StatusUnauthorized)
}

// freshnessOf records the freshness of every User read.
type freshnessOf struct {
	store.Store
	mu   sync.Mutex
	seen []store.Freshness
}

func (f *freshnessOf) User(ctx context.Context, p store.UserParams) (store.User, error) {
	f.mu.Lock()
	f.seen = append(f.seen, p.Freshness)
	f.mu.Unlock()
	return f.Store.User(ctx, p)
}

// TestProfileLoadFreshness: a public profile that goes into the cache is
// read fresh (a stale load after an invalidation would be served for the
// TTL); without a cache the read may be stale, as a replica's.
func TestProfileLoadFreshness(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		noCache bool
		want    store.Freshness
	}{{false, store.MustBeFresh}, {true, store.MayBeStale}} {
		rec := &freshnessOf{}
		b := newBundle(t, func(s *setup) {
			s.noCache = tt.noCache
			s.wrapStore = func(st store.Store) store.Store { rec.Store = st; return rec }
		})
		id, _ := b.signup(fmt.Sprintf("fresh%v", tt.noCache))
		rec.mu.Lock()
		rec.seen = nil
		rec.mu.Unlock()
		mustStatus(t, b.do("GET", "/v1/users/"+id, ""), http.StatusOK)
		rec.mu.Lock()
		seen := slices.Clone(rec.seen)
		rec.mu.Unlock()
		if len(seen) != 1 || seen[0] != tt.want {
			t.Errorf("cache off %v: User read with %v, want [%v]", tt.noCache, seen, tt.want)
		}
	}
}

// readSpy records the method and freshness of every read that takes one.
// With marks set, it stands for a store with replicas: a session's token
// is "t" and the number of MarkWritten calls on it so far, so a read
// shows which write it waits for. With tokenless set, it stands for a
// store that keeps one copy and hands out no tokens, as SQLite does,
// whatever store it wraps.
type readSpy struct {
	store.Store
	mu        sync.Mutex
	reads     []string       // "User MustBeFresh", "Photo AtLeast t2"
	marks     map[string]int // by token hash; nil: the store's own tokens
	tokenless bool
}

func (s *readSpy) token(tokenHash string) store.Token {
	return store.Token(fmt.Sprintf("t%d", s.marks[tokenHash]))
}

func (s *readSpy) Session(ctx context.Context, tokenHash string, now time.Time) (store.Session, error) {
	sess, err := s.Store.Session(ctx, tokenHash, now)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.tokenless:
		sess.Token = ""
	case s.marks != nil:
		sess.Token = s.token(tokenHash)
	}
	return sess, err
}

func (s *readSpy) MarkWritten(ctx context.Context, tokenHash string) (store.Token, error) {
	tok, err := s.Store.MarkWritten(ctx, tokenHash)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tokenless {
		return "", err
	}
	if s.marks == nil || err != nil {
		return tok, err
	}
	s.marks[tokenHash]++
	return s.token(tokenHash), nil
}

func (s *readSpy) record(method string, f store.Freshness, at store.Token) {
	name := "MayBeStale"
	if f == store.MustBeFresh {
		name = "MustBeFresh"
	}
	if at != "" {
		name += " AtLeast " + string(at)
	}
	s.mu.Lock()
	s.reads = append(s.reads, method+" "+name)
	s.mu.Unlock()
}

func (s *readSpy) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.reads
	s.reads = nil
	return r
}

func (s *readSpy) User(ctx context.Context, p store.UserParams) (store.User, error) {
	s.record("User", p.Freshness, p.AtLeast)
	return s.Store.User(ctx, p)
}

func (s *readSpy) ListUsers(ctx context.Context, p store.ListUsersParams) ([]store.User, error) {
	s.record("ListUsers", p.Freshness, "")
	return s.Store.ListUsers(ctx, p)
}

func (s *readSpy) Photo(ctx context.Context, p store.PhotoParams) (store.Photo, error) {
	s.record("Photo", p.Freshness, p.AtLeast)
	return s.Store.Photo(ctx, p)
}

func (s *readSpy) ListPhotos(ctx context.Context, p store.ListPhotosParams) ([]store.Photo, error) {
	s.record("ListPhotos", p.Freshness, p.AtLeast)
	return s.Store.ListPhotos(ctx, p)
}

// readCase is a request and every read the spy should see it make.
type readCase struct {
	name, method, path, body string
	status                   int
	want                     []string // every read, in order
}

func checkReads(t *testing.T, b *bundle, spy *readSpy, token string, tests []readCase) {
	t.Helper()
	for _, tt := range tests {
		spy.take()
		mustStatus(t, b.do(tt.method, tt.path, tt.body, bearer(token)...), tt.status)
		if got := spy.take(); !slices.Equal(got, tt.want) {
			t.Errorf("%s: reads %v, want %v", tt.name, got, tt.want)
		}
	}
}

// readyAvatar uploads a photo, waits until it is ready and makes it the
// user's avatar; it returns the photo's id.
func (b *bundle) readyAvatar(token string) string {
	b.t.Helper()
	up := b.uploadBytes(token, smallPNG(b.t), false)
	mustStatus(b.t, up, http.StatusAccepted)
	photoID := up.json(b.t)["id"].(string)
	if ph := b.waitPhoto(token, photoID); ph["status"] != "ready" {
		b.t.Fatalf("photo %v", ph)
	}
	mustStatus(b.t, b.do("PATCH", "/v1/users/me", `{"avatar_id":"`+photoID+`"}`, bearer(token)...), http.StatusOK)
	return photoID
}

// TestOwnReadsAreFresh: what a user reads of their own account right
// after changing it must be fresh (read-your-own-writes): on a replica, a
// stale read would show the old profile, accept a stale If-Match or check
// a password against the old hash. A store without tokens (SQLite: one
// copy) answers either way, so only a spy on the freshness asked for can
// tell; the spy hands out no tokens, whatever the store.
func TestOwnReadsAreFresh(t *testing.T) {
	t.Parallel()
	spy := &readSpy{tokenless: true}
	b := newBundle(t, func(s *setup) {
		s.wrapStore = func(st store.Store) store.Store { spy.Store = st; return spy }
	})
	_, token := b.signup("freshman")
	// With an avatar, the profile answers also read a photo.
	photoID := b.readyAvatar(token)

	checkReads(t, b, spy, token, []readCase{
		{"own profile", "GET", "/v1/users/me", "", 200, []string{"User MustBeFresh", "Photo MustBeFresh"}},
		{"empty patch", "PATCH", "/v1/users/me", `{}`, 200, []string{"User MustBeFresh", "Photo MustBeFresh"}},
		{"patch", "PATCH", "/v1/users/me", `{"bio":"new"}`, 200, []string{"Photo MustBeFresh"}},
		{"password change", "PUT", "/v1/users/me/password", `{"current_password":"correct horse","new_password":"correct horse"}`, 204, []string{"User MustBeFresh"}},
		{"own photo", "GET", "/v1/photos/" + photoID, "", 200, []string{"Photo MustBeFresh"}},
		{"page", "GET", "/", "", 200, []string{"User MustBeFresh", "Photo MustBeFresh", "ListPhotos MustBeFresh"}},
		// The spy sees stale reads too: the public list may lag.
		{"public list", "GET", "/v1/users", "", 200, []string{"ListUsers MayBeStale"}},
	})
}

// TestOwnReadsCarryTheToken: on a store with replicas, what a user reads
// of their own account waits for the session's latest write (its token),
// not for every write of everyone: a replica that has it may serve the
// read. Each write moves the token on, for the rest of the same request
// and for the session's next requests. Reads that must see others'
// writes (the job's progress, the If-Match check, the password) stay
// fresh.
func TestOwnReadsCarryTheToken(t *testing.T) {
	t.Parallel()
	spy := &readSpy{marks: map[string]int{}}
	b := newBundle(t, func(s *setup) {
		s.wrapStore = func(st store.Store) store.Store { spy.Store = st; return spy }
	})
	other, _ := b.signup("tokenwoman")
	_, token := b.signup("tokenman")
	photoID := b.readyAvatar(token) // the upload is t1, the avatar t2

	checkReads(t, b, spy, token, []readCase{
		{"own profile", "GET", "/v1/users/me", "", 200, []string{"User MayBeStale AtLeast t2", "Photo MayBeStale AtLeast t2"}},
		{"empty patch", "PATCH", "/v1/users/me", `{}`, 200, []string{"User MustBeFresh", "Photo MayBeStale AtLeast t2"}},
		{"patch", "PATCH", "/v1/users/me", `{"bio":"new"}`, 200, []string{"Photo MayBeStale AtLeast t3"}},
		{"after the patch", "GET", "/v1/users/me", "", 200, []string{"User MayBeStale AtLeast t3", "Photo MayBeStale AtLeast t3"}},
		{"password change", "PUT", "/v1/users/me/password", `{"current_password":"correct horse","new_password":"correct horse"}`, 204, []string{"User MustBeFresh"}},
		{"own photo", "GET", "/v1/photos/" + photoID, "", 200, []string{"Photo MustBeFresh"}},
		{"own list", "GET", "/v1/users/me/photos", "", 200, []string{"ListPhotos MayBeStale AtLeast t4"}},
		{"page", "GET", "/", "", 200, []string{"User MayBeStale AtLeast t4", "Photo MayBeStale AtLeast t4", "ListPhotos MayBeStale AtLeast t4"}},
		{"delete", "DELETE", "/v1/photos/" + photoID, "", 204, nil},
		{"own list after the delete", "GET", "/v1/users/me/photos", "", 200, []string{"ListPhotos MayBeStale AtLeast t5"}},
		{"someone's list", "GET", "/v1/users/" + other + "/photos", "", 200, []string{"ListPhotos MayBeStale"}},
	})
}

// TestPatchPreconditions: If-Match is checked whatever the patch holds;
// an empty patch with a stale version is a 412 too, and a matching one
// changes nothing.
func TestPatchPreconditions(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	_, token := b.signup("precond")
	mustStatus(t, b.do("PATCH", "/v1/users/me", `{"bio":"v2"}`, bearer(token)...), http.StatusOK) // now version 2
	tests := []struct {
		name, body, ifMatch string
		status              int
	}{
		{"empty, stale", `{}`, `"1"`, http.StatusPreconditionFailed},
		{"empty, ahead", `{}`, `"3"`, http.StatusPreconditionFailed},
		{"empty, current", `{}`, `"2"`, http.StatusOK},
		{"empty, any", `{}`, `*`, http.StatusOK},
		{"empty, none", `{}`, ``, http.StatusOK},
		{"change, stale", `{"bio":"lost"}`, `"1"`, http.StatusPreconditionFailed},
		{"null, stale", `{"bio":null}`, `"1"`, http.StatusPreconditionFailed},
		{"empty, malformed", `{}`, `2`, http.StatusPreconditionFailed},
	}
	for _, tt := range tests {
		h := bearer(token)
		if tt.ifMatch != "" {
			h = append(h, "If-Match", tt.ifMatch)
		}
		r := b.do("PATCH", "/v1/users/me", tt.body, h...)
		if r.StatusCode != tt.status {
			t.Errorf("%s: status %d, want %d: %s", tt.name, r.StatusCode, tt.status, r.body)
			continue
		}
		if tt.status == http.StatusPreconditionFailed && r.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: 412 as %q", tt.name, r.Header.Get("Content-Type"))
		}
	}
	me := b.do("GET", "/v1/users/me", "", bearer(token)...)
	if m := me.json(t); m["bio"] != "v2" || m["version"] != 2.0 || me.Header.Get("ETag") != `"2"` {
		t.Fatalf("after the refused and empty patches: %s (ETag %s)", me.body, me.Header.Get("ETag"))
	}
}
