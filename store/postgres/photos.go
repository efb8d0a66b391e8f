package postgres

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
	insertPhotoSQL = `insert into photos (id, owner_id, status, original_key, content_type, size, created_at, updated_at)
values ($1, $2, 'processing', $3, $4, $5, $6, $6)
returning ` + photoColumns
	insertIdempotencySQL = `insert into photo_idempotency (owner_id, key, photo_id, created_at, digest, expires_at)
values ($1, $2, $3, $4, $5, $6)`
	// The photo of an owner's live key, and the key's digest.
	photoByIdempotencySQL = `select p.id, p.owner_id, p.status, p.reason, p.width, p.height, p.original_key,
	p.content_type, p.size, p.variants, p.created_at, p.updated_at, k.digest
from photo_idempotency k join photos p on p.id = k.photo_id
where k.owner_id = $1 and k.key = $2 and k.expires_at > $3`
	deleteExpiredIdempotencySQL = `delete from photo_idempotency where owner_id = $1 and key = $2 and expires_at <= $3`
	// The expires_at index yields the expired keys first and stops at $2.
	pruneIdempotencySQL = `delete from photo_idempotency where (owner_id, key) in
(select owner_id, key from photo_idempotency where expires_at <= $1 order by expires_at limit $2)`
	photoByIDSQL     = `select ` + photoColumns + ` from photos where id = $1`
	photoOwnerSQL    = `select owner_id from photos where id = $1`
	photosByOwnerSQL = `select ` + photoColumns + ` from photos
where owner_id = $1 and (not $2::boolean or status = 'ready')
order by id desc limit $3`
	// A second statement for the later pages, as store/sqlite has, so
	// each plan seeks the (owner_id, id) index to its start.
	photosByOwnerBeforeSQL = `select ` + photoColumns + ` from photos
where owner_id = $1 and (not $2::boolean or status = 'ready') and id < $4
order by id desc limit $3`
	finishPhotoSQL = `update photos set status = $2, reason = $3, width = $4, height = $5, variants = $6, updated_at = $7
where id = $1 and status = 'processing'
returning ` + photoColumns
	deletePhotoSQL = `delete from photos where id = $1 and owner_id = $2 returning ` + photoColumns
	// Clearing the avatar is a profile change, so it bumps the version.
	clearAvatarSQL = `update users set avatar_id = null, updated_at = $3, version = version + 1
where id = $1 and avatar_id = $2`
	// FOR UPDATE waits for a FinishPhoto under way, so the variants read
	// are the last ones.
	photoKeysByOwnerSQL = `select original_key, variants from photos where owner_id = $1 for update`
)

func scanPhoto(r scanner, ph *store.Photo) error {
	return r.Scan(&ph.ID, &ph.OwnerID, &ph.Status, &ph.Reason, &ph.Width, &ph.Height,
		&ph.OriginalKey, &ph.ContentType, &ph.Size, jsonVariants{&ph.Variants},
		utcTime{&ph.CreatedAt}, utcTime{&ph.UpdatedAt})
}

// jsonVariants scans a column written by sqlutil.FormatVariants. No
// variants scan as nil.
type jsonVariants struct{ vs *[]store.Variant }

func (jv jsonVariants) Scan(src any) error {
	var b []byte
	switch src := src.(type) {
	case []byte:
		b = src
	case string:
		b = []byte(src)
	default:
		return fmt.Errorf("variants column: got %T, want jsonb", src)
	}
	vs, err := sqlutil.ParseVariants(b)
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
	err := s.observe(ctx, name, query, func() error {
		return scanPhoto(tx.QueryRowContext(ctx, query, args...), &ph)
	})
	return ph, err
}

// CreatePhoto inserts a processing photo with its idempotency key, its
// event and p.Job, in one transaction.
//
// The transaction first takes the owner's event lock (lockUserEvents),
// which every create of the owner takes, from any process: the read of
// the key and the insert cannot interleave with another create of the
// same owner, and a retry that raced with the first call waits for it,
// then finds its photo. The (owner_id, key) primary key stands behind
// it. An expired key is deleted and taken anew; the key goes with its
// photo. store.ErrInvalid for a key without a digest or one that expires
// no later than it is taken; store.ErrNotFound if the owner is gone;
// store.ErrConflict if the photo's ID is taken.
func (s *Store) CreatePhoto(ctx context.Context, p store.CreatePhotoParams) (ph store.Photo, created bool, err error) {
	in, idem := p.Photo, p.Idempotency
	if idem.Key != "" && (idem.Digest == "" || !idem.ExpiresAt.After(in.CreatedAt)) {
		return store.Photo{}, false, fmt.Errorf("postgres photos_create: idempotency key without a digest or a future expiry: %w", store.ErrInvalid)
	}
	now := utc(in.CreatedAt)
	err = s.inTx(ctx, "photos_create", func(tx *sql.Tx) error {
		ph, created = store.Photo{}, false
		if err := s.lockUserEvents(ctx, tx, in.OwnerID); err != nil {
			return err
		}
		if idem.Key != "" {
			_, err := s.txExec(ctx, tx, "photo_idempotency_delete_expired", deleteExpiredIdempotencySQL, in.OwnerID, idem.Key, now)
			if err != nil {
				return err
			}
			var prev keyedPhoto
			err = s.observe(ctx, "photos_by_idempotency_key", photoByIdempotencySQL, func() error {
				return scanKeyedPhoto(tx.QueryRowContext(ctx, photoByIdempotencySQL, in.OwnerID, idem.Key, now), &prev)
			})
			if err == nil {
				ph = prev.photo
				return sqlutil.SameRequest("postgres", "photos_create", prev.digest, idem.Digest)
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
		if idem.Key != "" {
			_, err := s.txExec(ctx, tx, "photo_idempotency_insert", insertIdempotencySQL,
				in.OwnerID, idem.Key, in.ID, now, idem.Digest, utc(idem.ExpiresAt))
			if errors.Is(err, store.ErrConflict) {
				// Another create took the key and committed, which the
				// lock rules out; should it happen anyway, running again
				// finds that create's photo, as the contract answers.
				return fmt.Errorf("%w: %w", errRetryable, err)
			}
			if err != nil {
				return err
			}
		}
		if err := s.insertEvent(ctx, tx, ph.OwnerID, ph.ID, now); err != nil {
			return err
		}
		created = true
		return nil
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
		utcTime{&ph.CreatedAt}, utcTime{&ph.UpdatedAt}, &kp.digest)
}

// Photo returns one photo, or store.ErrNotFound.
func (s *Store) Photo(ctx context.Context, p store.PhotoParams) (store.Photo, error) {
	return readOne(ctx, s, s.reader(p.Freshness, p.AtLeast), "photos_by_id", photoByIDSQL, scanPhoto, p.ID)
}

// PhotoByIdempotencyKey returns the photo p.OwnerID made with the key
// p.Key, unexpired at p.Now, from the primary, or store.ErrNotFound;
// store.ErrIdempotencyMismatch if p.Digest is set and is not the key's.
func (s *Store) PhotoByIdempotencyKey(ctx context.Context, p store.IdempotencyParams) (store.Photo, error) {
	kp, err := readOne(ctx, s, s.reader(store.MustBeFresh, ""), "photos_by_idempotency", photoByIdempotencySQL, scanKeyedPhoto,
		p.OwnerID, p.Key, utc(p.Now))
	if err != nil {
		return store.Photo{}, err
	}
	if err := sqlutil.SameRequest("postgres", "photos_by_idempotency", kp.digest, p.Digest); err != nil {
		return store.Photo{}, err
	}
	return kp.photo, nil
}

// PruneIdempotencyKeys deletes up to limit of the keys that expired at
// or before now, oldest first. store.ErrInvalid if limit < 1.
func (s *Store) PruneIdempotencyKeys(ctx context.Context, now time.Time, limit int) (int, error) {
	if limit < 1 {
		return 0, fmt.Errorf("postgres photo_idempotency_prune: limit %d: %w", limit, store.ErrInvalid)
	}
	return s.execCount(ctx, "photo_idempotency_prune", pruneIdempotencySQL, utc(now), limit)
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
		return nil, fmt.Errorf("postgres %s: limit %d: %w", name, p.Limit, store.ErrInvalid)
	}
	return queryAll(ctx, s, s.reader(p.Freshness, p.AtLeast), name, query, scanPhoto, args...)
}

// FinishPhoto moves a processing photo to p.Status and writes its event,
// in one transaction. A photo already finished is returned as it is, with
// no event. store.ErrInvalid unless p.Status is ready or rejected;
// store.ErrNotFound if the photo is gone.
func (s *Store) FinishPhoto(ctx context.Context, p store.FinishPhotoParams) (store.Photo, error) {
	if p.Status != store.PhotoReady && p.Status != store.PhotoRejected {
		return store.Photo{}, fmt.Errorf("postgres photos_finish: status %q: %w", p.Status, store.ErrInvalid)
	}
	variants, err := sqlutil.FormatVariants(p.Variants)
	if err != nil {
		return store.Photo{}, fmt.Errorf("postgres photos_finish: %w", err)
	}
	now := utc(p.Now)
	var ph store.Photo
	err = s.inTx(ctx, "photos_finish", func(tx *sql.Tx) error {
		// The owner's event lock comes before any row lock (see
		// lockUserEvents); a photo's owner never changes, so reading it
		// first, unlocked, is safe.
		var owner string
		err := s.observe(ctx, "photos_owner", photoOwnerSQL, func() error {
			return tx.QueryRowContext(ctx, photoOwnerSQL, p.ID).Scan(&owner)
		})
		if err != nil {
			return err
		}
		if err := s.lockUserEvents(ctx, tx, owner); err != nil {
			return err
		}
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
	now := utc(p.Now)
	err = s.inTx(ctx, "photos_delete", func(tx *sql.Tx) error {
		avatarCleared = false
		if err := s.lockUserEvents(ctx, tx, p.OwnerID); err != nil {
			return err
		}
		var err error
		// The owner check is part of the DELETE: another user's photo is
		// not found.
		ph, err = s.txPhoto(ctx, tx, "photos_delete", deletePhotoSQL, p.ID, p.OwnerID)
		if err != nil {
			return err
		}
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
	err := s.observe(ctx, "photos_keys_by_owner", photoKeysByOwnerSQL, func() error {
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
