package backup

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"onebox/media"
	"onebox/photos"
	"onebox/store"
	"onebox/store/sqlite"
)

// LostReason is the reason a photo is rejected with when its original
// is gone: nothing can make it again.
const LostReason = "lost: its original file was missing after a restore"

// Lister lists the objects of a media storage (media/local and
// media/s3 have it).
type Lister interface {
	Keys(ctx context.Context) ([]media.KeyInfo, error)
}

// ReconcileOptions configure Reconcile.
type ReconcileOptions struct {
	// Lists are the directories whose files are compared with the rows:
	// the media directory and, if there is one, its backup copy.
	Lists []Lister
	// Sweep deletes, through the storage, the files no row references
	// that were last written more than Grace ago; otherwise they are
	// only listed. The grace keeps a sweep beside a running service from
	// deleting an upload's original before its row commits, or a variant
	// before its photo is finished (both within an upload's or a job's
	// deadline).
	Sweep bool
	Grace time.Duration
	Now   func() time.Time // time.Now if nil
}

// Reconciled is what Reconcile found and did.
type Reconciled struct {
	Photos      int      // rows checked
	Reprocessed []string // ids of photos whose variants were missing, back to processing
	Lost        []string // ids of photos whose original was missing, now rejected with LostReason
	Orphans     []string // sorted keys of files no row references
	Swept       int      // of those, deleted
}

// Reconcile brings rows and media files back into agreement after a
// restore, when the database and the media come from different moments
// (Litestream's last sync, the media backup's last write): a photo that
// references a file m lacks is made again from its original, back in
// processing with its job enqueued (ReprocessPhoto), or, if the original
// itself is gone, marked rejected with LostReason (LosePhoto). A
// rejected photo is left as it is: nothing of it is served. Files that
// no row references are listed, and with opts.Sweep deleted.
//
// The files are listed before the rows are read, so a file whose row
// commits in between is not an orphan; the grace covers files written
// after the rows were read.
func Reconcile(ctx context.Context, st *sqlite.Store, m media.Storage, opts ReconcileOptions) (Reconciled, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	files := map[string]time.Time{} // the newest write of each key, of all lists
	for _, l := range opts.Lists {
		keys, err := l.Keys(ctx)
		if err != nil {
			return Reconciled{}, err
		}
		for _, k := range keys {
			if t, ok := files[k.Key]; !ok || k.ModTime.After(t) {
				files[k.Key] = k.ModTime
			}
		}
	}
	all, err := st.Photos(ctx)
	if err != nil {
		return Reconciled{}, fmt.Errorf("reconcile: reading photos: %w", err)
	}
	var r Reconciled
	r.Photos = len(all)
	referenced := map[string]bool{}
	for _, ph := range all {
		// What the row references now, before any change: a reprocessed
		// photo's variants are written again at the same keys.
		referenced[ph.OriginalKey] = true
		for _, v := range ph.Variants {
			referenced[v.Key] = true
		}
		if ph.Status == store.PhotoRejected {
			continue
		}
		if err := reconcilePhoto(ctx, st, m, ph, opts.Now(), &r); err != nil {
			return r, err
		}
	}
	var sweep []string
	cutoff := opts.Now().Add(-opts.Grace)
	for k, t := range files {
		if referenced[k] {
			continue
		}
		r.Orphans = append(r.Orphans, k)
		if opts.Sweep && t.Before(cutoff) {
			sweep = append(sweep, k)
		}
	}
	slices.Sort(r.Orphans)
	slices.Sort(sweep)
	for chunk := range slices.Chunk(sweep, 100) {
		if err := m.Delete(ctx, chunk...); err != nil {
			return r, fmt.Errorf("reconcile: sweeping: %w", err)
		}
		r.Swept += len(chunk)
	}
	return r, nil
}

// reconcilePhoto checks the files of one processing or ready photo.
func reconcilePhoto(ctx context.Context, st *sqlite.Store, m media.Storage, ph store.Photo, now time.Time, r *Reconciled) error {
	ok, err := exists(ctx, m, ph.OriginalKey)
	if err != nil {
		return err
	}
	if !ok {
		if _, err := st.LosePhoto(ctx, ph.ID, LostReason, now); err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
		r.Lost = append(r.Lost, ph.ID)
		return nil
	}
	for _, v := range ph.Variants {
		ok, err := exists(ctx, m, v.Key)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		_, err = st.ReprocessPhoto(ctx, ph.ID, photos.ProcessJob(ctx, ph.OwnerID, ph.ID), now)
		if err != nil && !errors.Is(err, store.ErrNotFound) { // processing already, or deleted: nothing to do
			return fmt.Errorf("reconcile: %w", err)
		}
		r.Reprocessed = append(r.Reprocessed, ph.ID)
		return nil
	}
	return nil
}

func exists(ctx context.Context, m media.Storage, key string) (bool, error) {
	_, err := m.Stat(ctx, key)
	if errors.Is(err, media.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reconcile: %w", err)
	}
	return true, nil
}
