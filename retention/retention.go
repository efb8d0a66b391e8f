// Package retention deletes what onebox keeps only for a while: the photo
// events that SSE clients replay after Last-Event-ID. Without it the
// events table grows by a few rows per upload, forever.
package retention

import (
	"context"
	"log/slog"
	"time"
)

// Pruner deletes old events in batches (store.Photos has it).
type Pruner interface {
	PruneEvents(ctx context.Context, before time.Time, limit int) (int, error)
}

// Options configure Run and Prune. Keep is required.
type Options struct {
	// Keep is how long an event stays: a client away for longer resumes
	// without the changes it missed and must read the photos again.
	Keep time.Duration
	// Every is how often Run prunes. Default 1h.
	Every time.Duration
	// Batch is how many events one statement deletes, so no statement
	// holds the writer long. Default 1000.
	Batch  int
	Logger *slog.Logger     // default: discard
	Now    func() time.Time // default time.Now
}

func (o Options) withDefaults() Options {
	if o.Every <= 0 {
		o.Every = time.Hour
	}
	if o.Batch <= 0 {
		o.Batch = 1000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Run prunes at once and then every o.Every, until ctx is done. Several
// instances may run it on one database: the deletes do not conflict.
func Run(ctx context.Context, p Pruner, o Options) {
	o = o.withDefaults()
	t := time.NewTicker(o.Every)
	defer t.Stop()
	for {
		if n, err := Prune(ctx, p, o); err != nil && ctx.Err() == nil {
			o.Logger.Warn("pruning events failed", "err", err.Error(), "pruned", n)
		} else if n > 0 {
			o.Logger.Info("events pruned", "count", n, "older_than", o.Keep.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Prune deletes every event older than o.Keep, a batch at a time, and
// returns how many it deleted.
func Prune(ctx context.Context, p Pruner, o Options) (int, error) {
	o = o.withDefaults()
	before := o.Now().Add(-o.Keep)
	total := 0
	for {
		n, err := p.PruneEvents(ctx, before, o.Batch)
		total += n
		if err != nil || n < o.Batch {
			return total, err
		}
	}
}
