package app

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"onebox/jobs"
)

// backlogRecheck is how often the upload bound asks the queue for its
// depth: Queue.Stats is cheap enough every few seconds, not per request.
// Between two looks the count moves with the uploads this process
// accepts, so a burst cannot overshoot the bound by a second's worth.
const backlogRecheck = time.Second

// backlogStatsTimeout bounds the look at the queue's depth.
const backlogStatsTimeout = time.Second

// backlogRetryAfter is what a refused upload is told to wait: long
// enough for the workers to take a few photos off the queue, short enough
// that a person retrying by hand is not put off.
const backlogRetryAfter = 30 * time.Second

// backlog bounds the photos waiting for the pipeline. An upload is cheap
// to accept and expensive to process, so without a bound a burst (or a
// pipeline slowed by a sick dependency) grows the queue, the media disk
// and the wait for every photo behind it without limit; past the bound,
// uploads are refused with 503 and Retry-After until the workers catch
// up, and what was accepted keeps its promise.
type backlog struct {
	queue jobs.Inspector
	kind  string
	max   int // 0: no bound
	now   func() time.Time

	refresh sync.Mutex   // held by the one request that asks the queue
	checked atomic.Int64 // unix nanoseconds of the last look
	depth   atomic.Int64 // queued and in flight, as of the last look, plus accepted since
}

func newBacklog(q jobs.Inspector, kind string, max int, now func() time.Time) *backlog {
	return &backlog{queue: q, kind: kind, max: max, now: now}
}

// admit returns a 503 problem when the backlog is at its bound. A queue
// that cannot be asked leaves the last known depth in force: an upload is
// not refused because the stats query failed, nor admitted past a bound
// it knew of.
func (b *backlog) admit(ctx context.Context) error {
	if b == nil || b.max <= 0 {
		return nil
	}
	now := b.now()
	if now.UnixNano()-b.checked.Load() >= int64(backlogRecheck) && b.refresh.TryLock() {
		// An upload has no API deadline: a stuck stats query must not
		// hold it.
		sctx, cancel := context.WithTimeout(ctx, backlogStatsTimeout)
		st, err := b.queue.Stats(sctx)
		cancel()
		if err == nil {
			ks := st.Kinds[b.kind]
			b.depth.Store(int64(ks.Queued + ks.InFlight))
		}
		b.checked.Store(now.UnixNano()) // also after an error: no stats query per upload while the queue is sick
		b.refresh.Unlock()
	}
	if n := b.depth.Load(); n >= int64(b.max) {
		p := problem(http.StatusServiceUnavailable, "upload-backlog",
			fmt.Sprintf("%d photos are waiting to be processed; uploads resume when fewer than %d are", n, b.max))
		p.retryAfter = backlogRetryAfter
		return p
	}
	return nil
}

// accepted counts an upload this process has just queued, until the next
// look at the queue replaces the count.
func (b *backlog) accepted() {
	if b != nil {
		b.depth.Add(1)
	}
}
