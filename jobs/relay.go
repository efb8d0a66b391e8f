package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
	// Interval is the wait between two looks at an empty outbox.
	// Default 100ms.
	Interval time.Duration
	// Batch is the most rows of a kind one look takes. Default 100.
	Batch int
}

// Relay moves jobs committed to an outbox (the store's own queue table,
// read as a Consumer) to an external broker, at least once: it publishes
// each row with its outbox id as the broker's message id, then marks it
// sent (acks it). A crash between the two resends the row, which the
// broker drops as a duplicate within its window.
type Relay struct {
	outbox Consumer
	broker IDSender
	o      RelayOptions
	log    *slog.Logger
	wake   chan struct{}
}

// NewRelay returns a Relay from outbox to broker.
func NewRelay(outbox Consumer, broker IDSender, o RelayOptions) *Relay {
	o.Visibility = orDefault(o.Visibility, 30*time.Second)
	o.Interval = orDefault(o.Interval, 100*time.Millisecond)
	o.Batch = orDefault(o.Batch, 100)
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Relay{outbox: outbox, broker: broker, o: o, log: log, wake: make(chan struct{}, 1)}
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
// outbox and comes back after Visibility.
func (r *Relay) Once(ctx context.Context) (int, error) {
	st, err := r.outbox.Stats(ctx)
	if err != nil {
		return 0, fmt.Errorf("relay: %w", err)
	}
	kinds := make([]string, 0, len(st.Kinds))
	for kind, ks := range st.Kinds {
		if ks.Queued > 0 {
			kinds = append(kinds, kind)
		}
	}
	slices.Sort(kinds)
	sent := 0
	var errs []error
	for _, kind := range kinds {
		msgs, err := r.outbox.Receive(ctx, kind, r.o.Batch, r.o.Visibility)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var rs []Receipt
		for _, m := range msgs {
			rc := m.Receipt()
			m.ID, m.Attempt, m.Lease = "", 0, ""
			if err := r.broker.SendID(ctx, "outbox-"+rc.ID, m, SendOptions{}); err != nil {
				errs = append(errs, fmt.Errorf("publish %s: %w", rc.ID, err))
				continue
			}
			rs = append(rs, rc)
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
