// Package retention deletes what onebox keeps only for a while: the photo
// events that SSE clients replay after Last-Event-ID (without it the
// events table grows by a few rows per upload, forever), the expired
// Idempotency-Keys of uploads, old dead-lettered jobs and those beyond a
// count, and the temp files of uploads whose process was killed
// mid-write.
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

// KeyPruner deletes expired idempotency keys in batches (store.Photos
// has it).
type KeyPruner interface {
	PruneIdempotencyKeys(ctx context.Context, now time.Time, limit int) (int, error)
}

// DeadPruner deletes old dead-lettered jobs, and the oldest beyond a
// count, in batches (jobs.Inspector has it).
type DeadPruner interface {
	PruneDead(ctx context.Context, before time.Time, limit int) (int, error)
	PruneDeadBeyond(ctx context.Context, keep, limit int) (int, error)
}

// TempSweeper removes the temp files of writes a killed process left,
// those older than olderThan (media/local has it).
type TempSweeper interface {
	SweepTemp(olderThan time.Duration) (int, error)
}

// tempAge is when a temp file is surely abandoned: uploads have
// minutes-long deadlines.
const tempAge = time.Hour

// Options configure Run and Prune. Keep is required.
type Options struct {
	// Keep is how long an event stays: a client away for longer resumes
	// without the changes it missed and must read the photos again.
	Keep time.Duration
	// Every is how often Run prunes. Default 1h.
	Every time.Duration
	// Batch is how many events or keys one statement deletes, so no
	// statement holds the writer long. Default 1000.
	Batch int
	// Keys, when set, has its expired idempotency keys deleted on each
	// round. Expired keys are never answered, deleted or not: this only
	// bounds the table.
	Keys KeyPruner
	// Dead, when set, has its dead-lettered jobs older than DeadKeep
	// deleted on each round, then the oldest beyond the newest DeadMax,
	// so a job that keeps failing cannot grow the dead letters without
	// bound: the age alone lets a flood within DeadKeep grow them. A zero
	// DeadKeep or DeadMax is no bound of that kind.
	Dead     DeadPruner
	DeadKeep time.Duration
	DeadMax  int
	// Temp, when set, has its abandoned temp files swept on each round.
	Temp   TempSweeper
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

// Run prunes at once and then every o.Every, until ctx is done; a nil p
// (events kept forever) leaves only the keys and temp files to sweep.
// Several instances may run it on one database: the deletes do not
// conflict.
func Run(ctx context.Context, p Pruner, o Options) {
	o = o.withDefaults()
	t := time.NewTicker(o.Every)
	defer t.Stop()
	for {
		if p != nil {
			if n, err := Prune(ctx, p, o); err != nil && ctx.Err() == nil {
				o.Logger.Warn("pruning events failed", "err", err.Error(), "pruned", n)
			} else if n > 0 {
				o.Logger.Info("events pruned", "count", n, "older_than", o.Keep.String())
			}
		}
		if o.Keys != nil {
			if n, err := PruneKeys(ctx, o.Keys, o); err != nil && ctx.Err() == nil {
				o.Logger.Warn("pruning idempotency keys failed", "err", err.Error(), "pruned", n)
			} else if n > 0 {
				o.Logger.Info("expired idempotency keys pruned", "count", n)
			}
		}
		if o.Dead != nil {
			if n, err := PruneDead(ctx, o.Dead, o); err != nil && ctx.Err() == nil {
				o.Logger.Warn("pruning dead jobs failed", "err", err.Error(), "pruned", n)
			} else if n > 0 {
				o.Logger.Info("dead jobs pruned", "count", n, "older_than", o.DeadKeep.String(), "max", o.DeadMax)
			}
		}
		if o.Temp != nil {
			if n, err := o.Temp.SweepTemp(tempAge); err != nil {
				o.Logger.Warn("sweeping temp files failed", "err", err.Error(), "removed", n)
			} else if n > 0 {
				o.Logger.Info("abandoned temp files removed", "count", n)
			}
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
	return inBatches(o.Batch, func(limit int) (int, error) { return p.PruneEvents(ctx, before, limit) })
}

// PruneDead deletes every dead-lettered job that died more than
// o.DeadKeep ago, then the oldest beyond the newest o.DeadMax, a batch
// at a time, and returns how many it deleted.
func PruneDead(ctx context.Context, d DeadPruner, o Options) (int, error) {
	o = o.withDefaults()
	total := 0
	if o.DeadKeep > 0 {
		before := o.Now().Add(-o.DeadKeep)
		n, err := inBatches(o.Batch, func(limit int) (int, error) { return d.PruneDead(ctx, before, limit) })
		if err != nil {
			return n, err
		}
		total = n
	}
	if o.DeadMax > 0 {
		n, err := inBatches(o.Batch, func(limit int) (int, error) { return d.PruneDeadBeyond(ctx, o.DeadMax, limit) })
		return total + n, err
	}
	return total, nil
}

// PruneKeys deletes every idempotency key expired at o.Now, a batch at a
// time, and returns how many it deleted.
func PruneKeys(ctx context.Context, k KeyPruner, o Options) (int, error) {
	o = o.withDefaults()
	now := o.Now()
	return inBatches(o.Batch, func(limit int) (int, error) { return k.PruneIdempotencyKeys(ctx, now, limit) })
}

// inBatches calls del with batch until it deletes fewer, or fails, and
// returns how many it deleted in all.
func inBatches(batch int, del func(limit int) (int, error)) (int, error) {
	total := 0
	for {
		n, err := del(batch)
		total += n
		if err != nil || n < batch {
			return total, err
		}
	}
}
