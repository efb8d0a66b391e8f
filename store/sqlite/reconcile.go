package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"onebox/jobs"
	"onebox/store"
)

// What a reconcile after a restore reads and writes (see backup.Reconcile).
const (
	allPhotosSQL = `SELECT ` + photoColumns + ` FROM photos ORDER BY id`
	// A photo goes back to processing with nothing published: its
	// variants are made again, at the same keys.
	reprocessPhotoSQL = `UPDATE photos SET status = 'processing', reason = '', width = 0, height = 0, variants = '[]', updated_at = ?2
WHERE id = ?1 AND status != 'processing'
RETURNING ` + photoColumns
	losePhotoSQL = `UPDATE photos SET status = 'rejected', reason = ?2, width = 0, height = 0, variants = '[]', updated_at = ?3
WHERE id = ?1
RETURNING ` + photoColumns
)

// Photos returns every photo, by id: what a reconcile checks against the
// media files, on the reader pool.
func (s *Store) Photos(ctx context.Context) ([]store.Photo, error) {
	return queryAll(ctx, s, s.reader, "photos_all", allPhotosSQL, scanPhoto)
}

// ReprocessPhoto puts a finished photo back to processing, without
// variants, writes its event and enqueues job (the photo's process job),
// in one transaction, so the pipeline makes its variants again from the
// original. store.ErrNotFound if the photo is gone or already
// processing (its own job is in the queue then).
func (s *Store) ReprocessPhoto(ctx context.Context, id string, job jobs.Message, now time.Time) (store.Photo, error) {
	var ph store.Photo
	err := s.inTx(ctx, "photos_reprocess", func(tx *sql.Tx) error {
		var err error
		ph, err = s.txPhoto(ctx, tx, "photos_reprocess", reprocessPhotoSQL, id, formatTime(now))
		if err != nil {
			return err
		}
		if err := s.insertEvent(ctx, tx, ph.OwnerID, ph.ID, formatTime(now)); err != nil {
			return err
		}
		return s.sendTx(ctx, tx, job)
	})
	if err != nil {
		return store.Photo{}, fmt.Errorf("sqlite: reprocess photo %s: %w", id, err)
	}
	return ph, nil
}

// LosePhoto marks a photo rejected with reason and no variants, and
// writes its event, in one transaction: for a photo whose original is
// gone, which nothing can make again. store.ErrNotFound if it is gone.
func (s *Store) LosePhoto(ctx context.Context, id, reason string, now time.Time) (store.Photo, error) {
	var ph store.Photo
	err := s.inTx(ctx, "photos_lose", func(tx *sql.Tx) error {
		var err error
		ph, err = s.txPhoto(ctx, tx, "photos_lose", losePhotoSQL, id, reason, formatTime(now))
		if err != nil {
			return err
		}
		return s.insertEvent(ctx, tx, ph.OwnerID, ph.ID, formatTime(now))
	})
	if err != nil {
		return store.Photo{}, fmt.Errorf("sqlite: lose photo %s: %w", id, err)
	}
	return ph, nil
}
