// Package mirror implements media.Storage on two storages: a primary,
// which serves, and a backup, which holds a copy of every object for a
// restore.
//
// Recovery point: zero for every acknowledged write. Put returns only
// once the object is durable in both (the backup's copy is read back
// from the primary, so it is the bytes the primary holds), so an upload
// answered 202 has its original in the backup, and a photo the
// database calls ready has every variant there: losing the primary's
// disk loses no file the database has acknowledged. What can differ is
// the other way round: a Put whose backup copy failed leaves the new
// object in the primary only (the Put fails, and so does the upload or
// the job, which retries), and a Delete whose backup half failed leaves
// the copy in the backup (logged; `onebox reconcile -sweep` removes
// such files, since no row references them).
package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"onebox/media"
)

var _ media.Storage = (*Storage)(nil)

// Storage writes to a primary and a backup and reads from the primary.
type Storage struct {
	primary, backup media.Storage
	log             *slog.Logger
}

// New returns a Storage over primary and backup. Failed backup deletes
// are logged to log.
func New(primary, backup media.Storage, log *slog.Logger) *Storage {
	return &Storage{primary: primary, backup: backup, log: log}
}

// Put stores r in the primary, then copies what the primary holds to the
// backup; it returns the primary's Info once both are durable. A failed
// backup copy fails the Put, so that nothing is acknowledged that the
// backup lacks.
func (s *Storage) Put(ctx context.Context, key string, r io.Reader, contentType string) (media.Info, error) {
	info, err := s.primary.Put(ctx, key, r, contentType)
	if err != nil {
		return media.Info{}, err
	}
	obj, err := s.primary.Open(ctx, key)
	if err != nil {
		return media.Info{}, fmt.Errorf("media/mirror: reading back %q: %w", key, err)
	}
	defer obj.Close()
	if _, err := s.backup.Put(ctx, key, obj, info.ContentType); err != nil {
		return media.Info{}, fmt.Errorf("media/mirror: backup copy: %w", err)
	}
	return info, nil
}

// Open reads from the primary only: the backup is for restores, not a
// second place to serve from (serving from it would hide a damaged
// primary).
func (s *Storage) Open(ctx context.Context, key string) (media.Object, error) {
	return s.primary.Open(ctx, key)
}

// Delete removes keys from the primary, then from the backup. The
// primary's error is returned; the backup's is logged and left for the
// sweep, since the objects are gone from where they are served and a
// retry would only repeat the primary's half.
func (s *Storage) Delete(ctx context.Context, keys ...string) error {
	if err := s.primary.Delete(ctx, keys...); err != nil {
		return err
	}
	if err := s.backup.Delete(ctx, keys...); err != nil {
		s.log.Warn("media/mirror: backup delete failed; `onebox reconcile -sweep` removes the files", "keys", len(keys), "err", err)
	}
	return nil
}

// Stat asks the primary only, as Open does.
func (s *Storage) Stat(ctx context.Context, key string) (media.Info, error) {
	return s.primary.Stat(ctx, key)
}

// OpenRange reads from the primary only, as Open does.
func (s *Storage) OpenRange(ctx context.Context, key string, offset, length int64) (media.Object, error) {
	return s.primary.OpenRange(ctx, key, offset, length)
}

// URL is the primary's.
func (s *Storage) URL(ctx context.Context, key string) (string, error) {
	return s.primary.URL(ctx, key)
}

// tempSweeper is what retention asks of a storage with temp files
// (media/local).
type tempSweeper interface {
	SweepTemp(olderThan time.Duration) (int, error)
}

// SweepTemp sweeps the temp files of both storages that have them.
func (s *Storage) SweepTemp(olderThan time.Duration) (int, error) {
	total := 0
	var errs []error
	for _, st := range []media.Storage{s.primary, s.backup} {
		if ts, ok := st.(tempSweeper); ok {
			n, err := ts.SweepTemp(olderThan)
			total += n
			errs = append(errs, err)
		}
	}
	return total, errors.Join(errs...)
}
