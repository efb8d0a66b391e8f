package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"onebox/store"
	"onebox/store/internal/sqlutil"
)

// photoColumns is what scanPhoto reads, in its order.
const photoColumns = `id, owner_id, status, reason, width, height, original_key, content_type, size, variants, created_at, updated_at`

const (
	insertPhotoSQL = `INSERT INTO photos (id, owner_id, status, original_key, content_type, size, created_at, updated_at)
VALUES (?1, ?2, 'processing', ?3, ?4, ?5, ?6, ?6)
RETURNING ` + photoColumns
	insertIdempotencySQL = `INSERT INTO photo_idempotency (owner_id, key, photo_id, created_at, digest, expires_at)
VALUES (?, ?, ?, ?, ?, ?)`
	// The photo of an owner's live key, and the key's digest. The key is
	// read in a subquery: photos and photo_idempotency share column names.
	photoByIdempotencySQL = `SELECT ` + photoColumns + `, k.digest
FROM (SELECT photo_id, digest FROM photo_idempotency WHERE owner_id = ?1 AND key = ?2 AND expires_at > ?3) AS k
JOIN photos ON photos.id = k.photo_id`
	deleteExpiredIdempotencySQL = `DELETE FROM photo_idempotency WHERE owner_id = ? AND key = ? AND expires_at <= ?`
	// The expires_at index yields the expired keys first and stops at ?2.
	pruneIdempotencySQL = `DELETE FROM photo_idempotency WHERE (owner_id, key) IN
(SELECT owner_id, key FROM photo_idempotency WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)`
	photoByIDSQL = `SELECT ` + photoColumns + ` FROM photos WHERE id = ?`
	// The first page and the later ones are two statements: with
	// (?4 = '' OR id < ?4) the planner could not seek to ?4 in the
	// (owner_id, id) index, and every page would scan all newer photos.
	photosByOwnerSQL = `SELECT ` + photoColumns + ` FROM photos
WHERE owner_id = ?1 AND (?2 = 0 OR status = 'ready')
ORDER BY id DESC LIMIT ?3`
	photosByOwnerBeforeSQL = `SELECT ` + photoColumns + ` FROM photos
WHERE owner_id = ?1 AND (?2 = 0 OR status = 'ready') AND id < ?4
ORDER BY id DESC LIMIT ?3`
	finishPhotoSQL = `UPDATE photos SET status = ?2, reason = ?3, width = ?4, height = ?5, variants = ?6, updated_at = ?7
WHERE id = ?1 AND status = 'processing'
RETURNING ` + photoColumns
	deletePhotoSQL = `DELETE FROM photos WHERE id = ? AND owner_id = ? RETURNING ` + photoColumns
	// Clearing the avatar is a profile change, so it bumps the version.
	clearAvatarSQL = `UPDATE users SET avatar_id = NULL, updated_at = ?3, version = version + 1
WHERE id = ?1 AND avatar_id = ?2`
	photoKeysByOwnerSQL = `SELECT original_key, variants FROM photos WHERE owner_id = ?`
)

func scanPhoto(r scanner, ph *store.Photo) error {
	return r.Scan(&ph.ID, &ph.OwnerID, &ph.Status, &ph.Reason, &ph.Width, &ph.Height,
		&ph.OriginalKey, &ph.ContentType, &ph.Size, jsonVariants{&ph.Variants},
		textTime{&ph.CreatedAt}, textTime{&ph.UpdatedAt})
}

// jsonVariants scans a column written by sqlutil.FormatVariants. No
// variants scan as nil.
type jsonVariants struct{ vs *[]store.Variant }

func (jv jsonVariants) Scan(src any) error {
	s, ok := src.(string)
	if !ok {
		return fmt.Errorf("variants column: got %T, want TEXT", src)
	}
	vs, err := sqlutil.ParseVariants([]byte(s))
	if err != nil {
		return err
	}
	*jv.vs = vs
	return nil
}

// txPhoto runs a query named name in tx that returns at most one photo.
// No row is store.ErrNotFound.
func (s *Store) txPhoto(ctx context.Context, tx *sql.Tx, name, query string, args ...any) (store.Photo, error) {
	var ph store.Photo
	err := s.observeTx(ctx, tx, name, query, func() error {
		return scanPhoto(tx.QueryRowContext(ctx, query, args...), &ph)
	})
	return ph, err
}

// CreatePhoto inserts a processing photo with its idempotency key, its
// event and p.Job, in one transaction. The job is sent first: everything
// after it can still fail (a taken ID is store.ErrConflict, a gone owner
// store.ErrNotFound) and then rolls the job back with the rest.
//
// With a key the owner holds unexpired at p.Photo.CreatedAt, it writes
// nothing and returns the earlier photo with created false, or
// store.ErrIdempotencyMismatch if the digest differs (a key taken before
// digests were kept matches any). An expired key is deleted and taken
// anew. The transaction is BEGIN IMMEDIATE, which every process's writer
// takes in turn, so the read of the key and the insert cannot interleave
// with another create; the (owner_id, key) primary key stands behind it.
// The key goes with its photo, so once that is deleted the same key
// creates a new one. store.ErrInvalid for a key without a digest or one
// that expires no later than it is taken.
func (s *Store) CreatePhoto(ctx context.Context, p store.CreatePhotoParams) (ph store.Photo, created bool, err error) {
	in, idem := p.Photo, p.Idempotency
	if idem.Key != "" && (idem.Digest == "" || !idem.ExpiresAt.After(in.CreatedAt)) {
		return store.Photo{}, false, fmt.Errorf("sqlite photos_create: idempotency key without a digest or a future expiry: %w", store.ErrInvalid)
	}
	err = s.inTx(ctx, "photos_create", func(tx *sql.Tx) error {
		now := formatTime(in.CreatedAt)
		if idem.Key != "" {
			// Inside the transaction: a concurrent retry with the same key
			// waits for this one's lock, then finds its photo here.
			_, err := s.txExec(ctx, tx, "photo_idempotency_delete_expired", deleteExpiredIdempotencySQL, in.OwnerID, idem.Key, now)
			if err != nil {
				return err
			}
			var prev keyedPhoto
			err = s.observeTx(ctx, tx, "photos_by_idempotency_key", photoByIdempotencySQL, func() error {
				return scanKeyedPhoto(tx.QueryRowContext(ctx, photoByIdempotencySQL, in.OwnerID, idem.Key, now), &prev)
			})
			if err == nil {
				ph = prev.photo
				return sqlutil.SameRequest("sqlite", "photos_create", prev.digest, idem.Digest)
			}
			if !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		if err := s.sendTx(ctx, tx, p.Job); err != nil {
			return err
		}
		var err error
		ph, err = s.txPhoto(ctx, tx, "photos_insert", insertPhotoSQL,
			in.ID, in.OwnerID, in.OriginalKey, in.ContentType, in.Size, now)
		if err != nil {
			return err
		}
		created = true
		if idem.Key != "" {
			_, err := s.txExec(ctx, tx, "photo_idempotency_insert", insertIdempotencySQL,
				in.OwnerID, idem.Key, in.ID, now, idem.Digest, formatTime(idem.ExpiresAt))
			if err != nil {
				return err
			}
		}
		return s.insertEvent(ctx, tx, ph.OwnerID, ph.ID, now)
	})
	if err != nil {
		return store.Photo{}, false, err
	}
	return ph, created, nil
}

// keyedPhoto is a photo with the digest of the idempotency key that made it.
type keyedPhoto struct {
	photo  store.Photo
	digest string
}

func scanKeyedPhoto(r scanner, kp *keyedPhoto) error {
	ph := &kp.photo
	return r.Scan(&ph.ID, &ph.OwnerID, &ph.Status, &ph.Reason, &ph.Width, &ph.Height,
		&ph.OriginalKey, &ph.ContentType, &ph.Size, jsonVariants{&ph.Variants},
		textTime{&ph.CreatedAt}, textTime{&ph.UpdatedAt}, &kp.digest)
}

// Photo returns one photo, or store.ErrNotFound. With store.MustBeFresh
// it sees every committed write; with store.MayBeStale, every write of
// this process and another process's within 100 ms.
func (s *Store) Photo(ctx context.Context, p store.PhotoParams) (store.Photo, error) {
	return readOne(ctx, s, p.Freshness, "photos_by_id", photoByIDSQL, scanPhoto, p.ID)
}

// PhotoByIdempotencyKey returns the photo p.OwnerID made with the key
// p.Key, unexpired at p.Now, or store.ErrNotFound;
// store.ErrIdempotencyMismatch if p.Digest is set and is not the key's
// (a key taken before digests were kept matches any).
func (s *Store) PhotoByIdempotencyKey(ctx context.Context, p store.IdempotencyParams) (store.Photo, error) {
	kp, err := readOne(ctx, s, store.MustBeFresh, "photos_by_idempotency", photoByIdempotencySQL, scanKeyedPhoto,
		p.OwnerID, p.Key, formatTime(p.Now))
	if err != nil {
		return store.Photo{}, err
	}
	if err := sqlutil.SameRequest("sqlite", "photos_by_idempotency", kp.digest, p.Digest); err != nil {
		return store.Photo{}, err
	}
	return kp.photo, nil
}

// PruneIdempotencyKeys deletes up to limit of the keys that expired at
// or before now, oldest first. store.ErrInvalid if limit < 1.
func (s *Store) PruneIdempotencyKeys(ctx context.Context, now time.Time, limit int) (int, error) {
	if limit < 1 {
		return 0, fmt.Errorf("sqlite photo_idempotency_prune: limit %d: %w", limit, store.ErrInvalid)
	}
	var n int64
	err := s.run(ctx, s.writer, "photo_idempotency_prune", pruneIdempotencySQL, func(st *sql.Stmt) error {
		res, err := st.ExecContext(ctx, formatTime(now), limit)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// ListPhotos returns up to p.Limit photos of p.OwnerID with ID <
// p.BeforeID, newest (highest UUIDv7) first, only ready ones with
// p.ReadyOnly. store.ErrInvalid if p.Limit < 1.
func (s *Store) ListPhotos(ctx context.Context, p store.ListPhotosParams) ([]store.Photo, error) {
	name, query, args := "photos_by_owner", photosByOwnerSQL, []any{p.OwnerID, p.ReadyOnly, p.Limit}
	if p.BeforeID != "" {
		name, query, args = "photos_by_owner_before", photosByOwnerBeforeSQL, append(args, p.BeforeID)
	}
	if p.Limit < 1 {
		// SQLite reads a negative LIMIT as no limit at all.
		return nil, fmt.Errorf("sqlite %s: limit %d: %w", name, p.Limit, store.ErrInvalid)
	}
	return queryAll(ctx, s, s.reader, name, query, scanPhoto, args...)
}

// FinishPhoto moves a processing photo to p.Status and writes its event,
// in one transaction. A photo already finished is returned as it is, with
// no event: a retried pipeline job changes nothing. store.ErrInvalid
// unless p.Status is ready or rejected; store.ErrNotFound if the photo is
// gone.
func (s *Store) FinishPhoto(ctx context.Context, p store.FinishPhotoParams) (store.Photo, error) {
	if p.Status != store.PhotoReady && p.Status != store.PhotoRejected {
		return store.Photo{}, fmt.Errorf("sqlite photos_finish: status %q: %w", p.Status, store.ErrInvalid)
	}
	variants, err := sqlutil.FormatVariants(p.Variants)
	if err != nil {
		return store.Photo{}, fmt.Errorf("sqlite photos_finish: %w", err)
	}
	var ph store.Photo
	err = s.inTx(ctx, "photos_finish", func(tx *sql.Tx) error {
		now := formatTime(p.Now)
		var err error
		ph, err = s.txPhoto(ctx, tx, "photos_finish", finishPhotoSQL,
			p.ID, p.Status, p.Reason, p.Width, p.Height, variants, now)
		if errors.Is(err, store.ErrNotFound) {
			// Not processing: finished already (then it stays as it is), or gone.
			ph, err = s.txPhoto(ctx, tx, "photos_by_id", photoByIDSQL, p.ID)
			return err
		}
		if err != nil {
			return err
		}
		return s.insertEvent(ctx, tx, ph.OwnerID, ph.ID, now)
	})
	if err != nil {
		return store.Photo{}, err
	}
	return ph, nil
}

// DeletePhoto removes the photo, clears it as its owner's avatar (bumping
// the profile's version and UpdatedAt), writes its event and enqueues
// p.Cleanup with the photo's keys, in one transaction. It returns the
// deleted photo and whether the avatar was cleared. store.ErrNotFound
// unless p.OwnerID has that photo.
func (s *Store) DeletePhoto(ctx context.Context, p store.DeletePhotoParams) (ph store.Photo, avatarCleared bool, err error) {
	err = s.inTx(ctx, "photos_delete", func(tx *sql.Tx) error {
		var err error
		// The owner check is part of the DELETE: another user's photo is
		// not found.
		ph, err = s.txPhoto(ctx, tx, "photos_delete", deletePhotoSQL, p.ID, p.OwnerID)
		if err != nil {
			return err
		}
		now := formatTime(p.Now)
		res, err := s.txExec(ctx, tx, "users_clear_avatar", clearAvatarSQL, ph.OwnerID, ph.ID, now)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		avatarCleared = n > 0
		if err := s.insertEvent(ctx, tx, ph.OwnerID, ph.ID, now); err != nil {
			return err
		}
		if p.Cleanup == nil {
			return nil
		}
		return s.sendTx(ctx, tx, p.Cleanup(sqlutil.PhotoKeys(ph.OriginalKey, ph.Variants)))
	})
	if err != nil {
		return store.Photo{}, false, err
	}
	return ph, avatarCleared, nil
}

// ownerPhotoKeys lists the media keys of every photo of ownerID, in tx.
func (s *Store) ownerPhotoKeys(ctx context.Context, tx *sql.Tx, ownerID string) ([]string, error) {
	var keys []string
	err := s.observeTx(ctx, tx, "photos_keys_by_owner", photoKeysByOwnerSQL, func() error {
		rows, err := tx.QueryContext(ctx, photoKeysByOwnerSQL, ownerID)
		if err != nil {
			return err
		}
		perPhoto, err := sqlutil.Collect(rows, func(r scanner, keys *[]string) error {
			var original string
			var variants []store.Variant
			if err := r.Scan(&original, jsonVariants{&variants}); err != nil {
				return err
			}
			*keys = sqlutil.PhotoKeys(original, variants)
			return nil
		})
		for _, k := range perPhoto {
			keys = append(keys, k...)
		}
		return err
	})
	return keys, err
}
