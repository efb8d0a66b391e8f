package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"onebox/backup"
	"onebox/backup/litestream"
	"onebox/config"
	"onebox/lease"
	medialocal "onebox/media/local"
	"onebox/ops/metrics"
	"onebox/store/sqlite"
)

// The settings of backup verify: the database's, the media copy's and
// the verification's own.
var verifySettings = append([]string{
	"ONEBOX_MEDIA_BACKUP_DIR", "ONEBOX_BACKUP_RECOVERY_POINT", "ONEBOX_BACKUP_VERIFY_SAMPLE",
	"ONEBOX_LITESTREAM", "ONEBOX_LITESTREAM_CONFIG",
}, databaseSettings...)

// verifyOptions are backup verify's for the instance cfg describes,
// whose live database is live; close releases the media copy.
func verifyOptions(cfg config.Config, live backup.Live) (o backup.VerifyOptions, close func() error, err error) {
	path, err := databasePath(cfg)
	if err != nil {
		return o, nil, err
	}
	if path, err = filepath.Abs(path); err != nil {
		return o, nil, err
	}
	bin, err := exec.LookPath(cfg.Litestream)
	if err != nil {
		return o, nil, fmt.Errorf("%s: %w (backup verify restores with litestream v0.5)", cfg.Name("ONEBOX_LITESTREAM"), err)
	}
	if _, err := os.Stat(cfg.LitestreamConfig); err != nil {
		return o, nil, fmt.Errorf("%s: %w", cfg.Name("ONEBOX_LITESTREAM_CONFIG"), err)
	}
	o = backup.VerifyOptions{
		Live: live, Replica: litestream.New(bin, cfg.LitestreamConfig, path),
		// Beside the database: the restore needs as much room, and a
		// temp directory may be memory (tmpfs).
		Scratch:       filepath.Dir(path),
		RecoveryPoint: cfg.BackupRecoveryPoint, Sample: cfg.BackupVerifySample,
	}
	close = func() error { return nil }
	if cfg.MediaBackupDir != "" {
		m, err := medialocal.New(cfg.MediaBackupDir)
		if err != nil {
			return o, nil, fmt.Errorf("%s: %w", cfg.Name("ONEBOX_MEDIA_BACKUP_DIR"), err)
		}
		o.Media, close = m, m.Close
	}
	return o, close, nil
}

// verifyCommand is `onebox backup verify`: one verification of the
// running (or stopped) instance's backup, printed.
func verifyCommand(ctx context.Context, cfg config.Config, stdout io.Writer, log *slog.Logger) error {
	path, err := databasePath(cfg)
	if err != nil {
		return err
	}
	// The sentinel is written into the live database: never create or
	// migrate one (a database without the sentinel's table says so).
	live, err := sqlite.New(ctx, sqlite.Options{Path: path, ReadConns: 1, NoCreate: true, SkipMigrate: true, Logger: log})
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("backup verify: no database at %s (set ONEBOX_DATA_DIR or -data-dir, or ONEBOX_DATABASE_URL or -database-url, to the instance's)", path)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", cfg.Name("ONEBOX_DATABASE_URL"), err)
	}
	defer live.Close()
	o, closeMedia, err := verifyOptions(cfg, live)
	if err != nil {
		return err
	}
	defer closeMedia()
	v, err := backup.Verify(ctx, o)
	printVerification(stdout, cfg, o, v)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backup verified in %s\n", v.Took.Round(time.Millisecond))
	return nil
}

// printVerification says what a verification checked, as far as it got.
func printVerification(w io.Writer, cfg config.Config, o backup.VerifyOptions, v backup.Verification) {
	if v.Restore == 0 {
		return
	}
	fmt.Fprintf(w, "restored the replica (%s) in %s: %d bytes\n", cfg.LitestreamConfig, v.Restore.Round(time.Millisecond), v.DatabaseBytes)
	if v.Check > 0 {
		fmt.Fprintf(w, "integrity check in %s\n", v.Check.Round(10*time.Microsecond))
	}
	if !v.RestoredSentinel.IsZero() && !v.RestoredSentinel.Before(v.SentinelAt) {
		fmt.Fprintf(w, "sentinel written %s before the restore: present\n", o.RecoveryPoint)
	}
	if o.Media != nil && v.MediaFiles > 0 {
		fmt.Fprintf(w, "media copy %s: %d files referenced, %d SHA-256 checked\n", cfg.MediaBackupDir, v.MediaFiles, v.MediaDigests)
	}
}

// scheduledVerify is serve's backup verification, on a schedule.
type scheduledVerify struct {
	cfg   config.Config
	o     backup.VerifyOptions
	close func() error
	m     *metrics.Metrics
	log   *slog.Logger
}

// newScheduledVerify checks what the verification needs (the litestream
// binary, its config, the media copy) at start, not at its first run.
// live must be the SQLite store (config allows the schedule only then).
func newScheduledVerify(cfg config.Config, live any, m *metrics.Metrics, log *slog.Logger) (*scheduledVerify, error) {
	l, ok := live.(backup.Live)
	if !ok {
		return nil, fmt.Errorf("%s: the store cannot hold a backup sentinel (SQLite only)", cfg.Name("ONEBOX_BACKUP_VERIFY_EVERY"))
	}
	o, closeMedia, err := verifyOptions(cfg, l)
	if err != nil {
		return nil, err
	}
	return &scheduledVerify{cfg: cfg, o: o, close: closeMedia, m: m, log: log}, nil
}

// run verifies on the instance holding the lease, at once and then every
// ONEBOX_BACKUP_VERIFY_EVERY, each result logged and in the metrics.
func (s *scheduledVerify) run(ctx context.Context, locker lease.Locker) error {
	every := s.cfg.BackupVerifyEvery
	s.m.BackupVerifySchedule(every)
	return lease.Run(ctx, locker, "onebox.backup-verify", lease.RunOptions{Logger: s.log}, func(ctx context.Context) error {
		s.m.BackupVerifyRunning(true)
		defer s.m.BackupVerifyRunning(false)
		backup.VerifyEvery(ctx, every, s.o, func(v backup.Verification, err error) {
			s.m.BackupVerified(err == nil, v.Restore)
			attrs := []any{"restore_ms", v.Restore.Milliseconds(), "integrity_check_ms", v.Check.Milliseconds(),
				"database_bytes", v.DatabaseBytes, "media_files", v.MediaFiles, "media_digests", v.MediaDigests, "took_ms", v.Took.Milliseconds()}
			if err != nil {
				s.log.Error("backup verify failed", append(attrs, "err", err.Error())...)
				return
			}
			s.log.Info("backup verified", attrs...)
		})
		return nil
	})
}
