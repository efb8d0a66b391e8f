package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"onebox/correlation"
	"onebox/ratelimit"
)

// Handler does one job. A nil error acks the message. Any other error
// fails the attempt: the Runner retries the message with backoff, or
// dead-letters it when the error wraps ErrPermanent or the attempts are
// used up. A panic counts as an error. ctx ends after the kind's Timeout,
// and when the Runner stops waiting for handlers at shutdown; handlers
// must return soon after. One that has not returned Grace later is
// abandoned: see ErrAbandoned.
type Handler func(ctx context.Context, m Message) error

// KindOptions tune the jobs of one kind. Zero fields take the defaults.
type KindOptions struct {
	// Concurrency is how many of these jobs run at once. Default 1.
	Concurrency int
	// MaxAttempts is how many deliveries a message gets before it is
	// dead-lettered. Default 5.
	MaxAttempts int
	// Timeout bounds one attempt: its handler's ctx ends then. Default 1m.
	Timeout time.Duration
	// Grace is how long after its ctx ends the Runner waits for a
	// handler before abandoning it (ErrAbandoned). Default 1s.
	Grace time.Duration
	// Backoff is the wait after the first failed attempt; it doubles
	// after each further one, ±20% jitter. Default 1s.
	Backoff time.Duration
	// MaxBackoff caps that wait. Default 1h.
	MaxBackoff time.Duration
	// OnDead, when set, hears of a message of this kind the Runner is
	// about to dead-letter, with the reason, so the work's owner can record
	// that it will not be done (the photo pipeline rejects the photo,
	// which would otherwise stay "processing"). It runs before the dead
	// letter is written, so a crash between the two repeats it rather than
	// skips it: it must be idempotent. Its error is logged.
	OnDead func(ctx context.Context, m Message, reason string) error
	// Visibility is how long a received message of this kind stays
	// invisible to other workers; the Runner extends it every third of
	// it while the handler runs. It is the kind's, not a call's: on
	// JetStream it is the kind's consumer's AckWait. Default
	// RunnerOptions.Visibility.
	Visibility time.Duration
	// Rate, when its Limit is set, caps how many of these jobs start per
	// Window, with a token bucket of RunnerOptions.Limiter keyed by the
	// kind (the same limiter, shared by every instance on Redis, as the
	// API's). Jobs over it wait in the queue, not fail: the Runner
	// receives no more of the kind than it holds tokens for, and asks
	// again when the limiter says one is due. Default: no cap.
	Rate ratelimit.Policy
}

// RunnerOptions configure NewRunner. Zero fields take the defaults.
type RunnerOptions struct {
	// Logger gets a line for every failed, retried or dead-lettered job.
	// Default: discard.
	Logger *slog.Logger
	// Visibility is the default of KindOptions.Visibility, and the
	// visibility the sweep receives unhandled kinds with. While a handler
	// runs, the Runner extends its message every Visibility/3, so only a
	// worker that died lets it reappear, after at most Visibility.
	// Default 30s.
	Visibility time.Duration
	// PollInterval is the wait before asking again for a kind that had no
	// work; it doubles while the kind stays idle, up to MaxPollInterval.
	// Notify skips the wait. Default 100ms.
	PollInterval time.Duration
	// MaxPollInterval caps the idle wait. Default 2s.
	MaxPollInterval time.Duration
	// BatchSize is the most messages one Receive takes. Default 100.
	BatchSize int
	// DrainTimeout is how long Run waits, once its ctx is done, for
	// running handlers before it cancels their contexts. Default 30s.
	DrainTimeout time.Duration
	// AckInterval and AckBatch: finished messages are acked together,
	// AckInterval after the first of them finished or as soon as AckBatch
	// of them did. Defaults: the queue's AckInterval if it is an
	// AckPacer, else 5ms; 500.
	AckInterval time.Duration
	AckBatch    int
	// SweepInterval is how often the Runner looks, through Queue.Stats,
	// for kinds it has no handler for, and dead-letters their messages.
	// Default 30s; the first sweep is when Run starts.
	SweepInterval time.Duration
	// Now and Rand (in [0, 1)) drive backoff; for tests. Defaults
	// time.Now and math/rand/v2's Float64.
	Now  func() time.Time
	Rand func() float64
	// OnDone, if set, is called after each attempt that reached a
	// verdict, with how long it took and the outcome: "ok", "retry" or
	// "dead". An attempt cut short by shutdown is not reported: its
	// message is delivered again. It must be quick and safe for
	// concurrent use.
	OnDone func(kind string, d time.Duration, outcome string)
	// Busy, if set, reports whether the foreground (the API) needs the
	// CPU now. Goroutines have no priorities, so while it does the
	// Runner yields: each kind runs at most one job at a time and
	// receives at most once every BusyPause. A backlog then drains
	// slowly instead of taking the CPU from requests, and never stops
	// draining. It is called once a turn of the poll loop; it must be
	// quick and safe for concurrent use.
	Busy func() bool
	// BusyPause is the wait between receives of a kind while Busy.
	// Default 10ms.
	BusyPause time.Duration
	// Limiter holds the token buckets of the kinds with a Rate. Required
	// if any kind has one. When it fails, jobs run uncapped (and it is
	// logged): a limiter outage must not stop the work.
	Limiter ratelimit.Limiter
	// OnAbandoned, if set, is called with +1 when a handler is abandoned
	// (ErrAbandoned) and with -1 when such a handler finally returns: a
	// gauge of the goroutines Abandoned counts. It must be quick and safe
	// for concurrent use.
	OnAbandoned func(kind string, delta int)
	// OnLeaseLost, if set, is called when the queue refused to settle an
	// attempt (ack, retry or dead letter) because the message was
	// received again after its visibility lapsed (ErrLeaseLost): the
	// attempt's result is discarded, and the worker now holding the
	// message settles it. It must be quick and safe for concurrent use.
	OnLeaseLost func(kind string)
}

// ErrAbandoned is the error of an attempt whose handler did not return
// within its kind's Timeout and Grace: it ignores its ctx. The Runner
// stops the heartbeat, frees the slot and settles the attempt as failed
// (retry, or dead letter once the attempts are used up), so a stuck
// handler neither holds its message forever nor starves its kind. The
// handler's goroutine cannot be killed: it runs on, counted by
// Runner.Abandoned until it returns, and its result is discarded.
var ErrAbandoned = errors.New("abandoned: handler did not return within its timeout")

// Runner receives messages from a Queue and runs their kind's Handler,
// with bounded concurrency per kind, heartbeats, retries with backoff
// and dead-lettering. Register every kind, then Run.
type Runner struct {
	q     Consumer
	o     RunnerOptions
	log   *slog.Logger
	kinds map[string]*kind
	order []*kind // by name: the poll order

	wake  chan struct{} // Notify
	freed chan struct{} // a handler finished, so a slot is free

	abandoned atomic.Int64 // handler goroutines still running after ErrAbandoned

	mu      sync.Mutex
	running bool
}

// kind is one registered kind. slots is its semaphore: the poll loop
// fills it, finishing workers drain it. The poll loop alone uses the
// rest: next is when to ask the queue again, delay the idle backoff,
// partial since when some but not all slots are free, tokens those of
// its Rate taken from the limiter and not yet spent on a job.
type kind struct {
	name    string
	h       Handler
	o       KindOptions
	slots   chan struct{}
	next    time.Time
	delay   time.Duration
	partial time.Time
	tokens  int
	// limiterDown is set while Rate's limiter fails, so the outage is
	// logged once, not on every poll.
	limiterDown bool
}

// NewRunner returns a Runner on q.
func NewRunner(q Consumer, o RunnerOptions) *Runner {
	if q == nil {
		panic("jobs: NewRunner with a nil Queue")
	}
	o.Visibility = orDefault(o.Visibility, 30*time.Second)
	o.PollInterval = orDefault(o.PollInterval, 100*time.Millisecond)
	o.MaxPollInterval = max(orDefault(o.MaxPollInterval, 2*time.Second), o.PollInterval)
	o.BatchSize = orDefault(o.BatchSize, 100)
	o.DrainTimeout = orDefault(o.DrainTimeout, 30*time.Second)
	if o.AckInterval <= 0 {
		o.AckInterval = AckIntervalOf(q)
	}
	o.AckInterval = orDefault(o.AckInterval, 5*time.Millisecond)
	o.AckBatch = orDefault(o.AckBatch, 500)
	o.SweepInterval = orDefault(o.SweepInterval, 30*time.Second)
	o.BusyPause = orDefault(o.BusyPause, 10*time.Millisecond)
	if o.Busy == nil {
		o.Busy = func() bool { return false }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.OnDone == nil {
		o.OnDone = func(string, time.Duration, string) {}
	}
	if o.OnAbandoned == nil {
		o.OnAbandoned = func(string, int) {}
	}
	if o.OnLeaseLost == nil {
		o.OnLeaseLost = func(string) {}
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runner{
		q: q, o: o, log: log,
		kinds: map[string]*kind{},
		wake:  make(chan struct{}, 1),
		freed: make(chan struct{}, 1),
	}
}

// orDefault is cmp.Or for options, where a negative value is as unset as 0.
func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Register sets the handler of kind. It panics on an empty kind, a nil
// handler, a kind registered twice, a Rate that is invalid or has no
// Limiter, or a call after Run started: all programmer errors.
func (r *Runner) Register(name string, h Handler, o KindOptions) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case name == "" || h == nil:
		panic("jobs: Register needs a kind and a handler")
	case r.running:
		panic("jobs: Register after Run")
	case r.kinds[name] != nil:
		panic(fmt.Sprintf("jobs: kind %q registered twice", name))
	case o.Rate.Limit > 0 && r.o.Limiter == nil:
		panic(fmt.Sprintf("jobs: kind %q has a Rate and the Runner no Limiter", name))
	}
	if o.Rate.Limit > 0 {
		if err := o.Rate.Validate(); err != nil {
			panic(fmt.Sprintf("jobs: kind %q: %v", name, err))
		}
	}
	o.Concurrency = orDefault(o.Concurrency, 1)
	o.MaxAttempts = orDefault(o.MaxAttempts, 5)
	o.Timeout = orDefault(o.Timeout, time.Minute)
	o.Grace = orDefault(o.Grace, time.Second)
	o.Backoff = orDefault(o.Backoff, time.Second)
	o.MaxBackoff = orDefault(o.MaxBackoff, time.Hour)
	o.Visibility = orDefault(o.Visibility, r.o.Visibility)
	k := &kind{name: name, h: h, o: o, slots: make(chan struct{}, o.Concurrency)}
	r.kinds[name] = k
	r.order = append(r.order, k)
	slices.SortFunc(r.order, func(a, b *kind) int { return cmp.Compare(a.name, b.name) })
}

// Abandoned is how many abandoned handlers (ErrAbandoned) are still
// running. Each holds a goroutine and whatever it allocated; a readiness
// check turns the process unready past a cap of them, since only a
// restart reclaims what they hold.
func (r *Runner) Abandoned() int { return int(r.abandoned.Load()) }

// Notify tells the Runner that work is waiting, so it asks the queue
// within a couple of milliseconds instead of after its poll interval
// (the short wait lets a burst of Notify calls share one Receive). It
// never blocks; call it after the transaction that enqueued the job
// committed.
func (r *Runner) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run receives and runs jobs until ctx is done. Then it stops receiving
// and waits up to DrainTimeout for running handlers, cancels the
// contexts of those still running and waits for them to return, or
// abandons them after their kind's Grace. Their
// messages, unacked, are delivered again after their visibility timeout:
// nothing is lost. Run returns an error if it is already running or if
// the last acks could not be written (those jobs will run again).
func (r *Runner) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.running {
		r.mu.Unlock()
		return errors.New("jobs: Runner already running")
	}
	r.running = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.running = false
		r.mu.Unlock()
	}()

	names := make([]string, len(r.order))
	for i, k := range r.order {
		names[i] = k.name
	}
	r.log.InfoContext(ctx, "jobs: runner started", "kinds", names)

	// Handlers outlive ctx by up to DrainTimeout.
	handlerCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	acks := newAcker(handlerCtx, r.q, r.log, r.o.AckInterval, r.o.AckBatch, r.o.OnLeaseLost)
	var wg sync.WaitGroup
	r.poll(ctx, handlerCtx, &wg, acks)

	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	drain := time.NewTimer(r.o.DrainTimeout)
	defer drain.Stop()
	select {
	case <-done:
	case <-drain.C:
		r.log.WarnContext(ctx, "jobs: drain timeout, cancelling running jobs", "timeout", r.o.DrainTimeout)
		cancelHandlers()
		<-done
	}
	err := acks.close()
	r.log.InfoContext(ctx, "jobs: runner stopped")
	return err
}

// gather is how long the poll loop waits to take one batch for several
// free slots of a kind rather than one statement per slot, and to let a
// burst of Notify calls gather: short jobs finish together, and every
// Receive is a write on the one writer connection. Long jobs hardly
// notice the delay.
const gather = 2 * time.Millisecond

// poll is the receive loop. For each kind with free slots whose poll is
// due, it receives at most that many messages, so a message is never
// held waiting for a slot, and a backlog of one kind never delays
// another.
func (r *Runner) poll(ctx, handlerCtx context.Context, wg *sync.WaitGroup, acks *acker) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	nextSweep := time.Now()
	for ctx.Err() == nil {
		now := time.Now()
		wait := r.o.MaxPollInterval
		busy := r.o.Busy()
		if busy {
			wait = r.o.BusyPause // look again soon: the API may be done
		}
		for _, k := range r.order {
			free := cap(k.slots) - len(k.slots)
			if busy {
				free = max(0, 1-len(k.slots))
			}
			if free == 0 {
				k.partial = time.Time{}
				continue // a finishing handler wakes the loop
			}
			if d := k.next.Sub(now); d > 0 {
				wait = min(wait, d)
				continue
			}
			if free < cap(k.slots) && !busy {
				if k.partial.IsZero() {
					k.partial = now
				}
				if d := k.partial.Add(gather).Sub(now); d > 0 {
					wait = min(wait, d)
					continue
				}
			}
			k.partial = time.Time{}
			n, due := r.admit(ctx, k, min(free, r.o.BatchSize))
			if n == 0 {
				// Over its rate: the jobs wait in the queue until a token
				// is due.
				k.next = now.Add(due)
				wait = min(wait, due)
				continue
			}
			msgs, err := r.q.Receive(ctx, k.name, n, k.o.Visibility)
			k.tokens -= min(len(msgs), k.tokens)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				r.log.ErrorContext(ctx, "jobs: receive", "kind", k.name, "error", err)
				k.delay = r.o.MaxPollInterval
			}
			for _, m := range msgs {
				k.slots <- struct{}{}
				wg.Add(1)
				go r.work(handlerCtx, k, m, acks, wg)
			}
			switch {
			case err != nil:
			case len(msgs) == n:
				// Maybe more: ask again as soon as there are free slots,
				// at once if a batch was smaller than them.
				k.delay = 0
				if len(k.slots) < cap(k.slots) {
					k.partial, wait = now.Add(-gather), 0
				}
			case len(msgs) > 0:
				k.delay = r.o.PollInterval // the kind is drained for now
			default:
				k.delay = min(max(2*k.delay, r.o.PollInterval), r.o.MaxPollInterval)
			}
			if busy {
				k.delay = max(k.delay, r.o.BusyPause)
			}
			k.next = now.Add(k.delay)
			if k.delay > 0 {
				wait = min(wait, k.delay)
			}
		}
		if !now.Before(nextSweep) {
			r.sweep(ctx)
			nextSweep = time.Now().Add(r.o.SweepInterval)
		}
		wait = min(wait, time.Until(nextSweep))
		if wait <= 0 {
			continue
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
		case <-r.wake:
			soon := time.Now().Add(gather)
			for _, k := range r.order {
				if k.next.After(soon) {
					k.next = soon
				}
				k.delay = 0
			}
		case <-r.freed:
		case <-timer.C:
		}
	}
}

// admit returns how many of want jobs of k may start now under its
// Rate, taking tokens from the limiter up to want; with none, it also
// returns when one is due. Tokens a Receive did not spend stay with the
// kind for its next one, so an idle kind holds at most Concurrency of
// them and never asks the limiter for more.
func (r *Runner) admit(ctx context.Context, k *kind, want int) (int, time.Duration) {
	if k.o.Rate.Limit <= 0 {
		return want, 0
	}
	for k.tokens < want {
		res, err := r.o.Limiter.Allow(ctx, k.o.Rate, k.name)
		if err != nil {
			if ctx.Err() == nil && !k.limiterDown {
				k.limiterDown = true
				r.log.WarnContext(ctx, "jobs: rate limiter failed, running the kind uncapped until it answers", "kind", k.name, "error", err)
			}
			return want, 0
		}
		if k.limiterDown {
			k.limiterDown = false
			r.log.InfoContext(ctx, "jobs: rate limiter answers again, the kind is capped", "kind", k.name)
		}
		if !res.Allowed {
			return k.tokens, max(res.RetryAfter, time.Millisecond)
		}
		k.tokens++
	}
	return want, 0
}

// sweep dead-letters the messages of kinds with no handler, which would
// otherwise wait forever. Queue.Stats names the kinds present.
func (r *Runner) sweep(ctx context.Context) {
	st, err := r.q.Stats(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.ErrorContext(ctx, "jobs: stats for the sweep", "error", err)
		}
		return
	}
	for name, ks := range st.Kinds {
		if r.kinds[name] != nil || ks.Queued == 0 {
			continue
		}
		reason := fmt.Sprintf("no handler for kind %q", name)
		for ctx.Err() == nil {
			msgs, err := r.q.Receive(ctx, name, r.o.BatchSize, r.o.Visibility)
			if err != nil {
				if ctx.Err() == nil {
					r.log.ErrorContext(ctx, "jobs: receive", "kind", name, "error", err)
				}
				break
			}
			for _, m := range msgs {
				r.logger(m).ErrorContext(ctx, "jobs: "+reason+", dead-lettering")
				if err := r.q.DeadLetter(ctx, m.Receipt(), reason); err != nil {
					r.settleFailed(ctx, m, "dead-letter", err)
					continue
				}
				r.o.OnDone(name, 0, "dead")
			}
			if len(msgs) < r.o.BatchSize {
				break
			}
		}
	}
}

// queueOpTimeout bounds the queue calls that settle an attempt; they run
// after the handler, whatever its ctx became.
const queueOpTimeout = 10 * time.Second

// work runs one message and settles it: ack, retry or dead-letter.
// handlerCtx is cancelled only when draining at shutdown times out.
func (r *Runner) work(handlerCtx context.Context, k *kind, m Message, acks *acker, wg *sync.WaitGroup) {
	defer wg.Done()
	defer func() {
		<-k.slots
		select {
		case r.freed <- struct{}{}:
		default:
		}
	}()

	start := r.o.Now()
	if m.Attempt > k.o.MaxAttempts {
		// Earlier deliveries never reached a verdict: their worker died
		// (a crash, an OOM kill) or lost the message. Running it again
		// could crash this one too.
		r.deadLetter(handlerCtx, k, m, start, fmt.Sprintf("delivered %d times, at most %d allowed: earlier attempts never finished (worker lost)", m.Attempt, k.o.MaxAttempts))
		return
	}
	err := r.attempt(handlerCtx, k, m)
	switch {
	case err == nil:
		acks.add(m)
		r.o.OnDone(k.name, r.o.Now().Sub(start), "ok")
		if r.log.Enabled(handlerCtx, slog.LevelDebug) {
			r.logger(m).DebugContext(handlerCtx, "jobs: done")
		}
	case handlerCtx.Err() != nil:
		r.logger(m).WarnContext(handlerCtx, "jobs: interrupted by shutdown, will be delivered again", "error", err)
	case errors.Is(err, ErrPermanent), m.Attempt >= k.o.MaxAttempts:
		r.deadLetter(handlerCtx, k, m, start, err.Error())
	default:
		wait := r.backoff(k, m.Attempt)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(handlerCtx), queueOpTimeout)
		defer cancel()
		r.logger(m).WarnContext(ctx, "jobs: failed, will retry", "error", err, "retry_in", wait)
		if err := r.q.Retry(ctx, m.Receipt(), r.o.Now().Add(wait), err.Error()); err != nil {
			// It comes back after its visibility timeout instead.
			r.settleFailed(ctx, m, "retry", err)
		}
		r.o.OnDone(k.name, r.o.Now().Sub(start), "retry")
	}
}

func (r *Runner) deadLetter(handlerCtx context.Context, k *kind, m Message, start time.Time, reason string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(handlerCtx), queueOpTimeout)
	defer cancel()
	r.logger(m).ErrorContext(ctx, "jobs: dead-lettering", "error", reason)
	if k.o.OnDead != nil {
		if err := k.o.OnDead(ctx, m, reason); err != nil {
			r.logger(m).ErrorContext(ctx, "jobs: on dead", "error", err)
		}
	}
	if err := r.q.DeadLetter(ctx, m.Receipt(), reason); err != nil {
		// It comes back after its visibility timeout and dies then.
		r.settleFailed(ctx, m, "dead-letter", err)
	}
	r.o.OnDone(k.name, r.o.Now().Sub(start), "dead")
}

// settleFailed reports a retry or dead letter the queue refused. A lost
// lease is counted and only warned of: the message was received again,
// and its new holder settles it.
func (r *Runner) settleFailed(ctx context.Context, m Message, op string, err error) {
	if errors.Is(err, ErrLeaseLost) {
		r.o.OnLeaseLost(m.Kind)
		r.logger(m).WarnContext(ctx, "jobs: lease lost, result discarded: the message was received again after its visibility timeout", "op", op)
		return
	}
	r.logger(m).ErrorContext(ctx, "jobs: "+op, "error", err)
}

// attempt calls the handler with the kind's timeout, a heartbeat and a
// recover. It returns once the heartbeat has stopped, so no Extend can
// undo the Retry that may follow. A handler still running Grace after its
// ctx ended is abandoned: attempt returns ErrAbandoned and the handler's
// late result goes nowhere.
func (r *Runner) attempt(handlerCtx context.Context, k *kind, m Message) error {
	ctx, cancel := context.WithTimeout(handlerCtx, k.o.Timeout)
	defer cancel()
	if m.RequestID != "" {
		// The handler's queries, slow-query log lines included, name the
		// request that enqueued the job.
		ctx = correlation.WithRequestID(ctx, m.RequestID)
	}
	// The SQLite writer names the job kind that holds it.
	ctx = correlation.WithOnBehalfOf(ctx, correlation.Job(k.name))
	stop := r.heartbeat(handlerCtx, m, k.o.Visibility)
	defer stop()

	res := make(chan error, 1) // buffered: an abandoned handler's send never blocks
	var abandoned atomic.Bool
	go func() {
		res <- r.call(ctx, k, m)
		// Whoever clears the flag, this goroutine or attempt, uncounts it.
		if abandoned.CompareAndSwap(true, false) {
			r.abandoned.Add(-1)
			r.o.OnAbandoned(k.name, -1)
			r.logger(m).WarnContext(ctx, "jobs: abandoned handler returned at last; its result is discarded")
		}
	}()
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
	}
	grace := time.NewTimer(k.o.Grace)
	defer grace.Stop()
	select {
	case err := <-res:
		return err
	case <-grace.C:
	}
	// Count it before the handler's goroutine can see the flag, so its
	// decrement never comes first; then look once more, for a handler
	// that returned as the grace ran out.
	r.abandoned.Add(1)
	r.o.OnAbandoned(k.name, 1)
	abandoned.Store(true)
	select {
	case err := <-res:
		if abandoned.CompareAndSwap(true, false) {
			r.abandoned.Add(-1)
			r.o.OnAbandoned(k.name, -1)
		}
		return err
	default:
	}
	r.logger(m).ErrorContext(ctx, "jobs: handler ignored its context, abandoning it", "timeout", k.o.Timeout, "grace", k.o.Grace, "abandoned", r.Abandoned())
	return fmt.Errorf("%w (%v, then %v of grace)", ErrAbandoned, k.o.Timeout, k.o.Grace)
}

// call runs the handler, turning a panic into an error.
func (r *Runner) call(ctx context.Context, k *kind, m Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			r.logger(m).ErrorContext(ctx, "jobs: handler panicked", "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return k.h(ctx, m)
}

// heartbeat extends m's visibility every third of it until stop is
// called; stop waits for an Extend under way.
func (r *Runner) heartbeat(handlerCtx context.Context, m Message, visibility time.Duration) (stop func()) {
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		every := visibility / 3
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			// Not handlerCtx itself: a job cancelled at shutdown keeps its
			// message until its handler returns.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(handlerCtx), every)
			err := r.q.Extend(ctx, m.Receipt(), visibility)
			cancel()
			if errors.Is(err, ErrNotFound) {
				r.logger(m).WarnContext(ctx, "jobs: message gone while running (acked or dead-lettered elsewhere)")
				return
			}
			if errors.Is(err, ErrLeaseLost) {
				// Counted when the attempt settles and is refused.
				r.logger(m).WarnContext(ctx, "jobs: lease lost while running: the message was received again")
				return
			}
			if err != nil {
				r.logger(m).ErrorContext(ctx, "jobs: extend", "error", err)
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

// backoff is the wait before retry n (after the n-th attempt failed):
// Backoff·2^(n-1), ±20% jitter, at most MaxBackoff.
func (r *Runner) backoff(k *kind, n int) time.Duration {
	d := float64(k.o.Backoff) * math.Pow(2, float64(n-1))
	d *= 0.8 + 0.4*r.o.Rand()
	return time.Duration(min(d, float64(k.o.MaxBackoff)))
}

func (r *Runner) logger(m Message) *slog.Logger {
	return r.log.With("request_id", m.RequestID, "job_id", m.ID, "kind", m.Kind, "attempt", m.Attempt)
}

// acker collects the receipts of finished messages and acks them
// together, which is where the Runner's throughput comes from: one
// DELETE for many jobs instead of one each.
type acker struct {
	q        Consumer
	log      *slog.Logger
	ctx      context.Context
	interval time.Duration
	batch    int
	lost     func(kind string)
	msgs     chan Message
	done     chan struct{}
	err      error // of the last flush, read after done
}

func newAcker(ctx context.Context, q Consumer, log *slog.Logger, interval time.Duration, batch int, lost func(kind string)) *acker {
	a := &acker{
		q: q, log: log, ctx: context.WithoutCancel(ctx),
		interval: interval, batch: batch, lost: lost,
		msgs: make(chan Message, batch),
		done: make(chan struct{}),
	}
	go a.loop()
	return a
}

// add queues m for the next ack; it blocks while a full batch is being
// written.
func (a *acker) add(m Message) { a.msgs <- m }

// close flushes what is left and stops the acker. No add may follow.
func (a *acker) close() error {
	close(a.msgs)
	<-a.done
	return a.err
}

func (a *acker) loop() {
	defer close(a.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var pending []Message
	for {
		select {
		case m, ok := <-a.msgs:
			if !ok {
				if len(pending) > 0 {
					a.err = a.flush(pending)
				}
				return
			}
			pending = append(pending, m)
			if len(pending) == 1 {
				timer.Reset(a.interval)
			}
			if len(pending) < a.batch {
				continue
			}
		case <-timer.C:
		}
		if err := a.flush(pending); err != nil {
			// Keep them for the next try; until it works, they are only
			// at risk of running twice.
			timer.Reset(a.interval)
			continue
		}
		pending = pending[:0]
		timer.Stop()
	}
}

// flush acks ms. Messages whose lease was lost are counted and dropped:
// their new holders ack them, and the others of the batch were acked.
func (a *acker) flush(ms []Message) error {
	ctx, cancel := context.WithTimeout(a.ctx, queueOpTimeout)
	defer cancel()
	rs := make([]Receipt, len(ms))
	for i, m := range ms {
		rs[i] = m.Receipt()
	}
	err := a.q.Ack(ctx, rs...)
	var lost *LeaseLostError
	if errors.As(err, &lost) {
		for _, m := range ms {
			if slices.Contains(lost.IDs, m.ID) {
				a.lost(m.Kind)
			}
		}
		a.log.WarnContext(ctx, "jobs: lease lost, results discarded: received again after their visibility timeout", "jobs", len(lost.IDs), "job_ids", lost.IDs)
		return nil
	}
	if err != nil {
		a.log.ErrorContext(ctx, "jobs: ack", "jobs", len(ms), "error", err)
		return err
	}
	return nil
}
