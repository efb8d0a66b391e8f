package jobstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"onebox/internal/syncbuf"
	"onebox/jobs"
	"onebox/ratelimit"
)

// testRateLimit checks KindOptions.Rate on top of each backend: jobs
// over the rate wait in the queue and run later, on their first attempt.
func testRateLimit(t *testing.T, newQueue func(t *testing.T) jobs.Queue) {
	rate := ratelimit.Policy{Name: "job-k", Limit: 3, Window: time.Hour}
	run := func(t *testing.T, g *gate, n int, opts ...func(*jobs.RunnerOptions)) (ran func() []jobs.Message, out *outcomes) {
		q := newQueue(t)
		for i := range n {
			mustSend(t, q, jobs.Message{Kind: "k", Payload: json.RawMessage(fmt.Sprint(i))}, jobs.SendOptions{})
		}
		var mu sync.Mutex
		var got []jobs.Message
		out = &outcomes{}
		o := runnerOptions(t, out)
		o.Limiter = g
		for _, f := range opts {
			f(&o)
		}
		r := jobs.NewRunner(q, o)
		r.Register("k", func(ctx context.Context, m jobs.Message) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, m)
			return nil
		}, jobs.KindOptions{Concurrency: 4, Rate: rate})
		start(t, r)
		return func() []jobs.Message {
			mu.Lock()
			defer mu.Unlock()
			return append([]jobs.Message(nil), got...)
		}, out
	}

	t.Run("jobs over the rate wait, then run", func(t *testing.T) {
		t.Parallel()
		g := &gate{tokens: 3}
		ran, out := run(t, g, 10)
		eventually(t, "the 3 jobs the rate allows", func() bool { return len(ran()) == 3 })
		// The limiter refuses every further token until it is opened:
		// nothing more may run, however long the Runner polls.
		time.Sleep(300 * time.Millisecond)
		if n := len(ran()); n != 3 {
			t.Fatalf("%d jobs ran while the limiter refused, want 3", n)
		}
		g.open()
		eventually(t, "every job once the rate allows", func() bool { return len(ran()) == 10 })
		for _, m := range ran() {
			if m.Attempt != 1 {
				t.Errorf("job %s ran at attempt %d: a job over the rate must wait, not fail", m.Payload, m.Attempt)
			}
		}
		if got := out.all(); out.count("k:ok") != 10 || len(got) != 10 {
			t.Errorf("outcomes %v, want 10 k:ok", got)
		}
		for _, c := range g.seen() {
			if c != "job-k k" {
				t.Errorf("limiter asked for %q, want the kind's policy keyed by the kind (job-k k)", c)
			}
		}
	})

	t.Run("a failing limiter does not stop the work", func(t *testing.T) {
		t.Parallel()
		// Said once per outage, however many polls ask it.
		var logs syncbuf.Buffer
		g := &gate{err: errors.New("limiter down")}
		ran, _ := run(t, g, 5, func(o *jobs.RunnerOptions) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
		eventually(t, "every job with the limiter down", func() bool { return len(ran()) == 5 })
		eventually(t, "a few more polls", func() bool { return len(g.seen()) >= 5 })
		if n := strings.Count(logs.String(), "rate limiter failed"); n != 1 {
			t.Errorf("the outage logged %d times over %d polls, want once:\n%s", n, len(g.seen()), logs.String())
		}
		g.heal()
		eventually(t, "the limiter's return logged", func() bool { return strings.Contains(logs.String(), "rate limiter answers again") })
	})
}

// gate is a ratelimit.Limiter that allows tokens, then refuses until
// opened, or always fails with err.
type gate struct {
	mu       sync.Mutex
	tokens   int
	isOpen   bool
	err      error
	requests []string // "policy key"
}

func (g *gate) Allow(_ context.Context, p ratelimit.Policy, key string) (ratelimit.Result, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.requests = append(g.requests, p.Name+" "+key)
	switch {
	case g.err != nil:
		return ratelimit.Result{}, g.err
	case g.isOpen:
		return ratelimit.Result{Allowed: true, Limit: p.Limit}, nil
	case g.tokens > 0:
		g.tokens--
		return ratelimit.Result{Allowed: true, Limit: p.Limit, Remaining: g.tokens}, nil
	}
	return ratelimit.Result{Limit: p.Limit, RetryAfter: 20 * time.Millisecond}, nil
}

// heal ends the gate's failures; it allows from then on.
func (g *gate) heal() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.err, g.isOpen = nil, true
}

func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.isOpen = true
}

func (g *gate) seen() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.requests...)
}
