package jobstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"onebox/correlation"
	"onebox/jobs"
)

func testRunner(t *testing.T, newQueue func(t *testing.T) jobs.Queue) {
	t.Run("runs and acks", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		const n = 50
		for i := range n {
			mustSend(t, q, jobs.Message{Kind: "k", Payload: json.RawMessage(fmt.Sprint(i)), RequestID: fmt.Sprint("req-", i)}, jobs.SendOptions{})
		}
		var mu sync.Mutex
		seen := map[string]jobs.Message{}
		calls := 0
		var out outcomes
		r := jobs.NewRunner(q, runnerOptions(t, &out))
		r.Register("k", func(ctx context.Context, m jobs.Message) error {
			mu.Lock()
			defer mu.Unlock()
			seen[m.ID] = m
			calls++
			if correlation.RequestID(ctx) != m.RequestID {
				t.Errorf("handler ctx has request id %q, want the message's %q", correlation.RequestID(ctx), m.RequestID)
			}
			return nil
		}, jobs.KindOptions{Concurrency: 4})
		stop := start(t, r)
		eventually(t, "every job to run", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(seen) == n
		})
		// Acks do not wait for a full batch (AckBatch) or the end of Run:
		// each goes out within AckInterval.
		eventually(t, "every job acked while the Runner runs", func() bool {
			ks := mustStats(t, q).Kinds["k"]
			return ks.Queued+ks.InFlight == 0
		})
		if err := stop(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if calls != n {
			t.Errorf("%d handler calls for %d jobs", calls, n)
		}
		for _, m := range seen {
			if m.Kind != "k" || m.RequestID != "req-"+string(m.Payload) || m.Attempt != 1 {
				t.Errorf("handler got %+v", m)
			}
		}
		// Acks are flushed by the time Run returns.
		if ks := mustStats(t, q).Kinds["k"]; ks.Queued+ks.InFlight != 0 {
			t.Errorf("after Run: %+v, want nothing left", ks)
		}
		if got := out.count("k:ok"); got != n {
			t.Errorf("OnDone ok %d times, want %d", got, n)
		}
	})

	t.Run("backoff", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name       string
			rand       float64
			backoff    time.Duration
			maxBackoff time.Duration
			want       []time.Duration // between the attempts
		}{
			{"no jitter", 0.5, 10 * time.Millisecond, 0, []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}},
			{"jitter low", 0, 10 * time.Millisecond, 0, []time.Duration{8 * time.Millisecond, 16 * time.Millisecond, 32 * time.Millisecond}},
			{"jitter high", math.Nextafter(1, 0), 10 * time.Millisecond, 0, []time.Duration{12 * time.Millisecond, 24 * time.Millisecond, 48 * time.Millisecond}},
			{"capped", 0.5, time.Second, 3 * time.Second, []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				q := &recorder{Queue: newQueue(t)}
				mustSend(t, q, jobs.Message{Kind: "k"}, jobs.SendOptions{})
				// A clock stopped in the past: every retry time is already
				// due, and its distance from the clock is exactly the wait.
				t0 := time.Now().Add(-24 * time.Hour)
				var out outcomes
				o := runnerOptions(t, &out)
				o.Now = func() time.Time { return t0 }
				o.Rand = func() float64 { return tt.rand }
				r := jobs.NewRunner(q, o)
				var calls atomic.Int32
				r.Register("k", func(ctx context.Context, m jobs.Message) error {
					calls.Add(1)
					return fmt.Errorf("attempt %d failed", m.Attempt)
				}, jobs.KindOptions{MaxAttempts: len(tt.want) + 1, Backoff: tt.backoff, MaxBackoff: tt.maxBackoff})
				start(t, r)
				d := mustDeadOne(t, q)

				if d.Attempt != len(tt.want)+1 || d.LastError != fmt.Sprintf("attempt %d failed", len(tt.want)+1) {
					t.Errorf("dead at attempt %d with %q, want attempt %d with its error", d.Attempt, d.LastError, len(tt.want)+1)
				}
				if got := int(calls.Load()); got != len(tt.want)+1 {
					t.Errorf("handler called %d times, want %d", got, len(tt.want)+1)
				}
				retries := q.retryCalls()
				if len(retries) != len(tt.want) {
					t.Fatalf("%d retries, want %d: %+v", len(retries), len(tt.want), retries)
				}
				for i, rc := range retries {
					if got := rc.at.Sub(t0); got < tt.want[i]-time.Microsecond || got > tt.want[i]+time.Microsecond {
						t.Errorf("retry %d after %v, want %v", i+1, got, tt.want[i])
					}
					if want := fmt.Sprintf("attempt %d failed", i+1); rc.lastErr != want {
						t.Errorf("retry %d recorded %q, want %q", i+1, rc.lastErr, want)
					}
				}
				want := strings.Repeat("k:retry ", len(tt.want)) + "k:dead"
				// OnDone runs after the dead letter is written, which is
				// what mustDeadOne waited for.
				eventually(t, "the dead outcome", func() bool { return out.count("k:dead") == 1 })
				if got := strings.Join(out.all(), " "); got != want {
					t.Errorf("outcomes %q, want %q", got, want)
				}
			})
		}
	})

	t.Run("permanent error", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		mustSend(t, q, jobs.Message{Kind: "k", Payload: json.RawMessage(`"corrupt"`)}, jobs.SendOptions{})
		var out outcomes
		r := jobs.NewRunner(q, runnerOptions(t, &out))
		var calls atomic.Int32
		dead := make(chan string, 2)
		r.Register("k", func(ctx context.Context, m jobs.Message) error {
			calls.Add(1)
			return fmt.Errorf("decode photo: %w", jobs.ErrPermanent)
		}, jobs.KindOptions{MaxAttempts: 5, OnDead: func(_ context.Context, m jobs.Message, reason string) error {
			dead <- string(m.Payload) + " " + reason
			return nil
		}})
		start(t, r)
		d := mustDeadOne(t, q)
		if got := receiveFrom(t, dead); !strings.HasPrefix(got, `"corrupt" `) || !strings.Contains(got, "decode photo") {
			t.Errorf("OnDead heard %q, want the payload and the reason", got)
		}
		if d.Attempt != 1 || !strings.Contains(d.LastError, "decode photo") || string(d.Payload) != `"corrupt"` {
			t.Errorf("dead %+v, want attempt 1, the error, the payload", d)
		}
		eventually(t, "the dead outcome", func() bool { return out.count("k:dead") == 1 })
		if calls.Load() != 1 || strings.Join(out.all(), " ") != "k:dead" {
			t.Errorf("%d calls, outcomes %v; want 1 and k:dead", calls.Load(), out.all())
		}
	})

	t.Run("unknown kind", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		mustSend(t, q, jobs.Message{Kind: "mystery", Payload: json.RawMessage(`1`)}, jobs.SendOptions{})
		mustSend(t, q, jobs.Message{Kind: "mystery", Payload: json.RawMessage(`2`)}, jobs.SendOptions{})
		mustSend(t, q, jobs.Message{Kind: "known"}, jobs.SendOptions{})
		var out outcomes
		r := jobs.NewRunner(q, runnerOptions(t, &out))
		var ran atomic.Bool
		r.Register("known", func(ctx context.Context, m jobs.Message) error {
			ran.Store(true)
			return nil
		}, jobs.KindOptions{})
		start(t, r)
		eventually(t, "both unknown jobs to be dead", func() bool { return len(mustDead(t, q, 10)) == 2 })
		for _, d := range mustDead(t, q, 10) {
			if d.Kind != "mystery" || d.LastError != `no handler for kind "mystery"` {
				t.Errorf("dead %+v, want kind mystery, no handler", d)
			}
		}
		eventually(t, "the known job to run", ran.Load)
	})

	t.Run("handler timeout", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		mustSend(t, q, jobs.Message{Kind: "k"}, jobs.SendOptions{})
		r := jobs.NewRunner(q, runnerOptions(t, nil))
		r.Register("k", func(ctx context.Context, m jobs.Message) error {
			<-ctx.Done()
			return ctx.Err()
		}, jobs.KindOptions{Timeout: 50 * time.Millisecond, MaxAttempts: 1})
		start(t, r)
		if d := mustDeadOne(t, q); !strings.Contains(d.LastError, context.DeadlineExceeded.Error()) {
			t.Errorf("dead with %q, want a deadline", d.LastError)
		}
	})

	t.Run("abandons a handler that ignores its ctx", func(t *testing.T) {
		t.Parallel()
		q := &recorder{Queue: newQueue(t)}
		mustSend(t, q, jobs.Message{Kind: "k", Payload: json.RawMessage(`"stuck"`)}, jobs.SendOptions{})
		mustSend(t, q, jobs.Message{Kind: "k", Payload: json.RawMessage(`"next"`)}, jobs.SendOptions{})
		// A heartbeat every 100 ms, the visibility three of them: a
		// tighter lease (20 ms) lapsed under load before its Extend,
		// and the stuck job was received again.
		const heartbeat = 100 * time.Millisecond
		o := runnerOptions(t, nil)
		o.Visibility = 3 * heartbeat
		r := jobs.NewRunner(q, o)
		stuck := make(chan string, 1)
		release := make(chan struct{})
		var releaseOnce sync.Once
		unblock := func() { releaseOnce.Do(func() { close(release) }) }
		nextRan := make(chan struct{}, 1)
		r.Register("k", func(ctx context.Context, m jobs.Message) error {
			if string(m.Payload) == `"stuck"` {
				stuck <- m.ID
				<-release  // ignoring ctx
				return nil // late: must not ack the retried message
			}
			nextRan <- struct{}{}
			return nil
		}, jobs.KindOptions{Concurrency: 1, Timeout: 250 * time.Millisecond, Grace: 50 * time.Millisecond, MaxAttempts: 3, Backoff: time.Hour})
		stop := start(t, r)
		t.Cleanup(unblock) // before the Runner stops: cleanups run last first
		id := receiveFrom(t, stuck)

		// The one slot is freed: the next job runs while the stuck one
		// still blocks.
		receiveFrom(t, nextRan)
		if n := r.Abandoned(); n != 1 {
			t.Errorf("Abandoned() = %d while the handler is stuck, want 1", n)
		}
		// Its attempt failed through the retry path.
		var retried []retryCall
		eventually(t, "the stuck job's retry", func() bool {
			retried = q.retryCalls()
			return len(retried) > 0
		})
		if len(retried) != 1 || retried[0].id != id || !strings.Contains(retried[0].lastErr, jobs.ErrAbandoned.Error()) {
			t.Errorf("retries %+v, want one of %s with %q", retried, id, jobs.ErrAbandoned)
		}
		// Its heartbeat stopped before the retry (the attempt returned
		// first): no Extend in several heartbeat intervals after it.
		extends := q.extendCallsOf(id)
		lapsed := time.Now().Add(4 * heartbeat)
		eventually(t, "four heartbeat intervals", func() bool { return time.Now().After(lapsed) })
		if n := q.extendCallsOf(id); n != extends {
			t.Errorf("%d Extend calls of the abandoned job after its retry, want none", n-extends)
		}

		unblock()
		eventually(t, "the abandoned handler to return", func() bool { return r.Abandoned() == 0 })
		// Its late nil is discarded: the message waits for its retry, an
		// hour away, unacked. Stopping the Runner flushes any ack.
		if err := stop(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if ks := mustStats(t, q).Kinds["k"]; ks.Queued != 1 {
			t.Errorf("after the late return: %+v, want the stuck job still queued for its retry", ks)
		}
	})

	t.Run("abandoned on its last attempt", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		mustSend(t, q, jobs.Message{Kind: "k"}, jobs.SendOptions{})
		release := make(chan struct{})
		var releaseOnce sync.Once
		unblock := func() { releaseOnce.Do(func() { close(release) }) }
		r := jobs.NewRunner(q, runnerOptions(t, nil))
		r.Register("k", func(ctx context.Context, m jobs.Message) error {
			<-release // ignoring ctx
			return nil
		}, jobs.KindOptions{Timeout: 20 * time.Millisecond, Grace: 10 * time.Millisecond, MaxAttempts: 1})
		start(t, r)
		t.Cleanup(unblock) // before the Runner stops: cleanups run last first
		if d := mustDeadOne(t, q); d.Attempt != 1 || !strings.Contains(d.LastError, jobs.ErrAbandoned.Error()) {
			t.Errorf("dead %+v, want attempt 1 with %q", d, jobs.ErrAbandoned)
		}
		if n := r.Abandoned(); n != 1 {
			t.Errorf("Abandoned() = %d, want 1", n)
		}
		unblock()
		eventually(t, "the abandoned handler to return", func() bool { return r.Abandoned() == 0 })
	})

	t.Run("panic", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		mustSend(t, q, jobs.Message{Kind: "k"}, jobs.SendOptions{})
		var out outcomes
		r := jobs.NewRunner(q, runnerOptions(t, &out))
		r.Register("k", func(ctx context.Context, m jobs.Message) error {
			if m.Attempt == 1 {
				panic("nil map")
			}
			return nil
		}, jobs.KindOptions{Backoff: time.Millisecond})
		start(t, r)
		eventually(t, "the second attempt to succeed", func() bool { return out.count("k:ok") == 1 })
		if got := strings.Join(out.all(), " "); got != "k:retry k:ok" {
			t.Errorf("outcomes %q, want a retry then ok", got)
		}
	})

	t.Run("attempts used up by lost workers", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		mustSend(t, q, jobs.Message{Kind: "k"}, jobs.SendOptions{})
		// Two workers received it and died before a verdict.
		const visibility = 100 * time.Millisecond
		for range 2 {
			mustReceiveOne(t, q, "k", visibility)
		}
		r := jobs.NewRunner(q, runnerOptions(t, nil))
		var calls atomic.Int32
		dead := make(chan string, 2)
		r.Register("k", func(ctx context.Context, m jobs.Message) error {
			calls.Add(1)
			return nil
		}, jobs.KindOptions{MaxAttempts: 2, Visibility: visibility, OnDead: func(_ context.Context, _ jobs.Message, reason string) error {
			dead <- reason
			return nil
		}})
		start(t, r)
		if d := mustDeadOne(t, q); d.Attempt != 3 || !strings.Contains(d.LastError, "worker lost") {
			t.Errorf("dead %+v, want attempt 3, worker lost", d)
		}
		if got := receiveFrom(t, dead); !strings.Contains(got, "worker lost") {
			t.Errorf("OnDead heard %q, want the worker-lost reason", got)
		}
		if calls.Load() != 0 {
			t.Errorf("handler ran %d times, want 0", calls.Load())
		}
	})

	t.Run("concurrency bound", func(t *testing.T) {
		t.Parallel()
		q := &recorder{Queue: newQueue(t)}
		for range 12 {
			mustSend(t, q, jobs.Message{Kind: "slow"}, jobs.SendOptions{})
		}
		mustSend(t, q, jobs.Message{Kind: "other"}, jobs.SendOptions{})
		r := jobs.NewRunner(q, runnerOptions(t, nil))
		var running, peak, done atomic.Int32
		gate := make(chan struct{}) // the slow jobs hold their slots until it closes
		r.Register("slow", func(ctx context.Context, m jobs.Message) error {
			n := running.Add(1)
			defer running.Add(-1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			<-gate
			done.Add(1)
			return nil
		}, jobs.KindOptions{Concurrency: 3})
		otherRan := make(chan int32, 1)
		r.Register("other", func(ctx context.Context, m jobs.Message) error {
			otherRan <- done.Load()
			return nil
		}, jobs.KindOptions{})
		start(t, r)
		eventually(t, "3 slow jobs to hold their slots", func() bool { return running.Load() >= 3 })
		// The slow kind's full slots do not stand in front of another
		// kind: "other" runs while every slow job is still held.
		if n := receiveFrom(t, otherRan); n != 0 {
			t.Errorf("the other kind ran after %d slow jobs, want while the first 3 were still running", n)
		}
		// Give the loop more turns with the slots full: a runner past its
		// bound would start a fourth job in one of them.
		polls := q.receiveCalls()
		eventually(t, "more polls with the slots full", func() bool { return q.receiveCalls() >= polls+3 })
		if p := peak.Load(); p != 3 {
			t.Errorf("%d slow jobs ran at once, want exactly 3 (Concurrency)", p)
		}
		close(gate)
		eventually(t, "all slow jobs", func() bool { return done.Load() == 12 })
		if p := peak.Load(); p != 3 {
			t.Errorf("at most %d slow jobs ran at once, want exactly 3", p)
		}
	})

	t.Run("a freed slot is taken at once", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		for range 3 {
			mustSend(t, q, jobs.Message{Kind: "k"}, jobs.SendOptions{})
		}
		o := runnerOptions(t, nil)
		// Polls an hour apart: only a finishing job can wake the loop.
		o.PollInterval, o.MaxPollInterval, o.SweepInterval = time.Hour, time.Hour, time.Hour
		r := jobs.NewRunner(q, o)
		started := make(chan chan struct{}, 3)
		r.Register("k", func(ctx context.Context, m jobs.Message) error {
			release := make(chan struct{})
			started <- release
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}, jobs.KindOptions{Concurrency: 2})
		start(t, r)
		first, second := receiveFrom(t, started), receiveFrom(t, started)
		// The kind is full; the first job's end frees a slot, which the
		// third job takes while the second still holds the other.
		close(first)
		third := receiveFrom(t, started)
		close(second)
		close(third)
	})

	t.Run("yields while busy", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		for range 8 {
			mustSend(t, q, jobs.Message{Kind: "bulk"}, jobs.SendOptions{})
		}
		var busy atomic.Bool
		busy.Store(true)
		o := runnerOptions(t, nil)
		o.Busy = busy.Load
		o.BusyPause = time.Millisecond
		r := jobs.NewRunner(q, o)
		var running, peak, done atomic.Int32
		release := make(chan struct{}, 8) // one token lets one job finish
		r.Register("bulk", func(ctx context.Context, m jobs.Message) error {
			n := running.Add(1)
			defer running.Add(-1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			<-release
			done.Add(1)
			return nil
		}, jobs.KindOptions{Concurrency: 4})
		start(t, r)
		// While busy the kind runs one job at a time, and still drains.
		for i := range int32(4) {
			eventually(t, "a job running", func() bool { return running.Load() == 1 && done.Load() == i })
			release <- struct{}{}
		}
		eventually(t, "4 jobs done one at a time", func() bool { return done.Load() == 4 })
		if p := peak.Load(); p != 1 {
			t.Errorf("%d jobs ran at once while busy, want 1", p)
		}
		// No longer busy: the kind fills its slots again.
		busy.Store(false)
		eventually(t, "4 jobs at once", func() bool { return running.Load() == 4 })
		for range 4 {
			release <- struct{}{}
		}
		eventually(t, "all jobs", func() bool { return done.Load() == 8 })
	})

	t.Run("graceful shutdown", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		for range 5 {
			mustSend(t, q, jobs.Message{Kind: "k"}, jobs.SendOptions{})
		}
		started, release := make(chan string, 5), make(chan struct{})
		r := jobs.NewRunner(q, runnerOptions(t, nil))
		r.Register("k", func(ctx context.Context, m jobs.Message) error {
			started <- m.ID
			<-release
			return nil
		}, jobs.KindOptions{Concurrency: 1})
		stop := start(t, r)
		first := receiveFrom(t, started)

		stopped := make(chan error, 1)
		go func() { stopped <- stop() }()
		select {
		case err := <-stopped:
			t.Fatalf("Run returned (%v) while a job was running", err)
		case <-time.After(100 * time.Millisecond):
		}
		close(release)
		if err := receiveFrom(t, stopped); err != nil {
			t.Fatalf("Run: %v", err)
		}
		// The running job finished and was acked; the others were never
		// taken and wait for the next Run.
		if ks := mustStats(t, q).Kinds["k"]; ks.Queued != 4 || ks.InFlight != 0 {
			t.Fatalf("after shutdown: %+v, want 4 queued", ks)
		}
		r2 := jobs.NewRunner(q, runnerOptions(t, nil))
		var mu sync.Mutex
		rest := map[string]int{}
		r2.Register("k", func(ctx context.Context, m jobs.Message) error {
			mu.Lock()
			defer mu.Unlock()
			rest[m.ID] = m.Attempt
			return nil
		}, jobs.KindOptions{Concurrency: 2})
		start(t, r2)
		eventually(t, "the other 4 jobs", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(rest) == 4
		})
		mu.Lock()
		defer mu.Unlock()
		if _, ok := rest[first]; ok {
			t.Errorf("the finished job %s ran again", first)
		}
		for id, attempt := range rest {
			if attempt != 1 {
				t.Errorf("job %s at attempt %d, want 1: it never started before", id, attempt)
			}
		}
	})

	t.Run("drain timeout", func(t *testing.T) {
		t.Parallel()
		q := newQueue(t)
		mustSend(t, q, jobs.Message{Kind: "k"}, jobs.SendOptions{})
		var out outcomes
		o := runnerOptions(t, &out)
		o.Visibility = 300 * time.Millisecond
		o.DrainTimeout = 50 * time.Millisecond
		r := jobs.NewRunner(q, o)
		started := make(chan struct{}, 1)
		r.Register("k", func(ctx context.Context, m jobs.Message) error {
			started <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		}, jobs.KindOptions{})
		stop := start(t, r)
		receiveFrom(t, started)
		if err := stop(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if got := out.all(); len(got) != 0 {
			t.Errorf("outcomes %v for an interrupted job, want none", got)
		}
		// Not lost: it comes back after its visibility timeout.
		o2 := runnerOptions(t, nil)
		o2.Visibility = o.Visibility // the kind's, in every Runner
		r2 := jobs.NewRunner(q, o2)
		attempts := make(chan int, 1)
		r2.Register("k", func(ctx context.Context, m jobs.Message) error {
			attempts <- m.Attempt
			return nil
		}, jobs.KindOptions{})
		start(t, r2)
		if a := receiveFrom(t, attempts); a != 2 {
			t.Errorf("redelivered at attempt %d, want 2", a)
		}
	})

	t.Run("visibility per kind", func(t *testing.T) {
		t.Parallel()
		q := &recorder{Queue: newQueue(t)}
		r := jobs.NewRunner(q, runnerOptions(t, nil))
		const mine = 1234 * time.Millisecond
		ok := func(context.Context, jobs.Message) error { return nil }
		r.Register("mine", ok, jobs.KindOptions{Visibility: mine})
		r.Register("default", ok, jobs.KindOptions{})
		start(t, r)
		eventually(t, "a poll of both kinds", func() bool { return len(q.visibilities()) == 2 })
		want := map[string]time.Duration{"mine": mine, "default": runnerOptions(t, nil).Visibility}
		if got := q.visibilities(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("Receive visibilities %v, want %v", got, want)
		}
	})

	t.Run("heartbeat", func(t *testing.T) {
		t.Parallel()
		q := &recorder{Queue: newQueue(t)}
		mustSend(t, q, jobs.Message{Kind: "k"}, jobs.SendOptions{})
		// Two workers with free slots poll the queue while the job runs
		// well past its visibility timeout; the heartbeat must keep it
		// invisible to both. The visibility leaves a heartbeat (every
		// third of it) a whole second of slack: under the race detector on
		// a loaded machine a 300 ms visibility once lapsed between two
		// heartbeats and the job ran twice.
		const visibility = 1500 * time.Millisecond
		var calls, done atomic.Int32
		for range 2 {
			o := runnerOptions(t, nil)
			o.Visibility = visibility
			r := jobs.NewRunner(q, o)
			r.Register("k", func(ctx context.Context, m jobs.Message) error {
				if calls.Add(1) > 1 {
					return nil // a second delivery: the test has failed
				}
				// Without heartbeats the message is visible again after
				// one visibility timeout; wait for two (the queue's clock
				// is real time), then for every worker to poll again.
				// (A handler may not call t.Fatal: it is not the test's
				// goroutine. The test fails on done never being set.)
				lapsed := time.Now().Add(2 * visibility)
				if !poll(func() bool { return time.Now().After(lapsed) || calls.Load() > 1 }) {
					return errors.New("gave up")
				}
				polls := q.receiveCalls()
				if !poll(func() bool { return q.receiveCalls() >= polls+4 || calls.Load() > 1 }) {
					return errors.New("gave up")
				}
				done.Add(1)
				return nil
			}, jobs.KindOptions{Concurrency: 2})
			start(t, r)
		}
		eventually(t, "the job", func() bool { return done.Load() >= 1 })
		if n := calls.Load(); n != 1 {
			t.Errorf("the job ran %d times, want once", n)
		}
		if n := q.extendCalls(); n < 1 {
			t.Errorf("%d heartbeats (Extend calls) in two visibility timeouts, want at least 1", n)
		}
	})

	t.Run("notify", func(t *testing.T) {
		t.Parallel()
		q := &recorder{Queue: newQueue(t)}
		o := runnerOptions(t, nil)
		o.PollInterval, o.MaxPollInterval = time.Hour, time.Hour
		r := jobs.NewRunner(q, o)
		ran := make(chan struct{}, 1)
		r.Register("k", func(ctx context.Context, m jobs.Message) error {
			ran <- struct{}{}
			return nil
		}, jobs.KindOptions{})
		r.Notify() // before Run: harmless
		start(t, r)
		eventually(t, "the first poll", func() bool { return q.receiveCalls() >= 1 })
		if err := r.Run(t.Context()); err == nil {
			t.Error("a second Run while running: no error")
		}
		// Without Notify the next poll is an hour away.
		mustSend(t, q, jobs.Message{Kind: "k"}, jobs.SendOptions{})
		r.Notify()
		receiveFrom(t, ran)
	})

	t.Run("register", func(t *testing.T) {
		t.Parallel()
		ok := func(context.Context, jobs.Message) error { return nil }
		tests := []struct {
			name string
			do   func(r *jobs.Runner)
		}{
			{"twice", func(r *jobs.Runner) { r.Register("k", ok, jobs.KindOptions{}); r.Register("k", ok, jobs.KindOptions{}) }},
			{"no kind", func(r *jobs.Runner) { r.Register("", ok, jobs.KindOptions{}) }},
			{"no handler", func(r *jobs.Runner) { r.Register("k", nil, jobs.KindOptions{}) }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				r := jobs.NewRunner(newQueue(t), jobs.RunnerOptions{})
				defer func() {
					if recover() == nil {
						t.Error("no panic")
					}
				}()
				tt.do(r)
			})
		}
	})
}

// runnerOptions are fast defaults for tests; out, if not nil, records
// OnDone.
func runnerOptions(t *testing.T, out *outcomes) jobs.RunnerOptions {
	o := jobs.RunnerOptions{
		Logger:          slog.New(slog.NewTextHandler(t.Output(), nil)),
		Visibility:      5 * time.Second,
		PollInterval:    10 * time.Millisecond,
		MaxPollInterval: 50 * time.Millisecond,
	}
	if out != nil {
		o.OnDone = out.onDone
	}
	return o
}

// start runs r until stop is called or the test ends; stop returns what
// Run returned.
func start(t *testing.T, r *jobs.Runner) (stop func() error) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-errc
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// poll is eventually for goroutines other than the test's: it reports
// whether cond held before the suite's wait ran out.
func poll(cond func() bool) bool {
	for deadline := time.Now().Add(wait); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

func receiveFrom[T any](t *testing.T, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(wait):
		t.Fatalf("waited %v", wait)
		panic("unreachable")
	}
}

func mustDeadOne(t *testing.T, q jobs.Queue) jobs.DeadMessage {
	t.Helper()
	eventually(t, "a dead message", func() bool { return len(mustDead(t, q, 10)) > 0 })
	dead := mustDead(t, q, 10)
	if len(dead) != 1 {
		t.Fatalf("Dead = %d messages, want 1", len(dead))
	}
	return dead[0]
}

// outcomes records OnDone calls as "kind:outcome".
type outcomes struct {
	mu   sync.Mutex
	list []string
}

func (o *outcomes) onDone(kind string, _ time.Duration, outcome string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.list = append(o.list, kind+":"+outcome)
}

func (o *outcomes) all() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.list...)
}

func (o *outcomes) count(s string) int {
	n := 0
	for _, v := range o.all() {
		if v == s {
			n++
		}
	}
	return n
}

// recorder is the queue under test with its Receive, Extend and Retry calls
// recorded: a decorator around the real queue, not a mock.
type recorder struct {
	jobs.Queue
	mu       sync.Mutex
	receives int
	visOf    map[string]time.Duration // by kind, of the last Receive
	extends  int
	extendOf map[string]int
	retries  []retryCall
}

type retryCall struct {
	id      string
	at      time.Time
	lastErr string
}

func (r *recorder) Receive(ctx context.Context, kind string, max int, visibility time.Duration) ([]jobs.Message, error) {
	r.mu.Lock()
	r.receives++
	if r.visOf == nil {
		r.visOf = map[string]time.Duration{}
	}
	r.visOf[kind] = visibility
	r.mu.Unlock()
	return r.Queue.Receive(ctx, kind, max, visibility)
}

func (r *recorder) Retry(ctx context.Context, rc jobs.Receipt, at time.Time, lastErr string) error {
	r.mu.Lock()
	r.retries = append(r.retries, retryCall{id: rc.ID, at: at, lastErr: lastErr})
	r.mu.Unlock()
	return r.Queue.Retry(ctx, rc, at, lastErr)
}

func (r *recorder) Extend(ctx context.Context, rc jobs.Receipt, visibility time.Duration) error {
	r.mu.Lock()
	r.extends++
	if r.extendOf == nil {
		r.extendOf = map[string]int{}
	}
	r.extendOf[rc.ID]++
	r.mu.Unlock()
	return r.Queue.Extend(ctx, rc, visibility)
}

func (r *recorder) extendCalls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.extends
}

func (r *recorder) extendCallsOf(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.extendOf[id]
}

func (r *recorder) visibilities() map[string]time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.visOf)
}

func (r *recorder) receiveCalls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.receives
}

func (r *recorder) retryCalls() []retryCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]retryCall(nil), r.retries...)
}
