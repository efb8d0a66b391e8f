package app_test

import (
	"context"
	"io"
	"net/http"
	"testing"
)

// tryStream opens the caller's event stream. An open stream stays open
// until ctx ends; any other answer is read and closed.
func (b *bundle) tryStream(ctx context.Context, token string) response {
	b.t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", b.url+"/v1/users/me/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	if res.StatusCode == http.StatusOK {
		return response{Response: res}
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return response{res, body}
}

// Event streams are capped per user (429) and per instance (503), with
// Retry-After; a stream's slot is free again once it ends.
func TestStreamCaps(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		perUser, max int
		holders      []string // a stream each, in order
		refused      string   // the next stream, refused
		status       int
		retryAfter   string
		stillOpens   string // a user whose stream is not refused
	}{
		{"per user", 2, 0, []string{"ann", "ann"}, "ann", http.StatusTooManyRequests, "30", "bob"},
		{"in total", 0, 2, []string{"ann", "bob"}, "cyd", http.StatusServiceUnavailable, "5", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBundle(t, func(s *setup) { s.opts.SSEPerUser, s.opts.SSEMax = tc.perUser, tc.max })
			tokens := map[string]string{}
			for _, u := range []string{"ann", "bob", "cyd"} {
				_, tokens[u] = b.signup(u)
			}
			var cancels []context.CancelFunc
			for _, u := range tc.holders {
				ctx, cancel := context.WithCancel(t.Context())
				cancels = append(cancels, cancel)
				mustStatus(t, b.tryStream(ctx, tokens[u]), http.StatusOK)
			}
			r := b.tryStream(t.Context(), tokens[tc.refused])
			mustProblem(t, r, tc.status, "")
			if got := r.Header.Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			if tc.stillOpens != "" {
				mustStatus(t, b.tryStream(t.Context(), tokens[tc.stillOpens]), http.StatusOK)
			}

			cancels[0]() // the first stream ends: its slot comes back
			waitFor(t, func() bool { return b.tryStream(t.Context(), tokens[tc.refused]).StatusCode == http.StatusOK })
		})
	}
}
