package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"onebox/backup"
	"onebox/config"
	medialocal "onebox/media/local"
	"onebox/store/sqlite"
)

// The settings of backup and restore: the database's and the media's.
var backupSettings = append([]string{"ONEBOX_MEDIA_URL"}, databaseSettings...)

// mediaPath is the directory ONEBOX_MEDIA_URL names.
func mediaPath(cfg config.Config) (string, error) {
	u, err := config.BackendURL(cfg.Name("ONEBOX_MEDIA_URL"), cfg.MediaURL)
	if err != nil {
		return "", err
	}
	if u.Scheme != "file" {
		return "", fmt.Errorf("%s: unsupported scheme %q", cfg.Name("ONEBOX_MEDIA_URL"), u.Scheme)
	}
	if u.Opaque != "" {
		return u.Opaque, nil
	}
	return u.Path, nil
}

// backupCommand is `onebox backup -to DIR`. It reads the database and
// the media beside a running service, and never creates or migrates a
// database.
func backupCommand(ctx context.Context, cfg config.Config, to string, stdout io.Writer, log *slog.Logger) error {
	if to == "" {
		return errors.New("backup: -to DIR is required (see onebox backup --help)")
	}
	start := time.Now()
	path, err := databasePath(cfg)
	if err != nil {
		return err
	}
	st, err := sqlite.New(ctx, sqlite.Options{Path: path, ReadConns: 1, NoCreate: true, SkipMigrate: true, Logger: log})
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("backup: no database at %s (set ONEBOX_DATA_DIR or -data-dir, or ONEBOX_DATABASE_URL or -database-url, to the instance's)", path)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", cfg.Name("ONEBOX_DATABASE_URL"), err)
	}
	defer st.Close()
	dir, err := mediaPath(cfg)
	if err != nil {
		return err
	}
	src, err := medialocal.New(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", cfg.Name("ONEBOX_MEDIA_URL"), err)
	}
	defer src.Close()
	m, err := backup.Backup(ctx, st, src, to, backup.Options{Version: version()})
	if errors.Is(err, backup.ErrNotEmpty) {
		return fmt.Errorf("backup: -to %w; back up into a new directory", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backed up %s: %d rows in %d tables, integrity check ok, %d bytes\n", path, sumRows(m), len(m.Tables), m.Database.Size)
	fmt.Fprintf(stdout, "backed up %s: %d media files, %d bytes, each with its SHA-256\n", dir, len(m.Media), mediaBytes(m))
	if len(m.Missing) > 0 {
		fmt.Fprintf(stdout, "warning: %d referenced media files were already gone (listed under \"missing\" in the manifest), the first %s\n", len(m.Missing), m.Missing[0])
	}
	fmt.Fprintf(stdout, "wrote %s in %s\n", to, time.Since(start).Round(time.Millisecond))
	return nil
}

// restoreCommand is `onebox restore -from DIR`: only into an empty data
// directory, so nothing live is ever overwritten or mixed in.
func restoreCommand(ctx context.Context, cfg config.Config, from string, stdout io.Writer) error {
	if from == "" {
		return errors.New("restore: -from DIR is required (see onebox restore --help)")
	}
	start := time.Now()
	path, err := databasePath(cfg)
	if err != nil {
		return err
	}
	dir, err := mediaPath(cfg)
	if err != nil {
		return err
	}
	if err := backup.CheckEmpty(cfg.DataDir); err != nil {
		return refuse(cfg, "ONEBOX_DATA_DIR", "data directory", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		return refuse(cfg, "ONEBOX_DATABASE_URL", "database", fmt.Errorf("%s exists (%w)", path, backup.ErrNotEmpty))
	}
	if err := backup.CheckEmpty(dir); err != nil {
		return refuse(cfg, "ONEBOX_MEDIA_URL", "media directory", err)
	}
	dst, err := medialocal.New(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", cfg.Name("ONEBOX_MEDIA_URL"), err)
	}
	defer dst.Close()
	r, err := backup.Restore(ctx, from, path, dst)
	if err != nil {
		return fmt.Errorf("%w\nthe restore is incomplete: empty %s before trying again", err, cfg.DataDir)
	}
	m := r.Manifest
	fmt.Fprintf(stdout, "restored %s (taken %s by %s)\n", from, m.Created.Format(time.RFC3339), m.Version)
	fmt.Fprintf(stdout, "database %s: integrity check ok, %d rows in %d tables as the manifest counts\n", path, sumRows(m), len(m.Tables))
	fmt.Fprintf(stdout, "media %s: %d files, %d bytes, every SHA-256 as the manifest says\n", dir, len(m.Media), mediaBytes(m))
	if len(m.Missing) > 0 {
		fmt.Fprintf(stdout, "warning: %d referenced media files were not in the backup (gone when it was taken), the first %s\n", len(m.Missing), m.Missing[0])
	}
	fmt.Fprintf(stdout, "restored %d bytes in %s\n", r.Bytes, time.Since(start).Round(time.Millisecond))
	return nil
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
