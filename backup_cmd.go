package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"onebox/backup"
	"onebox/config"
	"onebox/media"
	medialocal "onebox/media/local"
	mediamirror "onebox/media/mirror"
	medias3 "onebox/media/s3"
	"onebox/store/sqlite"
)

// The settings of backup and restore: the database's and the media's.
var backupSettings = append([]string{"ONEBOX_MEDIA_URL"}, databaseSettings...)

// The settings of reconcile: backup's, and the media backup directory,
// whose files it lists and sweeps too.
var reconcileSettings = append([]string{"ONEBOX_MEDIA_BACKUP_DIR"}, backupSettings...)

// listedMedia is a media storage that lists its keys, as reconcile
// needs: media/local and media/s3.
type listedMedia interface {
	media.Storage
	backup.Lister
}

// openInstance opens an existing instance's database (never creating
// one) with opts, and its media storage (see openInstanceMedia), for
// the command named cmd. close releases both.
func openInstance(ctx context.Context, cfg config.Config, cmd string, opts sqlite.Options) (_ *sqlite.Store, _ listedMedia, name string, close func() error, _ error) {
	path, err := databasePath(cfg)
	if err != nil {
		return nil, nil, "", nil, err
	}
	opts.Path, opts.ReadConns, opts.NoCreate = path, 1, true
	st, err := sqlite.New(ctx, opts)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, "", nil, fmt.Errorf("%s: no database at %s (set ONEBOX_DATA_DIR or -data-dir, or ONEBOX_DATABASE_URL or -database-url, to the instance's)", cmd, path)
	}
	if err != nil {
		return nil, nil, "", nil, fmt.Errorf("%s: %w", cfg.Name("ONEBOX_DATABASE_URL"), err)
	}
	m, name, closeMedia, err := openInstanceMedia(ctx, cfg, opts.Logger)
	if err != nil {
		return nil, nil, "", nil, errors.Join(err, st.Close())
	}
	return st, m, name, func() error { return errors.Join(closeMedia(), st.Close()) }, nil
}

// openInstanceMedia opens the media storage ONEBOX_MEDIA_URL names, by
// the backend table as serve opens it, but without the mirror of
// ONEBOX_MEDIA_BACKUP_DIR: backup reads, restore writes and reconcile
// lists the storage the service reads. name is its directory, or its
// s3://bucket/prefix.
func openInstanceMedia(ctx context.Context, cfg config.Config, log *slog.Logger) (_ listedMedia, name string, close func() error, _ error) {
	b := backendTable()
	u, err := b.media.url(cfg)
	if err != nil {
		return nil, "", nil, err
	}
	name = urlPath(u)
	if u.Scheme == "s3" {
		name = s3Name(u)
	}
	m, err := b.media.Open(ctx, wiring{cfg: cfg, log: log})
	if err != nil {
		return nil, "", nil, err
	}
	close = func() error { return nil }
	if c, ok := m.(io.Closer); ok {
		close = c.Close
	}
	lm, ok := m.(listedMedia)
	if !ok {
		return nil, "", nil, errors.Join(fmt.Errorf("%s: %s cannot list its files", cfg.Name("ONEBOX_MEDIA_URL"), name), close())
	}
	return lm, name, close, nil
}

// checkMediaEmpty is nil for media storage that holds nothing: a
// directory without entries, a bucket's prefix without objects.
func checkMediaEmpty(ctx context.Context, m media.Storage, name string) error {
	switch m := m.(type) {
	case backup.Bucket:
		return backup.CheckBucketEmpty(ctx, m, name)
	case *medialocal.Storage:
		return backup.CheckEmpty(name)
	}
	return fmt.Errorf("%s: cannot tell whether %T is empty", name, m)
}

// s3Name names s3://bucket/prefix?… in messages: without its query.
func s3Name(u *url.URL) string { return "s3://" + u.Host + strings.TrimSuffix(u.Path, "/") }

// backupTarget is the backup at loc: a directory, or
// s3://bucket/prefix?endpoint=…&region=… (ONEBOX_MEDIA_URL's form, with
// the same credentials from the environment), which holds the files a
// directory would as objects under the prefix. tempDir holds what is
// made before it is uploaded.
func backupTarget(ctx context.Context, loc, tempDir string) (backup.Target, error) {
	if !strings.HasPrefix(loc, "s3://") {
		return backup.Dir(loc), nil
	}
	u, err := url.Parse(loc)
	if err != nil {
		return nil, err
	}
	o := medias3.Options{TempDir: tempDir}
	root, err := medias3.Open(ctx, u, o)
	if err != nil {
		return nil, err
	}
	mu := *u
	mu.Path = path.Join("/", u.Path, backup.MediaDir)
	files, err := medias3.Open(ctx, &mu, o)
	if err != nil {
		return nil, err
	}
	return backup.Objects{Root: root, MediaFiles: files, Name: s3Name(u), TempDir: tempDir}, nil
}

// backupCommand is `onebox backup -to DIR|s3://…`. It reads the database
// and the media beside a running service, and never creates or migrates
// a database.
func backupCommand(ctx context.Context, cfg config.Config, to string, stdout io.Writer, log *slog.Logger) (err error) {
	if to == "" {
		return errors.New("backup: -to DIR or s3://bucket/prefix is required (see onebox backup --help)")
	}
	start := time.Now()
	st, src, mediaName, closeInstance, err := openInstance(ctx, cfg, "backup", sqlite.Options{SkipMigrate: true, Logger: log})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeInstance()) }()
	path, _ := databasePath(cfg) // for the report; openInstance read it
	// An upload's snapshot is made beside the database, on a disk known
	// to hold one (a tmpfs /tmp may not).
	target, err := backupTarget(ctx, to, filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("backup: -to %s: %w", to, err)
	}
	m, err := backup.Backup(ctx, st, src, target, backup.Options{Version: version()})
	if errors.Is(err, backup.ErrNotEmpty) {
		return fmt.Errorf("backup: -to %w; back up into a new directory or prefix", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backed up %s: %d rows in %d tables, integrity check ok, %d bytes\n", path, sumRows(m), len(m.Tables), m.Database.Size)
	fmt.Fprintf(stdout, "backed up %s: %d media files, %d bytes, each with its SHA-256\n", mediaName, len(m.Media), mediaBytes(m))
	if len(m.Missing) > 0 {
		fmt.Fprintf(stdout, "warning: %d referenced media files were already gone (listed under \"missing\" in the manifest), the first %s\n", len(m.Missing), m.Missing[0])
	}
	fmt.Fprintf(stdout, "wrote %s in %s\n", target, time.Since(start).Round(time.Millisecond))
	return nil
}

// restoreCommand is `onebox restore -from DIR|s3://…`: only into an
// empty data directory, so nothing live is ever overwritten or mixed in.
func restoreCommand(ctx context.Context, cfg config.Config, from string, stdout io.Writer, log *slog.Logger) (err error) {
	if from == "" {
		return errors.New("restore: -from DIR or s3://bucket/prefix is required (see onebox restore --help)")
	}
	start := time.Now()
	path, err := databasePath(cfg)
	if err != nil {
		return err
	}
	if err := backup.CheckEmpty(cfg.DataDir); err != nil {
		return refuse(cfg, "ONEBOX_DATA_DIR", "data directory", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		return refuse(cfg, "ONEBOX_DATABASE_URL", "database", fmt.Errorf("%s exists (%w)", path, backup.ErrNotEmpty))
	}
	dst, mediaName, closeMedia, err := openInstanceMedia(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeMedia()) }()
	if err := checkMediaEmpty(ctx, dst, mediaName); err != nil {
		return refuse(cfg, "ONEBOX_MEDIA_URL", "media storage", err)
	}
	src, err := backupTarget(ctx, from, "")
	if err != nil {
		return fmt.Errorf("restore: -from %s: %w", from, err)
	}
	r, err := backup.Restore(ctx, src, path, dst)
	if err != nil {
		leftovers := cfg.DataDir // and the media, where they are elsewhere
		if rel, err := filepath.Rel(cfg.DataDir, mediaName); err != nil || !filepath.IsLocal(rel) {
			leftovers += " and " + mediaName
		}
		return fmt.Errorf("%w\nthe restore is incomplete: empty %s before trying again", err, leftovers)
	}
	m := r.Manifest
	fmt.Fprintf(stdout, "restored %s (taken %s by %s)\n", src, m.Created.Format(time.RFC3339), m.Version)
	fmt.Fprintf(stdout, "database %s: integrity check ok, %d rows in %d tables as the manifest counts\n", path, sumRows(m), len(m.Tables))
	fmt.Fprintf(stdout, "media %s: %d files, %d bytes, every SHA-256 as the manifest says\n", mediaName, len(m.Media), mediaBytes(m))
	if len(m.Missing) > 0 {
		fmt.Fprintf(stdout, "warning: %d referenced media files were not in the backup (gone when it was taken), the first %s\n", len(m.Missing), m.Missing[0])
	}
	fmt.Fprintf(stdout, "restored %d bytes in %s\n", r.Bytes, time.Since(start).Round(time.Millisecond))
	// Rows whose files did not make it are made again or marked lost;
	// files without rows are listed, for onebox reconcile -sweep.
	st, err := sqlite.New(ctx, sqlite.Options{Path: path, ReadConns: 1, NoCreate: true})
	if err != nil {
		return fmt.Errorf("%s: %w", cfg.Name("ONEBOX_DATABASE_URL"), err)
	}
	defer st.Close()
	rec, err := backup.Reconcile(ctx, st, dst, backup.ReconcileOptions{Lists: []backup.Lister{dst}})
	if err != nil {
		return err
	}
	printReconciled(stdout, rec, false)
	return nil
}

// reconcileCommand is `onebox reconcile [-sweep]`: rows and media files
// brought back into agreement after a restore (see backup.Reconcile).
func reconcileCommand(ctx context.Context, cfg config.Config, sweep bool, grace time.Duration, stdout io.Writer, log *slog.Logger) (err error) {
	start := time.Now()
	st, primary, _, closeInstance, err := openInstance(ctx, cfg, "reconcile", sqlite.Options{Logger: log})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeInstance()) }()
	var m media.Storage = primary
	lists := []backup.Lister{primary}
	if cfg.MediaBackupDir != "" {
		b, err := medialocal.New(cfg.MediaBackupDir)
		if err != nil {
			return fmt.Errorf("%s: %w", cfg.Name("ONEBOX_MEDIA_BACKUP_DIR"), err)
		}
		defer b.Close()
		m, lists = mediamirror.New(primary, b, log), append(lists, b) // a sweep deletes from both
	}
	rec, err := backup.Reconcile(ctx, st, m, backup.ReconcileOptions{Lists: lists, Sweep: sweep, Grace: grace})
	if err != nil {
		return err
	}
	printReconciled(stdout, rec, sweep)
	fmt.Fprintf(stdout, "reconciled in %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}

// printReconciled is one line a photo or file changed or found, then a
// summary line.
func printReconciled(w io.Writer, r backup.Reconciled, swept bool) {
	for _, id := range r.Reprocessed {
		fmt.Fprintf(w, "reprocess %s: a variant was missing; back to processing, job enqueued\n", id)
	}
	for _, id := range r.Lost {
		fmt.Fprintf(w, "lost %s: its original was missing; rejected\n", id)
	}
	for _, k := range r.Orphans {
		fmt.Fprintf(w, "orphan %s\n", k)
	}
	fmt.Fprintf(w, "reconcile: %d photos checked, %d reprocessed, %d lost, %d files without a row", r.Photos, len(r.Reprocessed), len(r.Lost), len(r.Orphans))
	switch {
	case swept:
		fmt.Fprintf(w, ", %d swept (the rest are younger than -grace)\n", r.Swept)
	case len(r.Orphans) > 0:
		fmt.Fprintln(w, " (onebox reconcile -sweep removes them)")
	default:
		fmt.Fprintln(w)
	}
}

// refuse is restore's error for a destination that is not empty, naming
// the setting as it was given.
func refuse(cfg config.Config, env, what string, err error) error {
	if errors.Is(err, backup.ErrNotEmpty) {
		return fmt.Errorf("restore: refusing to restore into a non-empty %s (%s): %w; restore into an empty one, or point %s elsewhere",
			what, cfg.Name(env), err, cfg.Name(env))
	}
	return fmt.Errorf("restore: %s (%s): %w", what, cfg.Name(env), err)
}

func sumRows(m backup.Manifest) int64 {
	var n int64
	for _, c := range m.Tables {
		n += c
	}
	return n
}

func mediaBytes(m backup.Manifest) int64 {
	var n int64
	for _, f := range m.Media {
		n += f.Size
	}
	return n
}
