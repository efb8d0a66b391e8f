package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"
)

// RelayOptions configure a Relay. Zero fields take the defaults.
type RelayOptions struct {
	// Logger gets a line for every failed publish. Default: discard.
	Logger *slog.Logger
	// Visibility is how long a row taken from the outbox stays invisible:
	// a row published but not yet marked sent when the relay died is sent
	// again after it. The broker's duplicate window must be longer than
	// this plus the longest the relay may be down, or such a resend runs
	// the job twice. Default 30s.
	Visibility time.Duration
	// Interval is the wait between two looks at an empty outbox, and
	// while kinds have rows, between two looks for new kinds.
	// Default 100ms.
	Interval time.Duration
	// Batch is the most rows of a kind one look takes. Default 100.
	Batch int
	// Ahead bounds, per kind, how many jobs wait in the broker: the relay
	// publishes a kind's rows only while the broker's Stats count fewer
	// than Ahead[kind] of them queued (waiting, not running), and leaves
	// the rest in the outbox, whose Receive serves fair keys in turn
	// (jobs/sqlite, jobs/postgres). Through a broker that serves a kind
	// in arrival order, a job then waits for at most that many jobs
	// ahead of it in the broker plus its turn in the outbox, instead of
	// behind every job relayed before it. The broker must have Stats
	// (an Inspector) if it is set. Kinds not in it go at once. Smaller
	// is fairer; too small leaves workers waiting for the relay, which
	// looks again every Interval while the broker is full.
	Ahead map[string]int
}

// Relay moves jobs committed to an outbox (the store's own queue table,
// read as a Consumer) to an external broker, at least once: it publishes
// each row with its outbox id as the broker's message id, then marks it
// sent (acks it) once the broker confirmed it. A crash between the two
// resends the row, which the broker drops as a duplicate within its
// window. A broker that is a BatchIDSender gets each batch at once, and
// only the rows it confirmed are marked; another gets one row at a time.
type Relay struct {
	outbox Consumer
	broker IDSender
	batch  BatchIDSender // the broker, if it is one
	stats  statser       // the broker's, for Ahead
	o      RelayOptions
	log    *slog.Logger
	wake   chan struct{}

	mu     sync.Mutex      // one Once at a time
	active map[string]bool // kinds with rows at the last look
	looked time.Time       // of the last outbox Stats
}

// statser is the part of an Inspector that RelayOptions.Ahead needs.
type statser interface {
	Stats(ctx context.Context) (Stats, error)
}

// NewRelay returns a Relay from outbox to broker. It panics if
// RelayOptions.Ahead is set and broker has no Stats.
func NewRelay(outbox Consumer, broker IDSender, o RelayOptions) *Relay {
	o.Visibility = orDefault(o.Visibility, 30*time.Second)
	o.Interval = orDefault(o.Interval, 100*time.Millisecond)
	o.Batch = orDefault(o.Batch, 100)
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, ok := broker.(statser)
	if len(o.Ahead) > 0 && !ok {
		panic("jobs: NewRelay with Ahead and a broker without Stats")
	}
	batch, _ := broker.(BatchIDSender)
	return &Relay{outbox: outbox, broker: broker, batch: batch, stats: st, o: o, log: log, wake: make(chan struct{}, 1), active: map[string]bool{}}
}

// Notify tells the relay that rows were committed, so it looks now
// rather than after its interval. It never blocks.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run relays until ctx is done.
func (r *Relay) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		case <-t.C:
		}
		n, err := r.Once(ctx)
		if err != nil && ctx.Err() == nil {
			r.log.ErrorContext(ctx, "jobs: relay", "error", err)
		}
		if n == 0 || err != nil {
			t.Reset(r.o.Interval)
		} else {
			t.Reset(0)
		}
	}
}

// Once relays what the outbox holds now, a batch per kind, and returns
// how many rows it marked sent. A row whose publish failed stays in the
// outbox and comes back after Visibility. Calls run one at a time. While
// kinds have rows, a kind new to the outbox waits up to Interval to be
// found (see kinds).
func (r *Relay) Once(ctx context.Context) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	kinds, err := r.kinds(ctx)
	if err != nil {
		return 0, fmt.Errorf("relay: %w", err)
	}
	room, err := r.room(ctx, kinds)
	if err != nil {
		return 0, fmt.Errorf("relay: %w", err)
	}
	sent := 0
	var errs []error
	for _, kind := range kinds {
		n := r.o.Batch
		if left, ok := room[kind]; ok {
			n = min(n, left)
		}
		if n <= 0 {
			continue // the broker holds Ahead of them: the rest wait their turn here
		}
		msgs, err := r.outbox.Receive(ctx, kind, n, r.o.Visibility)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(msgs) == 0 {
			delete(r.active, kind)
			continue
		}
		rs, err := r.publish(ctx, msgs)
		if err != nil {
			errs = append(errs, err)
		}
		err = r.outbox.Ack(ctx, rs...)
		var lost *LeaseLostError
		if errors.As(err, &lost) {
			// This relay stalled past Visibility and another took these
			// rows: it marks them, and the broker dropped our sends of
			// them as duplicates of its.
			r.log.WarnContext(ctx, "jobs: relay lease lost: rows taken by another relay", "rows", len(lost.IDs))
			sent += len(rs) - len(lost.IDs)
			continue
		}
		if err != nil {
			// Published, not marked: resent after Visibility, and dropped
			// by the broker as a duplicate.
			errs = append(errs, fmt.Errorf("mark sent: %w", err))
			continue
		}
		sent += len(rs)
	}
	if err := errors.Join(errs...); err != nil {
		return sent, fmt.Errorf("relay: %w", err)
	}
	return sent, nil
}

// kinds returns the kinds to relay now: those that had rows at the
// last look. It asks the outbox's Stats (a count over its table) only
// when none had, or once an Interval while some do, to find new kinds,
// not on every pass through a backlog.
func (r *Relay) kinds(ctx context.Context) ([]string, error) {
	if len(r.active) == 0 || time.Since(r.looked) >= r.o.Interval {
		st, err := r.outbox.Stats(ctx)
		if err != nil {
			return nil, err
		}
		r.looked = time.Now()
		clear(r.active)
		for kind, ks := range st.Kinds {
			if ks.Queued > 0 {
				r.active[kind] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(r.active)), nil
}

// publish sends msgs to the broker, each with its outbox id as the
// broker's message id, all at once if the broker is a BatchIDSender, and
// returns the receipts of those the broker confirmed: only they are
// marked sent.
func (r *Relay) publish(ctx context.Context, msgs []Message) ([]Receipt, error) {
	batch := make([]IDMessage, len(msgs))
	for i, m := range msgs {
		m.ID, m.Attempt, m.Lease = "", 0, ""
		batch[i] = IDMessage{ID: "outbox-" + msgs[i].ID, Message: m}
	}
	var outcomes []error
	if r.batch != nil {
		outcomes = r.batch.SendIDs(ctx, batch)
		if len(outcomes) != len(batch) {
			return nil, fmt.Errorf("publish: the broker returned %d outcomes for %d messages", len(outcomes), len(batch))
		}
	} else {
		outcomes = make([]error, len(batch))
		for i, im := range batch {
			outcomes[i] = r.broker.SendID(ctx, im.ID, im.Message, im.Options)
		}
	}
	var rs []Receipt
	var errs []error
	for i, m := range msgs {
		if err := outcomes[i]; err != nil {
			errs = append(errs, fmt.Errorf("publish %s: %w", m.ID, err))
			continue
		}
		rs = append(rs, m.Receipt())
	}
	return rs, errors.Join(errs...)
}

// room returns, for those of kinds in Ahead, how many more of their jobs
// the broker may take now; it asks the broker only when one is.
func (r *Relay) room(ctx context.Context, kinds []string) (map[string]int, error) {
	var bounded []string
	for _, kind := range kinds {
		if _, ok := r.o.Ahead[kind]; ok {
			bounded = append(bounded, kind)
		}
	}
	if len(bounded) == 0 {
		return nil, nil
	}
	st, err := r.stats.Stats(ctx)
	if err != nil {
		return nil, fmt.Errorf("broker stats: %w", err)
	}
	room := make(map[string]int, len(bounded))
	for _, kind := range bounded {
		room[kind] = r.o.Ahead[kind] - st.Kinds[kind].Queued
	}
	return room, nil
}
