package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"onebox/config"
	"onebox/ops/logging"
)

// command is one subcommand: what help says of it, the settings it
// reads (each also one of its flags) and what it runs.
type command struct {
	name     string // as typed after onebox
	summary  string // one line, for onebox help
	usage    string // its --help, above the flags
	example  string
	settings []string // nil: every setting
	flags    func(fs *flag.FlagSet)
	noArgs   bool // refuses any argument after its flags (dispatch says so)
	run      func(ctx context.Context, cfg config.Config, args []string) error
}

// The settings of the commands that open the database directly.
var databaseSettings = []string{"ONEBOX_DATA_DIR", "ONEBOX_DATABASE_URL", "ONEBOX_LOG_LEVEL", "ONEBOX_LOG_FORMAT"}

// jobsSettings: with an external broker (ONEBOX_QUEUE_URL) the jobs and
// their dead letters are there, not in the database.
var jobsSettings = append([]string{"ONEBOX_QUEUE_URL"}, databaseSettings...)

// commands is onebox's command line. Each call builds it anew, so a
// command's own flags live no longer than one run.
func commands(lookupEnv func(string) (string, bool), stdout, stderr io.Writer, h hooks) []command {
	var jf jobsFlags       // jobs -all, -kind, -error
	var backupTo string    // backup -to
	var restoreFrom string // restore -from
	var copyFrom, copyTo string
	var sweep bool          // reconcile -sweep
	var grace time.Duration // reconcile -grace
	return []command{{
		name:    "serve",
		noArgs:  true,
		summary: "run the service: the API, the workers and the admin listener (the default command)",
		usage:   "usage: onebox [serve] [flags]\n\nRuns the service until SIGINT or SIGTERM, then drains. It listens first, so an address in use stops it before any database is created. -role=web runs only the API and -role=worker only the job workers, so they scale apart (default all).",
		example: "onebox serve -addr :8080 -data-dir ./data",
		run: func(ctx context.Context, cfg config.Config, args []string) error {
			log, flush := logging.New(stdout, logOptions(cfg, cfg.LogFlush))
			defer flush()
			return serve(ctx, cfg, lookupEnv, log, h)
		},
	}, {
		name:     "migrate",
		noArgs:   true,
		summary:  "create the database, or bring its schema up to date, and print each migration applied",
		usage:    "usage: onebox migrate [flags]\n\nApplies the migrations the database lacks (creating a SQLite file if missing; on PostgreSQL, ONEBOX_DATABASE_URL=postgres://…, the database must exist) and prints the name of each, or \"up to date\". Safe to run again, and while the service runs.",
		example:  "onebox migrate -data-dir ./data",
		settings: databaseSettings,
		run: func(ctx context.Context, cfg config.Config, args []string) error {
			return migrateCommand(ctx, cfg, stdout, newLogger(cfg, stderr))
		},
	}, {
		name:    "config",
		noArgs:  true,
		summary: "print the effective configuration as ONEBOX_* lines, secrets redacted",
		usage:   "usage: onebox config [flags]\n\nPrints every setting as the service would read it from the environment and these flags, with passwords and tokens redacted.",
		example: "onebox config -cache-url redis://localhost:6379",
		run: func(ctx context.Context, cfg config.Config, args []string) error {
			cfg.Print(stdout)
			return nil
		},
	}, {
		name:    "jobs",
		summary: "inspect and redrive the job queue in the database, with the service up or down: stats, dead, retry",
		usage: `usage: onebox jobs stats|dead|retry [ID...] [flags]

Reads the job queue in an existing database directly: it never creates or
migrates one (see onebox migrate). With ONEBOX_QUEUE_URL=nats://… it reads
JetStream's jobs and dead letters instead.

  stats          queued, in-flight and dead jobs of each kind, and the oldest's age
  dead           the dead-lettered jobs, newest first, one JSON object a line
                 (-kind and -error pick some)
  retry ID...    put those dead jobs back in the queue, as new jobs
  retry -kind K -error TEXT
                 put back the dead jobs of kind K whose last error contains
                 TEXT (either flag alone is enough)
  retry -all     put every dead job back in the queue`,
		example:  "onebox jobs stats -data-dir ./data",
		settings: jobsSettings,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&jf.all, "all", false, "with retry: every dead job")
			fs.StringVar(&jf.kind, "kind", "", "with dead or retry: only dead jobs of this kind")
			fs.StringVar(&jf.errText, "error", "", "with dead or retry: only dead jobs whose last error contains this text")
		},
		run: func(ctx context.Context, cfg config.Config, args []string) error {
			return jobsCommand(ctx, cfg, args, jf, stdout, stderr, newLogger(cfg, stderr))
		},
	}, {
		name:    "backup",
		summary: "copy the database and the media it references to a new directory or S3 prefix, with their digests, while the service runs; backup verify restores the continuous backup and checks it",
		usage: `usage: onebox backup -to DIR|s3://bucket/prefix?endpoint=…&region=… [flags]
       onebox backup verify [flags]

Writes a consistent snapshot of the database (VACUUM INTO) and a copy of
exactly the media files it references, read from the instance's media
storage (ONEBOX_MEDIA_URL: a directory or an S3 prefix), into DIR, which
must be missing or empty, with DIR/manifest.json last: the SHA-256 of
every file, the row count of every table. It checks the snapshot's
integrity first. Safe while the service runs; it never creates or
migrates a database.

With s3://bucket/prefix (ONEBOX_MEDIA_URL's form; credentials from
AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) the same files are objects
under the prefix, which must hold none; the snapshot is staged in a temp
directory beside the database and removed after the upload.

backup verify proves the continuous backup restores: it writes a sentinel
row into the database, waits ONEBOX_BACKUP_RECOVERY_POINT, restores the
Litestream replica (ONEBOX_LITESTREAM_CONFIG) into a scratch directory
beside the database, runs PRAGMA integrity_check, checks the sentinel is
there, that every media file the restored database references is in
ONEBOX_MEDIA_BACKUP_DIR and a sample of them match their SHA-256, and
prints the restore time. It exits non-zero naming what failed.`,
		example:  "onebox backup -to /srv/backups/onebox-2026-01-31 -data-dir ./data",
		settings: append(append([]string{}, verifySettings...), "ONEBOX_MEDIA_URL"),
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&backupTo, "to", "", "the new `dir`ectory, or empty s3://bucket/prefix, to write the backup into")
		},
		run: func(ctx context.Context, cfg config.Config, args []string) error {
			switch {
			case len(args) == 0:
				return backupCommand(ctx, cfg, backupTo, stdout, newLogger(cfg, stderr))
			case args[0] == "verify" && len(args) == 1 && backupTo == "":
				return verifyCommand(ctx, cfg, stdout, newLogger(cfg, stderr))
			case args[0] == "verify" && len(args) == 1:
				return errors.New("backup verify: -to is backup's, not verify's (see onebox backup --help)")
			}
			return fmt.Errorf("backup: unexpected argument %q (see onebox backup --help)", args[0])
		},
	}, {
		name:    "restore",
		noArgs:  true,
		summary: "bring a backup (a directory or an S3 prefix) back into an empty data directory and check it against its manifest",
		usage: `usage: onebox restore -from DIR|s3://bucket/prefix?endpoint=…&region=… [flags]

Copies the database and media of the backup in DIR or under the S3 prefix
(see onebox backup) into the data directory and the media storage
(ONEBOX_MEDIA_URL: a directory or an S3 prefix), which must be missing or
empty, with the service stopped. It then checks PRAGMA integrity_check, the row count of every
table and the SHA-256 of every media file against the manifest, and exits
non-zero naming the first difference. Last, it reconciles rows and files
(see onebox reconcile, without -sweep).`,
		example:  "onebox restore -from /srv/backups/onebox-2026-01-31 -data-dir ./data",
		settings: backupSettings,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&restoreFrom, "from", "", "the backup `dir`ectory, or s3://bucket/prefix, to restore")
		},
		run: func(ctx context.Context, cfg config.Config, args []string) error {
			return restoreCommand(ctx, cfg, restoreFrom, stdout, newLogger(cfg, stderr))
		},
	}, {
		name:    "copy",
		noArgs:  true,
		summary: "copy a whole database to another backend (SQLite to PostgreSQL and back), checked by row counts and checksums",
		usage: `usage: onebox copy -from URL -to URL [flags]

Copies every table (users, sessions, photos, events with their ids,
idempotency keys, queued, failing and dead jobs) in batches, moves the
destination's event sequence past the largest id, then compares each
table's row count and SHA-256 checksum on both sides. The destination is
created and migrated if need be. Rerun after an interruption, it skips
the rows already there and resumes; a destination that holds other data is
refused. Stop writes to the source first (see README, "Moving to
PostgreSQL").`,
		example: "onebox copy -from sqlite:data/onebox.db -to postgres://onebox@db.internal/onebox",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&copyFrom, "from", "", "the source database `url`: sqlite:PATH or postgres://…")
			fs.StringVar(&copyTo, "to", "", "the destination database `url`")
		},
		run: func(ctx context.Context, cfg config.Config, args []string) error {
			return copyCommand(ctx, copyFrom, copyTo, stdout, newLogger(cfg, stderr))
		},
	}, {
		name:    "reconcile",
		noArgs:  true,
		summary: "after a restore, make again or mark lost the photos whose files are missing, and list (or -sweep) files without a row",
		usage: `usage: onebox reconcile [-sweep] [flags]

Compares the photos in the database with the media files (and those in
ONEBOX_MEDIA_BACKUP_DIR, if set). A photo whose variant is missing goes
back to processing with its job enqueued, to be made again from its
original; one whose original is missing is rejected as lost. Files that no
row references are listed, and with -sweep deleted once older than -grace
(so a sweep beside the running service spares uploads in progress).
onebox restore runs it without -sweep.`,
		example:  "onebox reconcile -sweep -data-dir ./data",
		settings: reconcileSettings,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&sweep, "sweep", false, "delete the files no row references")
			fs.DurationVar(&grace, "grace", 10*time.Minute, "with -sweep, spare files written more recently than this")
		},
		run: func(ctx context.Context, cfg config.Config, args []string) error {
			return reconcileCommand(ctx, cfg, sweep, grace, stdout, newLogger(cfg, stderr))
		},
	}, {
		name:    "ops",
		summary: "ask the running instance's admin listener for its diagnosis or its scale-out advice: ops diagnose|advise",
		usage: `usage: onebox ops diagnose|advise [flags]

Asks the running instance, on its admin listener, for its reading of the
dependency chain (HTTP, cache, database, queue, disk) and prints it
(diagnose), or for whether each scale-out step is justified now, with
its threshold and the numbers that decide it (advise).`,
		example:  "onebox ops diagnose -admin-addr 127.0.0.1:8081",
		settings: []string{"ONEBOX_ADMIN_ADDR", "ONEBOX_OPS_TOKEN"},
		run: func(ctx context.Context, cfg config.Config, args []string) error {
			return opsCommand(ctx, cfg, args, stdout)
		},
	}, {
		name:     "version",
		summary:  "print the version, commit and Go version of this build",
		usage:    "usage: onebox version",
		example:  "onebox version",
		settings: []string{},
		run: func(ctx context.Context, cfg config.Config, args []string) error {
			fmt.Fprintln(stdout, version())
			return nil
		},
	}, {
		name:     "help",
		summary:  "print this list, or a command's help",
		usage:    "usage: onebox help [command]",
		example:  "onebox help jobs",
		settings: []string{},
		// run is dispatch's, which knows the other commands.
	}}
}

// dispatch runs the command args name (serve when the first argument is
// a flag or there is none). --help anywhere prints the command's help
// to stdout and succeeds.
func dispatch(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer, h hooks) error {
	cmds := commands(lookupEnv, stdout, stderr, h)
	name := "serve"
	switch {
	case len(args) > 0 && isHelp(args[0]):
		return printCommands(stdout, cmds)
	case len(args) > 0 && !strings.HasPrefix(args[0], "-"):
		name, args = args[0], args[1:]
	}
	cmd, ok := find(cmds, name)
	if !ok {
		return fmt.Errorf("unknown command %q (onebox help lists them)", name)
	}
	if name == "help" {
		if len(args) == 0 || isHelp(args[0]) {
			return printCommands(stdout, cmds)
		}
		if cmd, ok = find(cmds, args[0]); !ok {
			return fmt.Errorf("unknown command %q (onebox help lists them)", args[0])
		}
		args = []string{"--help"}
	}
	cfg, rest, err := config.Parse(config.Command{
		Name: "onebox " + cmd.name, Usage: cmd.usage + "\n\nexample: " + cmd.example, Settings: cmd.settings, Flags: cmd.flags,
		Schemes: backendTable().schemes(),
	}, args, lookupEnv, stdout)
	if errors.Is(err, config.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if cmd.noArgs && len(rest) > 0 {
		return fmt.Errorf("%s: unexpected argument %q (see onebox %s --help)", cmd.name, rest[0], cmd.name)
	}
	return cmd.run(ctx, cfg, rest)
}

func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help":
		return true
	}
	return false
}

func find(cmds []command, name string) (command, bool) {
	for _, c := range cmds {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// printCommands is onebox help: each command with one line.
func printCommands(w io.Writer, cmds []command) error {
	fmt.Fprintln(w, "onebox is the whole service in one binary.\n\nusage: onebox [command] [flags]\n\ncommands:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range cmds {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "\nEvery setting is an ONEBOX_* variable and a flag; a flag wins, and may come anywhere after the command.\nonebox COMMAND --help shows a command's flags, with their types and defaults.")
	return err
}

// listeners are serve's, opened before anything else.
type listeners struct {
	public, admin net.Listener // admin nil when ONEBOX_ADMIN_ADDR is empty
}

// listen opens (or, through a hand-over, inherits) the public listener
// and, unless it is off, the admin one. Errors name the setting as it
// was given.
func listen(cfg config.Config, listen func(network, addr string) (net.Listener, error)) (listeners, error) {
	var lns listeners
	var err error
	if lns.public, err = listen("tcp", cfg.Addr); err != nil {
		return lns, fmt.Errorf("%s: %w", cfg.Name("ONEBOX_ADDR"), err)
	}
	if cfg.AdminAddr != "" {
		if lns.admin, err = listen("tcp", cfg.AdminAddr); err != nil {
			lns.public.Close()
			return listeners{}, fmt.Errorf("%s: %w", cfg.Name("ONEBOX_ADMIN_ADDR"), err)
		}
	}
	return lns, nil
}

func (l listeners) close() {
	for _, ln := range []net.Listener{l.public, l.admin} {
		if ln != nil {
			ln.Close()
		}
	}
}
