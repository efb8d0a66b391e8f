package app_test

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"

	"onebox/store"
)

// held blocks every read of a user whose id starts with prefix until
// release closes, and says on entered (buffered: a request may read
// twice) when a read has come in: requests that hold a slot for as long
// as the test wants. Each needs an id of its own, or the cache's
// single flight makes one read of them.
type held struct {
	store.Store
	prefix  string
	entered chan struct{}
	release chan struct{}
}

func (h held) User(ctx context.Context, p store.UserParams) (store.User, error) {
	if strings.HasPrefix(p.ID, h.prefix) {
		h.entered <- struct{}{}
		select {
		case <-h.release:
		case <-ctx.Done():
			return store.User{}, ctx.Err()
		}
	}
	return h.Store.User(ctx, p)
}

// TestShedPastMaxInFlight holds N slow requests with the bound at N: k
// more are answered 503 problem+json with Retry-After at once (they come
// back while the N still hold their slots), each counted in
// onebox_http_shed_total; health checks and the admin listener still
// answer; once the N finish, requests are admitted again.
func TestShedPastMaxInFlight(t *testing.T) {
	t.Parallel()
	const n, k = 3, 4
	h := held{prefix: "01a24db4-0000-7000-8000-", entered: make(chan struct{}, 64), release: make(chan struct{})}
	b := newBundle(t, func(s *setup) {
		s.opts.MaxInFlight = n
		s.noCache, s.metrics = true, true
		s.wrapStore = func(st store.Store) store.Store { h.Store = st; return h }
	})
	var wg sync.WaitGroup
	held := make([]response, n)
	id := func(i int) string { return fmt.Sprintf("%s%012d", h.prefix, i) }
	// The job runner yields while the API is this busy (jobs.RunnerOptions.Busy):
	// from one request in flight per two CPUs.
	busyFrom := max(1, runtime.GOMAXPROCS(0)/2)
	for i := range n {
		wg.Go(func() { held[i] = b.do("GET", "/v1/users/"+id(i), "") })
		<-h.entered
		if want := i+1 >= busyFrom; b.app.Busy() != want {
			t.Errorf("%d requests in flight on %d CPUs: Busy %v, want %v", i+1, runtime.GOMAXPROCS(0), !want, want)
		}
	}
	for i := range k {
		// Not held: admitted, it would answer 404 at once.
		r := b.do("GET", fmt.Sprintf("/v1/users/01a24db5-0000-7000-8000-%012d", i), "")
		mustProblem(t, r, http.StatusServiceUnavailable, "/problems/overloaded")
		if got := r.Header.Get("Retry-After"); got != "1" {
			t.Errorf("shed request: Retry-After %q, want 1", got)
		}
	}
	for _, path := range []string{"/health/live", "/health/ready"} {
		mustStatus(t, b.do("GET", path, ""), http.StatusOK)
	}
	if m := b.scrape(t); !strings.Contains(m, "\nonebox_http_shed_total 4\n") {
		t.Errorf("metrics after %d shed requests:\n%s", k, m)
	}

	close(h.release)
	wg.Wait()
	for _, r := range held {
		mustStatus(t, r, http.StatusNotFound) // admitted: the store answered (no such user)
	}
	mustStatus(t, b.do("GET", "/v1/users/"+id(0), ""), http.StatusNotFound)
	if b.app.Busy() {
		t.Error("nothing in flight: Busy true")
	}
}
