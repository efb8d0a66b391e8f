package backup

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"onebox/media"
	"onebox/store"
	"onebox/store/sqlite"
)

// Replica is a continuous backup of the database (Litestream's, see
// backup/litestream): Restore writes its latest state to a new database
// file at path, which must not exist.
type Replica interface {
	Restore(ctx context.Context, path string) error
}

// Live is the running database (store/sqlite has it): Verify writes the
// sentinel into it, and asks it whether a media file the restored
// database references still matters.
type Live interface {
	WriteSentinel(ctx context.Context, at time.Time) error
	// MediaKeys are sorted: Verify looks keys up in them by binary search.
	MediaKeys(ctx context.Context) ([]string, error)
}

// MediaCopy is the continuous copy of the media (ONEBOX_MEDIA_BACKUP_DIR,
// a media/local directory, which has it).
type MediaCopy interface {
	Stat(ctx context.Context, key string) (media.Info, error)
	// CheckDigest is nil when key's bytes are those recorded when it
	// was written.
	CheckDigest(ctx context.Context, key string) error
}

// What a failed verification wraps, one sentinel per way a backup fails.
var (
	// ErrRestore: the replica could not be restored at all (missing,
	// unreadable, or its own checksums failed).
	ErrRestore = errors.New("the backup could not be restored")
	// ErrCorrupt: the restored database does not open, or PRAGMA
	// integrity_check finds damage.
	ErrCorrupt = errors.New("the restored database is damaged")
	// ErrStale: the restored database lacks the sentinel written a
	// recovery point before the restore began.
	ErrStale = errors.New("the backup is older than its recovery point")
	// ErrMediaMissing: a file the restored database references, and the
	// live one still does, is not in the media copy.
	ErrMediaMissing = errors.New("media missing from the copy")
	// ErrMediaDigest: a sampled file in the media copy differs from the
	// digest recorded when it was written.
	ErrMediaDigest = errors.New("media differ from their digest")
)

// VerifyOptions configure Verify. Live, Replica and Scratch are required.
type VerifyOptions struct {
	Live    Live
	Replica Replica
	// Media is the media copy; nil checks no media (there is no copy).
	Media MediaCopy
	// Scratch is the directory under which the restore is made (in a
	// new directory of its own, removed afterwards). It needs room for
	// the database.
	Scratch string
	// RecoveryPoint is how long after its commit a write must be in the
	// replica: Verify writes the sentinel, waits this long, then
	// restores. Default 5s.
	RecoveryPoint time.Duration
	// Sample is how many media files have their digest checked, chosen
	// at random; 0 checks every one. Every referenced file is checked to
	// exist.
	Sample int
	Now    func() time.Time // default time.Now
	// Sleep waits d or until ctx ends. Default: a timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Verification is what one Verify found. It is filled as far as the
// verification got, also when it failed.
type Verification struct {
	Start      time.Time
	SentinelAt time.Time // written to the live database
	// RestoredSentinel is the sentinel in the restored database (zero if
	// it had none): SentinelAt or later when the backup is fresh.
	RestoredSentinel time.Time
	// Restore is how long the replica took to restore into the scratch
	// directory; Check how long PRAGMA integrity_check took on it.
	Restore, Check time.Duration
	DatabaseBytes  int64
	MediaFiles     int // referenced by the restored database, each checked to exist
	MediaDigests   int // of those, checked against their digest
	Took           time.Duration
}

// Verify proves that the latest backup restores: it writes the sentinel
// (the time now) into the live database, waits the recovery point,
// restores the replica into a scratch directory, runs PRAGMA
// integrity_check on the copy, checks that the copy holds that sentinel
// or a later one, that every media file the copy references is in the
// media copy (unless the live database no longer references it either:
// it was deleted since), and that a sample of them match the digests
// recorded when they were written. The error wraps one of ErrRestore,
// ErrCorrupt, ErrStale, ErrMediaMissing or ErrMediaDigest, or is the
// failure of the live database, the scratch directory or ctx.
//
// Every check is one a later state of the live system still passes:
// the sentinel only has to be at least as new as the one written, and a
// missing file counts only if it is still referenced. So writes going on
// meanwhile cannot fail it (Litestream dropped its built-in validation,
// which compared live and replica checksums, for such false alarms).
func Verify(ctx context.Context, o VerifyOptions) (v Verification, err error) {
	o = o.withDefaults()
	v.Start = o.Now()
	defer func() { v.Took = o.Now().Sub(v.Start) }()

	v.SentinelAt = v.Start
	if err = o.Live.WriteSentinel(ctx, v.SentinelAt); err != nil {
		return v, fmt.Errorf("backup verify: writing the sentinel: %w", err)
	}
	if err = o.Sleep(ctx, o.RecoveryPoint); err != nil {
		return v, err
	}
	removeAbandoned(o.Scratch, o.Now())
	dir, err := os.MkdirTemp(o.Scratch, scratchPrefix)
	if err != nil {
		return v, fmt.Errorf("backup verify: scratch directory: %w", err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, DatabaseFile)
	t := o.Now()
	err = o.Replica.Restore(ctx, path)
	v.Restore = o.Now().Sub(t)
	if err != nil {
		if ctx.Err() != nil {
			return v, ctx.Err()
		}
		return v, fmt.Errorf("backup verify: %w: %w", ErrRestore, err)
	}
	if fi, err := os.Stat(path); err == nil {
		v.DatabaseBytes = fi.Size()
	}
	keys, err := o.checkDatabase(ctx, path, &v)
	if err != nil {
		return v, err
	}
	if o.Media == nil {
		return v, nil
	}
	return v, o.checkMedia(ctx, keys, &v)
}

// scratchPrefix names Verify's scratch directories.
const scratchPrefix = ".backup-verify-"

// abandonedAfter is when a scratch directory surely belongs to no
// running Verify (a restore takes seconds to minutes), but to one whose
// process was killed: it holds a whole database, so it is removed.
const abandonedAfter = 6 * time.Hour

// removeAbandoned removes the scratch directories under dir older than
// abandonedAfter; what it cannot remove waits for the next run.
func removeAbandoned(dir string, now time.Time) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), scratchPrefix) {
			continue
		}
		if fi, err := e.Info(); err == nil && now.Sub(fi.ModTime()) > abandonedAfter {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

func (o VerifyOptions) withDefaults() VerifyOptions {
	if o.RecoveryPoint <= 0 {
		o.RecoveryPoint = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = func(ctx context.Context, d time.Duration) error {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
				return nil
			}
		}
	}
	return o
}

// checkDatabase opens the restored copy without migrating it, checks
// its integrity and sentinel, and returns the media keys it references.
func (o VerifyOptions) checkDatabase(ctx context.Context, path string, v *Verification) ([]string, error) {
	damaged := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("backup verify: %w: %w", ErrCorrupt, err)
	}
	st, err := sqlite.New(ctx, sqlite.Options{Path: path, ReadConns: 1, NoCreate: true, SkipMigrate: true})
	if err != nil {
		return nil, damaged(err)
	}
	defer st.Close()
	t := o.Now()
	err = st.IntegrityCheck(ctx)
	v.Check = o.Now().Sub(t)
	if err != nil {
		return nil, damaged(err)
	}
	at, err := st.Sentinel(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("backup verify: %w: the restored database holds no sentinel; the one written %s before the restore is not in it (is litestream replicate running?)",
			ErrStale, o.RecoveryPoint)
	case err != nil:
		return nil, damaged(err)
	}
	v.RestoredSentinel = at
	if at.Before(v.SentinelAt) {
		return nil, fmt.Errorf("backup verify: %w: the restored sentinel was written %s before the one written %s before the restore began (is litestream replicate running, and keeping up?)",
			ErrStale, v.SentinelAt.Sub(at).Round(time.Millisecond), o.RecoveryPoint)
	}
	keys, err := st.MediaKeys(ctx)
	if err != nil {
		return nil, damaged(err)
	}
	return keys, nil
}

// checkMedia checks that every key is in the media copy, and a random
// sample of them against their digests.
func (o VerifyOptions) checkMedia(ctx context.Context, keys []string, v *Verification) error {
	var present, missing []string
	for _, k := range keys {
		_, err := o.Media.Stat(ctx, k)
		switch {
		case errors.Is(err, media.ErrNotFound):
			missing = append(missing, k)
		case err != nil:
			return fmt.Errorf("backup verify: media copy: %w", err)
		default:
			present = append(present, k)
		}
	}
	v.MediaFiles = len(keys)
	if len(missing) > 0 {
		// Deleted since the backup's instant? Then the live database
		// no longer references it, and nothing is lost.
		live, err := o.Live.MediaKeys(ctx)
		if err != nil {
			return fmt.Errorf("backup verify: reading the live media keys: %w", err)
		}
		missing = slices.DeleteFunc(missing, func(k string) bool {
			_, found := slices.BinarySearch(live, k)
			return !found
		})
		if len(missing) > 0 {
			return fmt.Errorf("backup verify: %w: %d of %d referenced files, such as %s",
				ErrMediaMissing, len(missing), len(keys), strings.Join(missing[:min(3, len(missing))], ", "))
		}
	}
	n := len(present)
	if o.Sample > 0 {
		n = min(n, o.Sample)
	}
	for _, i := range rand.Perm(len(present))[:n] {
		err := o.Media.CheckDigest(ctx, present[i])
		if errors.Is(err, media.ErrNotFound) {
			continue // deleted since it was listed
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("backup verify: %w: %w", ErrMediaDigest, err)
		}
		v.MediaDigests++
	}
	return nil
}

// VerifyEvery runs Verify at once and then every interval (measured from
// one start to the next, or from the end of a run longer than it) until
// ctx ends, and gives each result to done.
func VerifyEvery(ctx context.Context, every time.Duration, o VerifyOptions, done func(Verification, error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		v, err := Verify(ctx, o)
		if ctx.Err() != nil {
			return
		}
		done(v, err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
