// Package config reads onebox's configuration from ONEBOX_* environment
// variables and the equivalent command-line flags (a flag wins). Only
// main calls it; libraries take plain option structs.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Rate is a token-bucket policy as written in config: "300/1m".
type Rate struct {
	Limit  int
	Window time.Duration
}

func (r Rate) String() string { return fmt.Sprintf("%d/%s", r.Limit, r.Window) }

// ParseRate parses "N/duration", e.g. "300/1m".
func ParseRate(s string) (Rate, error) {
	n, w, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("want N/duration such as 300/1m, got %q", s)
	}
	limit, err := strconv.Atoi(n)
	if err != nil || limit < 1 {
		return Rate{}, fmt.Errorf("want a positive count before /, got %q", n)
	}
	window, err := time.ParseDuration(w)
	if err != nil || window <= 0 {
		return Rate{}, fmt.Errorf("want a positive duration after /, got %q", w)
	}
	return Rate{Limit: limit, Window: window}, nil
}

// The roles of an instance (ONEBOX_ROLE), so the API and the job
// pipeline scale apart.
const (
	RoleAll    = "all"    // the API and the workers: one instance is the whole service
	RoleWeb    = "web"    // the API; its jobs go to the queue for the workers
	RoleWorker = "worker" // the workers; the public listener serves only health
)

// Config is the whole effective configuration.
type Config struct {
	Addr      string
	AdminAddr string
	DataDir   string
	// Role is what this instance runs: RoleAll, RoleWeb or RoleWorker.
	Role string

	DatabaseURL string
	// DatabaseReplicaURLs are PostgreSQL streaming replicas that serve
	// reads (ONEBOX_DATABASE_REPLICA_URLS, comma-separated).
	DatabaseReplicaURLs []string
	// DatabaseMaxLag and DatabaseMaxLagBytes take a replica out of the
	// read rotation while it is further behind the primary.
	DatabaseMaxLag      time.Duration
	DatabaseMaxLagBytes int64
	// DBMaxConns sizes the PostgreSQL pool of the primary (and of each
	// replica).
	DBMaxConns int
	CacheURL   string
	LimiterURL string
	QueueURL   string
	MediaURL   string
	NotifyURL  string
	// MediaBackupDir, when set, holds a copy of every media file, written
	// before a Put returns (media/mirror); "" is no copy.
	MediaBackupDir string
	// MediaPublicURL, when set, is the base URL (ending in "/") at which
	// clients fetch public media keys (a CDN, or the bucket's public
	// address); "" is this service's /media/. MediaOrigin is its origin.
	MediaPublicURL, MediaOrigin string
	// BackupVerifyEvery, when positive, runs `onebox backup verify` on
	// that schedule inside serve; BackupRecoveryPoint is how old a write
	// may be and still be missing from the replica, BackupVerifySample
	// how many media digests each run checks (0: all). Litestream and
	// LitestreamConfig are the binary and the config that restore.
	BackupVerifyEvery   time.Duration
	BackupRecoveryPoint time.Duration
	BackupVerifySample  int
	Litestream          string
	LitestreamConfig    string

	MaxUploadBytes  int64
	MaxPixels       int64
	UploadTimeout   time.Duration
	UploadBacklog   int
	JPEGQuality     int
	DecodeMemory    int64
	PhotoWorkers    int
	JobVisibility   time.Duration
	JobAbandonedMax int
	// JobDeadRetention is how long a dead-lettered job is kept; 0
	// keeps them forever.
	JobDeadRetention time.Duration
	// JobDeadMax is how many dead-lettered jobs are kept at most, the
	// newest; 0 is no count bound.
	JobDeadMax     int
	EventRetention time.Duration
	// EventsFallbackPoll is how often an event stream reads the store
	// while the notification hub is down.
	EventsFallbackPoll  time.Duration
	IdempotencyTTL      time.Duration
	ModerationBlocklist string

	CacheTTL       time.Duration
	CacheNegative  time.Duration
	CacheMaxBytes  int64
	ProfileSMaxAge time.Duration

	RateAPI        Rate
	RateAuth       Rate
	RateAuthHandle Rate
	RateUpload     Rate
	RateAuthDevice Rate
	// RateJobProcess and RateJobCleanup cap how many photo and cleanup
	// jobs start per window (the zero Rate: no cap); jobs over it wait.
	RateJobProcess Rate
	RateJobCleanup Rate
	TrustedProxies []netip.Prefix
	// PublicURL is the site's origin (scheme://host[:port], default port
	// dropped) when ONEBOX_PUBLIC_URL is set, else "".
	PublicURL string
	// DeviceKey signs device tokens; empty turns them off.
	DeviceKey string
	DeviceTTL time.Duration

	SessionTTL      time.Duration
	HashConcurrency int
	DBReadConns     int
	DBBusyTimeout   time.Duration
	// DBMaxRead bounds an SQLite list read's snapshot (ONEBOX_DB_MAX_READ).
	DBMaxRead time.Duration
	// WALMaxBytes bounds the SQLite WAL file (ONEBOX_WAL_MAX_BYTES).
	WALMaxBytes    int64
	MaxBodyBytes   int64
	BodyTimeout    time.Duration
	RequestTimeout time.Duration
	SSEPerUser     int
	SSEMax         int
	// MaxInFlight bounds the requests handled at once; past it they are
	// shed with 503. 0 is no bound.
	MaxInFlight   int
	ShutdownDelay time.Duration
	DrainTimeout  time.Duration
	PIDFile       string

	LogLevel  string
	LogFormat string
	LogFlush  time.Duration
	AccessLog bool
	Metrics   bool
	Tracing   bool
	SlowQuery time.Duration

	OpsToken       string
	OpsInterval    time.Duration
	AlertWebhook   string
	AlertErrorRate float64
	AlertP95       time.Duration
	AlertFor       time.Duration
	AlertDiskFree  float64
	Drills         bool

	raw   map[string]string // effective value of each variable read, for Print
	names map[string]string // of each variable read, how errors name it (Name)
}

// setting is one variable: its env name, flag name, default and parser.
type setting struct {
	env, flag, def, usage string
	secret                bool
	emptyOK               bool // an empty variable means empty, not unset
	hidden                bool // the whole value is a secret: printed as xxxxx
	set                   func(c *Config, v string) error
}

func settings() []setting {
	dur := func(dst func(*Config) *time.Duration) func(*Config, string) error {
		return func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return fmt.Errorf("want a duration such as 30s, got %q", v)
			}
			*dst(c) = d
			return nil
		}
	}
	rate := func(dst func(*Config) *Rate) func(*Config, string) error {
		return func(c *Config, v string) error {
			r, err := ParseRate(v)
			*dst(c) = r
			return err
		}
	}
	// optRate is rate where "" or "0" is no cap (the zero Rate).
	optRate := func(dst func(*Config) *Rate) func(*Config, string) error {
		return func(c *Config, v string) error {
			if v == "" || v == "0" {
				*dst(c) = Rate{}
				return nil
			}
			return rate(dst)(c, v)
		}
	}
	str := func(dst func(*Config) *string) func(*Config, string) error {
		return func(c *Config, v string) error { *dst(c) = v; return nil }
	}
	boolean := func(dst func(*Config) *bool) func(*Config, string) error {
		return func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("want true or false, got %q", v)
			}
			*dst(c) = b
			return nil
		}
	}
	fraction := func(dst func(*Config) *float64) func(*Config, string) error {
		return func(c *Config, v string) error {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f <= 0 || f > 1 {
				return fmt.Errorf("want a fraction over 0 and at most 1, such as 0.05, got %q", v)
			}
			*dst(c) = f
			return nil
		}
	}
	count := func(dst func(*Config) *int) func(*Config, string) error {
		return func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return fmt.Errorf("want a whole number, 0 or more, got %q", v)
			}
			*dst(c) = n
			return nil
		}
	}
	posInt := func(v string) (int64, error) {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return 0, fmt.Errorf("want a positive integer, got %q", v)
		}
		return n, nil
	}
	return []setting{
		{env: "ONEBOX_ADDR", flag: "addr", def: ":8080", usage: "public HTTP listen address", set: str(func(c *Config) *string { return &c.Addr })},
		{env: "ONEBOX_ROLE", flag: "role", def: RoleAll, usage: "what this instance runs: all (the API and the job workers), web (the API; jobs are enqueued for workers elsewhere) or worker (the job workers; the public listener serves only /health/)", set: func(c *Config, v string) error {
			switch v {
			case RoleAll, RoleWeb, RoleWorker:
				c.Role = v
				return nil
			}
			return fmt.Errorf("want all, web or worker, got %q", v)
		}},
		{env: "ONEBOX_ADMIN_ADDR", flag: "admin-addr", def: "127.0.0.1:8081", emptyOK: true, usage: "operator listener (metrics, dashboard); empty turns it off", set: str(func(c *Config) *string { return &c.AdminAddr })},
		{env: "ONEBOX_DATA_DIR", flag: "data-dir", def: "./data", usage: "directory for the database and media", set: str(func(c *Config) *string { return &c.DataDir })},
		{env: "ONEBOX_DATABASE_URL", flag: "database-url", def: "", usage: "store backend and its job queue: sqlite:PATH (default sqlite: + DATA_DIR/onebox.db) or postgres://USER@HOST/DB", secret: true, set: str(func(c *Config) *string { return &c.DatabaseURL })},
		{env: "ONEBOX_DATABASE_REPLICA_URLS", flag: "database-replica-urls", def: "", emptyOK: true, usage: "PostgreSQL streaming replicas for reads, postgres://… comma-separated (only with a postgres:// ONEBOX_DATABASE_URL)", secret: true, set: func(c *Config, v string) error {
			c.DatabaseReplicaURLs = nil
			for r := range strings.SplitSeq(v, ",") {
				if r = strings.TrimSpace(r); r == "" {
					continue
				}
				if u, err := url.Parse(r); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
					return fmt.Errorf("want postgres://host/db URLs separated by commas, got %q", Redact(r))
				}
				c.DatabaseReplicaURLs = append(c.DatabaseReplicaURLs, r)
			}
			return nil
		}},
		{env: "ONEBOX_DATABASE_MAX_LAG", flag: "database-max-lag", def: "5s", usage: "a replica further behind than this (pg_stat_replication.replay_lag) leaves the read rotation until it catches up", set: dur(func(c *Config) *time.Duration { return &c.DatabaseMaxLag })},
		{env: "ONEBOX_DATABASE_MAX_LAG_BYTES", flag: "database-max-lag-bytes", def: "16777216", usage: "a replica more WAL bytes behind than this leaves the read rotation until it catches up", set: func(c *Config, v string) error {
			n, err := posInt(v)
			c.DatabaseMaxLagBytes = n
			return err
		}},
		{env: "ONEBOX_DB_MAX_CONNS", flag: "db-max-conns", def: "16", usage: "PostgreSQL connections per pool (the primary's, and each replica's)", set: func(c *Config, v string) error {
			n, err := posInt(v)
			c.DBMaxConns = int(n)
			return err
		}},
		{env: "ONEBOX_DB_READ_CONNS", flag: "db-read-conns", def: strconv.Itoa(16 * runtime.NumCPU()), usage: "SQLite read connections (WAL readers do not block each other)", set: func(c *Config, v string) error {
			n, err := posInt(v)
			c.DBReadConns = int(n)
			return err
		}},
		{env: "ONEBOX_WAL_MAX_BYTES", flag: "wal-max-bytes", def: "67108864", usage: "the SQLite WAL file's bound: past it readiness reports it (advisory) and the OneboxWALOverBound alert fires; onebox's checkpoints keep the WAL under it", set: func(c *Config, v string) error {
			n, err := posInt(v)
			c.WALMaxBytes = n
			return err
		}},
		{env: "ONEBOX_DB_BUSY_TIMEOUT", flag: "db-busy-timeout", def: "5s", usage: "how long an SQLite write waits for a lock another process holds before it answers 503", set: dur(func(c *Config) *time.Duration { return &c.DBBusyTimeout })},
		{env: "ONEBOX_DB_MAX_READ", flag: "db-max-read", def: "5s", usage: "the longest an SQLite list read may hold its snapshot (past it the read fails, 503): a snapshot keeps the WAL from being checkpointed past it, so this bounds the WAL while writes flow", set: dur(func(c *Config) *time.Duration { return &c.DBMaxRead })},
		{env: "ONEBOX_CACHE_URL", flag: "cache-url", def: "memory://", usage: "cache backend: memory://, redis://[:PASSWORD@]HOST[:PORT][/DB] (rediss:// for TLS; shared by instances), or none", secret: true, set: str(func(c *Config) *string { return &c.CacheURL })},
		{env: "ONEBOX_LIMITER_URL", flag: "limiter-url", def: "memory://", usage: "rate limiter backend: memory:// (per instance) or redis://[:PASSWORD@]HOST[:PORT][/DB] (rediss:// for TLS; one budget for all instances)", secret: true, set: str(func(c *Config) *string { return &c.LimiterURL })},
		{env: "ONEBOX_QUEUE_URL", flag: "queue-url", def: "", usage: "job queue backend: empty means the store's own database; nats://HOST:PORT[?stream=JOBS&prefix=onebox] is JetStream, fed from the store's table by a relay", secret: true, set: str(func(c *Config) *string { return &c.QueueURL })},
		{env: "ONEBOX_MEDIA_URL", flag: "media-url", def: "", usage: "media storage: file:DIR (default file: + DATA_DIR/media)", secret: true, set: str(func(c *Config) *string { return &c.MediaURL })},
		{env: "ONEBOX_MEDIA_BACKUP_DIR", flag: "media-backup-dir", def: "", usage: "directory that gets a copy of every media file before its write is acknowledged (another disk); empty is none", set: str(func(c *Config) *string { return &c.MediaBackupDir })},
		{env: "ONEBOX_BACKUP_VERIFY_EVERY", flag: "backup-verify-every", def: "0s", usage: "run onebox backup verify on this schedule inside serve (one instance at a time, under a lease): restore the Litestream replica and the media copy and check them; 0 is never", set: dur(func(c *Config) *time.Duration { return &c.BackupVerifyEvery })},
		{env: "ONEBOX_BACKUP_RECOVERY_POINT", flag: "backup-recovery-point", def: "5s", usage: "backup verify writes a sentinel row, waits this long and restores: the replica must hold it (Litestream ships a commit within 1.1 s with litestream.yml; the rest is margin against false alarms)", set: dur(func(c *Config) *time.Duration { return &c.BackupRecoveryPoint })},
		{env: "ONEBOX_BACKUP_VERIFY_SAMPLE", flag: "backup-verify-sample", def: "100", usage: "media files, chosen at random, whose SHA-256 backup verify checks in the media copy (every referenced file is checked to exist); 0 checks all", set: count(func(c *Config) *int { return &c.BackupVerifySample })},
		{env: "ONEBOX_LITESTREAM", flag: "litestream", def: "litestream", usage: "the litestream binary (v0.5) backup verify restores with: a path, or a name looked up in PATH", set: str(func(c *Config) *string { return &c.Litestream })},
		{env: "ONEBOX_LITESTREAM_CONFIG", flag: "litestream-config", def: "litestream.yml", usage: "the Litestream config that replicates the database, whose replica backup verify restores", set: str(func(c *Config) *string { return &c.LitestreamConfig })},
		{env: "ONEBOX_MEDIA_PUBLIC_URL", flag: "media-public-url", def: "", usage: "base URL at which clients fetch public media, such as https://cdn.example.com/media/ (a CDN, or a public bucket's address); the page's Content-Security-Policy admits its origin; empty is this service's /media/", set: func(c *Config, v string) error {
			u, origin, err := mediaPublicURL(v)
			c.MediaPublicURL, c.MediaOrigin = u, origin
			return err
		}},
		{env: "ONEBOX_NOTIFY_URL", flag: "notify-url", def: "memory://", usage: "notification hub: memory:// (this instance only), postgres://… (LISTEN/NOTIFY) or nats://HOST[:PORT][,…][?subject=S] (shared by instances)", secret: true, set: str(func(c *Config) *string { return &c.NotifyURL })},
		{env: "ONEBOX_MAX_UPLOAD_BYTES", flag: "max-upload-bytes", def: "20971520", usage: "largest photo upload, in bytes", set: func(c *Config, v string) error {
			n, err := posInt(v)
			c.MaxUploadBytes = n
			return err
		}},
		{env: "ONEBOX_MAX_PIXELS", flag: "max-pixels", def: "50000000", usage: "largest photo, in pixels (checked from the header before decoding)", set: func(c *Config, v string) error {
			n, err := posInt(v)
			c.MaxPixels = n
			return err
		}},
		{env: "ONEBOX_UPLOAD_TIMEOUT", flag: "upload-timeout", def: "2m", usage: "deadline of one upload request", set: dur(func(c *Config) *time.Duration { return &c.UploadTimeout })},
		{env: "ONEBOX_UPLOAD_BACKLOG", flag: "upload-backlog", def: "1000", usage: "photos waiting for the pipeline before uploads are refused with 503; 0 is no bound", set: count(func(c *Config) *int { return &c.UploadBacklog })},
		{env: "ONEBOX_JPEG_QUALITY", flag: "jpeg-quality", def: "82", usage: "JPEG quality of the variants (1-100)", set: func(c *Config, v string) error {
			n, err := posInt(v)
			if err == nil && n > 100 {
				err = fmt.Errorf("want 1 to 100, got %d", n)
			}
			c.JPEGQuality = int(n)
			return err
		}},
		{env: "ONEBOX_DECODE_MEMORY", flag: "decode-memory", def: "0", usage: "bytes all concurrent image decodes may hold; an image estimated to need more is refused; 0 is half the Go soft memory limit (GOMEMLIMIT)", set: func(c *Config, v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return fmt.Errorf("want a number of bytes, or 0 for half the memory limit, got %q", v)
			}
			c.DecodeMemory = n
			return nil
		}},
		{env: "ONEBOX_PHOTO_WORKERS", flag: "photo-workers", def: strconv.Itoa(runtime.NumCPU()), usage: "photos processed at once", set: func(c *Config, v string) error {
			n, err := posInt(v)
			c.PhotoWorkers = int(n)
			return err
		}},
		{env: "ONEBOX_EVENTS_FALLBACK_POLL", flag: "events-fallback-poll", def: "2s", usage: "how often an event stream reads the database while the notification hub is down; with a working hub an idle stream reads nothing", set: dur(func(c *Config) *time.Duration { return &c.EventsFallbackPoll })},
		{env: "ONEBOX_EVENT_RETENTION", flag: "event-retention", def: "168h", usage: "how long photo events stay for SSE clients to resume from (Last-Event-ID); 0 keeps them forever", set: dur(func(c *Config) *time.Duration { return &c.EventRetention })},
		{env: "ONEBOX_IDEMPOTENCY_TTL", flag: "idempotency-ttl", def: "24h", usage: "how long an upload's Idempotency-Key is held: a retry within it gets the first answer, after it the key uploads anew", set: func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return fmt.Errorf("want a positive duration such as 24h, got %q", v)
			}
			c.IdempotencyTTL = d
			return nil
		}},
		{env: "ONEBOX_JOB_VISIBILITY", flag: "job-visibility", def: "30s", usage: "how long a crashed worker's job stays invisible before another worker retries it", set: dur(func(c *Config) *time.Duration { return &c.JobVisibility })},
		{env: "ONEBOX_JOB_DEAD_RETENTION", flag: "job-dead-retention", def: "720h", usage: "how long a dead-lettered job is kept for operators to read and redrive; older ones are pruned hourly; 0 keeps them forever", set: dur(func(c *Config) *time.Duration { return &c.JobDeadRetention })},
		{env: "ONEBOX_JOB_DEAD_MAX", flag: "job-dead-max", def: "100000", usage: "dead-lettered jobs kept at most: the oldest beyond it are pruned hourly, whatever their age, so a flood of failing jobs cannot fill the disk; 0 is no bound", set: count(func(c *Config) *int { return &c.JobDeadMax })},
		{env: "ONEBOX_JOB_ABANDONED_MAX", flag: "job-abandoned-max", def: "10", usage: "readiness fails once this many job handlers, abandoned for ignoring their context past their timeout, are still running; only a restart reclaims them", set: func(c *Config, v string) error {
			n, err := posInt(v)
			c.JobAbandonedMax = int(n)
			return err
		}},
		{env: "ONEBOX_MODERATION_BLOCKLIST", flag: "moderation-blocklist", def: "", usage: "file of perceptual hashes (hex, one a line) of images to reject", set: str(func(c *Config) *string { return &c.ModerationBlocklist })},
		{env: "ONEBOX_CACHE_TTL", flag: "cache-ttl", def: "60s", usage: "how long a cached profile lives (with ±10% jitter)", set: dur(func(c *Config) *time.Duration { return &c.CacheTTL })},
		{env: "ONEBOX_CACHE_NEGATIVE_TTL", flag: "cache-negative-ttl", def: "5s", usage: "how long a 'not found' is cached", set: dur(func(c *Config) *time.Duration { return &c.CacheNegative })},
		{env: "ONEBOX_CACHE_SIZE", flag: "cache-size", def: "67108864", usage: "in-process cache bound, in bytes", set: func(c *Config, v string) error {
			n, err := posInt(v)
			c.CacheMaxBytes = n
			return err
		}},
		{env: "ONEBOX_PROFILE_SMAXAGE", flag: "profile-smaxage", def: "10s", usage: "s-maxage on public profile reads (shared caches only)", set: dur(func(c *Config) *time.Duration { return &c.ProfileSMaxAge })},
		{env: "ONEBOX_RATE_API", flag: "rate-api", def: "300/1m", usage: "token bucket per user or client IP for the API", set: rate(func(c *Config) *Rate { return &c.RateAPI })},
		{env: "ONEBOX_RATE_AUTH", flag: "rate-auth", def: "10/1m", usage: "login and sign-up attempts per client IP", set: rate(func(c *Config) *Rate { return &c.RateAuth })},
		{env: "ONEBOX_RATE_AUTH_HANDLE", flag: "rate-auth-handle", def: "5/1m", usage: "login attempts per handle (against password guessing)", set: rate(func(c *Config) *Rate { return &c.RateAuthHandle })},
		{env: "ONEBOX_RATE_AUTH_DEVICE", flag: "rate-auth-device", def: "10/1m", usage: "login attempts per device token, instead of per handle, from a client that logged in to that handle before", set: rate(func(c *Config) *Rate { return &c.RateAuthDevice })},
		{env: "ONEBOX_DEVICE_KEY", flag: "device-key", def: "", usage: "key (at least 32 bytes, the same on every instance) signing the device tokens that exempt a known device from the per-handle login limit; empty turns device tokens off", hidden: true, set: func(c *Config, v string) error {
			if v != "" && len(v) < minSecret {
				return fmt.Errorf("want at least %d bytes, got %d (generate one with openssl rand -base64 48, and set it as ONEBOX_DEVICE_KEY or -device-key)", minSecret, len(v))
			}
			c.DeviceKey = v
			return nil
		}},
		{env: "ONEBOX_DEVICE_TTL", flag: "device-ttl", def: "2160h", usage: "how long a device token lasts after the login that issued it", set: dur(func(c *Config) *time.Duration { return &c.DeviceTTL })},
		{env: "ONEBOX_RATE_UPLOAD", flag: "rate-upload", def: "30/1m", usage: "uploads per user", set: rate(func(c *Config) *Rate { return &c.RateUpload })},
		{env: "ONEBOX_RATE_JOB_PROCESS", flag: "rate-job-process", def: "0", usage: "photo jobs started per window across the workers sharing ONEBOX_LIMITER_URL, such as 600/1m; jobs over it wait in the queue; 0 is no cap", set: optRate(func(c *Config) *Rate { return &c.RateJobProcess })},
		{env: "ONEBOX_RATE_JOB_CLEANUP", flag: "rate-job-cleanup", def: "0", usage: "media cleanup jobs started per window, such as 60/1s; jobs over it wait in the queue; 0 is no cap", set: optRate(func(c *Config) *Rate { return &c.RateJobCleanup })},
		{env: "ONEBOX_TRUSTED_PROXIES", flag: "trusted-proxies", def: "", usage: "comma-separated CIDRs whose X-Forwarded-For and X-Forwarded-Proto are believed (from any other peer, the connection's own address and scheme count)", set: func(c *Config, v string) error {
			c.TrustedProxies = nil
			for p := range strings.SplitSeq(v, ",") {
				if p = strings.TrimSpace(p); p == "" {
					continue
				}
				pfx, err := netip.ParsePrefix(p)
				if err != nil {
					return fmt.Errorf("want CIDRs such as 10.0.0.0/8, got %q", p)
				}
				c.TrustedProxies = append(c.TrustedProxies, pfx.Masked())
			}
			return nil
		}},
		{env: "ONEBOX_PUBLIC_URL", flag: "public-url", def: "", usage: "the site's public URL, such as https://photos.example.com; when set, cookie-authenticated writes must carry exactly its origin", set: func(c *Config, v string) error {
			o, err := PublicOrigin(v)
			c.PublicURL = o
			return err
		}},
		{env: "ONEBOX_SESSION_TTL", flag: "session-ttl", def: "720h", usage: "how long a login lasts", set: dur(func(c *Config) *time.Duration { return &c.SessionTTL })},
		{env: "ONEBOX_HASH_CONCURRENCY", flag: "hash-concurrency", def: strconv.Itoa(runtime.NumCPU()), usage: "password hashes at once (each takes 19 MiB)", set: func(c *Config, v string) error {
			n, err := posInt(v)
			c.HashConcurrency = int(n)
			return err
		}},
		{env: "ONEBOX_MAX_BODY_BYTES", flag: "max-body-bytes", def: "65536", usage: "largest JSON request body", set: func(c *Config, v string) error {
			n, err := posInt(v)
			c.MaxBodyBytes = n
			return err
		}},
		{env: "ONEBOX_BODY_TIMEOUT", flag: "body-timeout", def: "10s", usage: "how long a client may take to send a request body (uploads: ONEBOX_UPLOAD_TIMEOUT); slower gets 408", set: func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return fmt.Errorf("want a positive duration such as 10s, got %q", v)
			}
			c.BodyTimeout = d
			return nil
		}},
		{env: "ONEBOX_SSE_PER_USER", flag: "sse-per-user", def: "8", usage: "open event streams per user on one instance (429 past it); 0 is no bound", set: count(func(c *Config) *int { return &c.SSEPerUser })},
		{env: "ONEBOX_SSE_MAX", flag: "sse-max", def: "1000", usage: "open event streams on one instance (503 past it); 0 is no bound", set: count(func(c *Config) *int { return &c.SSEMax })},
		{env: "ONEBOX_MAX_IN_FLIGHT", flag: "max-in-flight", def: "256", usage: "requests handled at once (health checks, event streams and uploads not counted); past it 503 + Retry-After; 0 is no bound", set: count(func(c *Config) *int { return &c.MaxInFlight })},
		{env: "ONEBOX_REQUEST_TIMEOUT", flag: "request-timeout", def: "10s", usage: "deadline of an ordinary API request", set: dur(func(c *Config) *time.Duration { return &c.RequestTimeout })},
		{env: "ONEBOX_SHUTDOWN_DELAY", flag: "shutdown-delay", def: "0s", usage: "keep serving this long after SIGTERM while readiness says 503", set: dur(func(c *Config) *time.Duration { return &c.ShutdownDelay })},
		{env: "ONEBOX_DRAIN_TIMEOUT", flag: "drain-timeout", def: "30s", usage: "how long in-flight work may take to finish on shutdown", set: dur(func(c *Config) *time.Duration { return &c.DrainTimeout })},
		{env: "ONEBOX_PID_FILE", flag: "pid-file", def: "", usage: "once ready, write the process id here (systemd's PIDFile=, which follows a hand-over on SIGHUP); empty writes none", set: str(func(c *Config) *string { return &c.PIDFile })},
		{env: "ONEBOX_LOG_LEVEL", flag: "log-level", def: "info", usage: "debug, info, warn or error", set: func(c *Config, v string) error {
			switch v {
			case "debug", "info", "warn", "error":
				c.LogLevel = v
				return nil
			}
			return fmt.Errorf("want debug, info, warn or error, got %q", v)
		}},
		{env: "ONEBOX_LOG_FORMAT", flag: "log-format", def: "json", usage: "json or text", set: func(c *Config, v string) error {
			if v != "json" && v != "text" {
				return fmt.Errorf("want json or text, got %q", v)
			}
			c.LogFormat = v
			return nil
		}},
		{env: "ONEBOX_LOG_FLUSH", flag: "log-flush", def: "200ms", usage: "longest an info line waits to be written with others (warnings and errors go at once); 0 writes every line at once", set: dur(func(c *Config) *time.Duration { return &c.LogFlush })},
		{env: "ONEBOX_ACCESS_LOG", flag: "access-log", def: "true", usage: "one log line per request", set: boolean(func(c *Config) *bool { return &c.AccessLog })},
		{env: "ONEBOX_METRICS", flag: "metrics", def: "true", usage: "Prometheus metrics at /metrics on the admin listener", set: boolean(func(c *Config) *bool { return &c.Metrics })},
		{env: "ONEBOX_TRACING", flag: "tracing", def: "true", usage: "OpenTelemetry traces: the slowest kept in memory, all sent by OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set", set: boolean(func(c *Config) *bool { return &c.Tracing })},
		{env: "ONEBOX_SLOW_QUERY", flag: "slow-query", def: "100ms", usage: "log queries at least this slow, with their plan; 0 turns the log off", set: dur(func(c *Config) *time.Duration { return &c.SlowQuery })},
		{env: "ONEBOX_OPS_TOKEN", flag: "ops-token", def: "", usage: "operator token (at least 32 bytes) for /ops, /jobs and /metrics on the admin listener (Authorization: Bearer, or ?token=); without it they answer only on a loopback listener reached as localhost or a loopback IP", hidden: true, set: func(c *Config, v string) error {
			if v != "" && len(v) < minSecret {
				return fmt.Errorf("want at least %d bytes, got %d (generate one with openssl rand -base64 48, and set it as ONEBOX_OPS_TOKEN or -ops-token)", minSecret, len(v))
			}
			c.OpsToken = v
			return nil
		}},
		{env: "ONEBOX_OPS_INTERVAL", flag: "ops-interval", def: "5s", usage: "how often the dashboard samples the metrics (it keeps the last hour)", set: dur(func(c *Config) *time.Duration { return &c.OpsInterval })},
		{env: "ONEBOX_ALERT_WEBHOOK", flag: "alert-webhook", def: "", usage: "URL that receives each alert as JSON when it fires and when it clears", hidden: true, set: str(func(c *Config) *string { return &c.AlertWebhook })},
		{env: "ONEBOX_ALERT_ERROR_RATE", flag: "alert-error-rate", def: "0.05", usage: "alert when more than this share of requests fails (5xx) for ONEBOX_ALERT_FOR; HTTP is failing above it", set: fraction(func(c *Config) *float64 { return &c.AlertErrorRate })},
		{env: "ONEBOX_ALERT_P95", flag: "alert-p95", def: "500ms", usage: "alert when the request p95 stays above this for ONEBOX_ALERT_FOR; HTTP is degraded above it", set: dur(func(c *Config) *time.Duration { return &c.AlertP95 })},
		{env: "ONEBOX_ALERT_FOR", flag: "alert-for", def: "5m", usage: "how long the error rate or p95 must stay high, and the queue depth rise, before an alert fires", set: dur(func(c *Config) *time.Duration { return &c.AlertFor })},
		{env: "ONEBOX_ALERT_DISK_FREE", flag: "alert-disk-free", def: "0.10", usage: "alert when the data directory's file system has less than this share free", set: fraction(func(c *Config) *float64 { return &c.AlertDiskFree })},
		{env: "ONEBOX_DRILLS", flag: "drills", def: "false", usage: "allow fault-injection drills from the admin listener (POST /ops/drill/db-latency); for game days only", set: boolean(func(c *Config) *bool { return &c.Drills })},
	}
}

// minSecret is the shortest operator token or device key accepted, in
// bytes: 256 bits even if every byte were a random letter would be more,
// but 32 bytes from a generator leave guessing hopeless, and a one-word
// token is refused outright.
const minSecret = 32

// PublicOrigin validates a public URL (http or https, a host, no path
// beyond "/", no query, fragment or user) and returns its origin as a
// browser sends it: lower-case scheme and host, default port dropped. ""
// stays "".
// mediaPublicURL checks ONEBOX_MEDIA_PUBLIC_URL: an http(s) URL with a
// path (a key is appended to it, so it gets a final "/") and nothing
// after. It returns the URL and its origin, for the page's
// Content-Security-Policy.
func mediaPublicURL(v string) (base, origin string, err error) {
	if v == "" {
		return "", "", nil
	}
	u, err := url.Parse(v)
	if err != nil {
		return "", "", fmt.Errorf("want a URL such as https://cdn.example.com/media/: %w", err)
	}
	if u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", "", fmt.Errorf("want scheme://host[:port]/path/, got %q", v)
	}
	path := u.EscapedPath()
	u.Path, u.RawPath = "", ""
	origin, err = PublicOrigin(u.String())
	if err != nil {
		return "", "", err
	}
	if !strings.HasSuffix(path, "/") {
		path += "/"
	}
	return origin + path, origin, nil
}

func PublicOrigin(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	u, err := url.Parse(v)
	if err != nil {
		return "", fmt.Errorf("want a URL such as https://photos.example.com: %w", err)
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme != "http" && scheme != "https":
		return "", fmt.Errorf("want an http or https URL, got %q", v)
	case u.Host == "" || u.Hostname() == "" || strings.HasSuffix(u.Host, ":"):
		return "", fmt.Errorf("want a host in %q", v)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "", u.User != nil, u.Opaque != "":
		return "", fmt.Errorf("want only scheme://host[:port], got %q", v)
	}
	host := strings.ToLower(u.Host)
	if port := u.Port(); port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("bad port in %q", v)
		}
		if scheme == "https" && n == 443 || scheme == "http" && n == 80 {
			host = strings.TrimSuffix(host, ":"+port)
		}
	}
	return scheme + "://" + host, nil
}

// Command is the command line of one subcommand: what --help says of it
// and which settings it reads, each of which is also one of its flags.
type Command struct {
	// Name is the command as typed, such as "onebox jobs".
	Name string
	// Usage is printed by --help above the flags: the synopsis and what
	// the command does.
	Usage string
	// Settings are the variables (ONEBOX_*) the command reads; nil is
	// every one. The others are neither read nor flags.
	Settings []string
	// Flags, if set, defines the command's own flags besides the
	// settings.
	Flags func(fs *flag.FlagSet)
	// Schemes are the URL schemes each backend variable accepts: main's
	// table of backends, which also opens them, so the two cannot
	// disagree. A variable without an entry is checked only for a
	// well-formed URL.
	Schemes map[string][]string
}

// ErrHelp is returned by Parse when the command line asked for help,
// which Parse has then printed.
var ErrHelp = flag.ErrHelp

// Load reads every setting from the environment through lookupEnv, then
// from the flags in args, and validates the result. Errors name the
// variable, or the flag when the value came from one. It takes no
// arguments besides flags; help goes to stderr.
func Load(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (Config, error) {
	c, rest, err := Parse(Command{Name: "onebox"}, args, lookupEnv, stderr)
	if err == nil && len(rest) > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", rest[0])
	}
	return c, err
}

// Parse reads cmd's settings from the environment through lookupEnv,
// then from the flags in args, and validates the result. Flags and
// arguments may come in any order ("--" ends the flags); the arguments
// are returned in order. -h, -help or --help print cmd's help to out and
// return ErrHelp. Errors name the variable, or the flag when the value
// came from one.
func Parse(cmd Command, args []string, lookupEnv func(string) (string, bool), out io.Writer) (Config, []string, error) {
	fs := flag.NewFlagSet(cmd.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, help is printed below
	fs.Usage = func() {}
	ss := settings()
	if cmd.Settings != nil {
		ss = slices.DeleteFunc(ss, func(s setting) bool { return !slices.Contains(cmd.Settings, s.env) })
	}
	vals := make([]*flagValue, len(ss))
	for i, s := range ss {
		v := &flagValue{value: s.def, bool: kindOf(s) == "bool"}
		if e, ok := lookupEnv(s.env); ok && (e != "" || s.emptyOK) {
			v.value = e
		}
		vals[i] = v
		fs.Var(v, s.flag, s.usage)
	}
	if cmd.Flags != nil {
		cmd.Flags(fs)
	}
	rest, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		PrintUsage(out, cmd, fs)
		return Config{}, nil, ErrHelp
	}
	if err != nil {
		return Config{}, nil, fmt.Errorf("%w (see %s --help)", err, cmd.Name)
	}
	c := Config{raw: make(map[string]string, len(ss)), names: make(map[string]string, len(ss))}
	for i, s := range ss {
		c.names[s.env] = s.env
		if vals[i].set {
			c.names[s.env] = "-" + s.flag
		}
		if err := s.set(&c, vals[i].value); err != nil {
			return Config{}, nil, fmt.Errorf("%s: %w", c.names[s.env], err)
		}
		c.raw[s.env] = vals[i].value
	}
	if _, ok := c.raw["ONEBOX_DATABASE_URL"]; ok && c.DatabaseURL == "" {
		c.DatabaseURL = "sqlite:" + filepath.Join(c.DataDir, "onebox.db")
		c.raw["ONEBOX_DATABASE_URL"] = c.DatabaseURL
	}
	if _, ok := c.raw["ONEBOX_MEDIA_URL"]; ok && c.MediaURL == "" {
		c.MediaURL = "file:" + filepath.Join(c.DataDir, "media")
		c.raw["ONEBOX_MEDIA_URL"] = c.MediaURL
	}
	return c, rest, c.validate(cmd.Schemes)
}

// parseInterleaved parses the flags among args wherever they are, as
// `onebox ops diagnose -admin-addr X` and `onebox ops -admin-addr X
// diagnose` mean the same, and returns the other arguments in order.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		left := fs.Args()
		if consumed := len(args) - len(left); consumed > 0 && args[consumed-1] == "--" {
			return append(rest, left...), nil // the flag package ate the "--"
		}
		if len(left) == 0 {
			return rest, nil
		}
		rest, args = append(rest, left[0]), left[1:]
	}
}

// flagValue is one setting as a flag: its text, validated after parsing
// so an error can name where the value came from.
type flagValue struct {
	value string
	set   bool // given as a flag
	bool  bool // -name alone means -name=true
}

func (v *flagValue) String() string {
	if v == nil {
		return ""
	}
	return v.value
}

func (v *flagValue) Set(s string) error { v.value, v.set = s, true; return nil }

func (v *flagValue) IsBoolFlag() bool { return v.bool }

// kinds name the values of the settings whose default does not say what
// they take (see kindOf).
var kinds = map[string]string{
	"ONEBOX_ADDR": "host:port", "ONEBOX_ADMIN_ADDR": "host:port", "ONEBOX_DATA_DIR": "dir", "ONEBOX_MEDIA_BACKUP_DIR": "dir",
	"ONEBOX_DATABASE_URL": "url", "ONEBOX_CACHE_URL": "url", "ONEBOX_LIMITER_URL": "url", "ONEBOX_QUEUE_URL": "url",
	"ONEBOX_MEDIA_URL": "url", "ONEBOX_MEDIA_PUBLIC_URL": "url", "ONEBOX_NOTIFY_URL": "url", "ONEBOX_PUBLIC_URL": "url", "ONEBOX_ALERT_WEBHOOK": "url",
	"ONEBOX_MODERATION_BLOCKLIST": "file", "ONEBOX_TRUSTED_PROXIES": "cidrs", "ONEBOX_PID_FILE": "file",
}

// kindOf is the type of value a setting takes, for --help: named in
// kinds, else read off its default.
func kindOf(s setting) string {
	if k, ok := kinds[s.env]; ok {
		return k
	}
	if _, err := strconv.ParseInt(s.def, 10, 64); err == nil {
		return "int"
	}
	if s.def == "true" || s.def == "false" {
		return "bool"
	}
	if _, err := ParseRate(s.def); err == nil {
		return "rate"
	}
	if _, err := time.ParseDuration(s.def); err == nil {
		return "duration"
	}
	if _, err := strconv.ParseFloat(s.def, 64); err == nil {
		return "fraction"
	}
	return "string"
}

// PrintUsage writes cmd's help: its Usage, then each flag with its type,
// what it sets, its variable and its default, once.
func PrintUsage(w io.Writer, cmd Command, fs *flag.FlagSet) {
	fmt.Fprintln(w, strings.TrimRight(cmd.Usage, "\n"))
	byFlag := map[string]setting{}
	for _, s := range settings() {
		byFlag[s.flag] = s
	}
	first := true
	fs.VisitAll(func(f *flag.Flag) {
		if first {
			fmt.Fprintf(w, "\nFlags (each setting's variable is read first, a flag wins):\n")
			first = false
		}
		s, ok := byFlag[f.Name]
		if !ok { // the command's own flag
			kind, usage := flag.UnquoteUsage(f)
			if kind != "" {
				kind = " " + kind
			}
			fmt.Fprintf(w, "  -%s%s\n    \t%s\n", f.Name, kind, usage)
			return
		}
		fmt.Fprintf(w, "  -%s %s\n    \t%s\n    \t(%s", f.Name, kindOf(s), s.usage, s.env)
		if s.def != "" {
			fmt.Fprintf(w, ", default %s", s.def)
		}
		fmt.Fprintln(w, ")")
	})
}

// Name is how an error should name a setting: its flag ("-admin-addr")
// when the value came from one, else its variable.
func (c Config) Name(env string) string {
	if n, ok := c.names[env]; ok {
		return n
	}
	return env
}

func (c Config) validate(schemes map[string][]string) error {
	for env, v := range map[string]string{
		"ONEBOX_DATABASE_URL": c.DatabaseURL, "ONEBOX_CACHE_URL": c.CacheURL, "ONEBOX_LIMITER_URL": c.LimiterURL,
		"ONEBOX_QUEUE_URL": c.QueueURL, "ONEBOX_MEDIA_URL": c.MediaURL, "ONEBOX_NOTIFY_URL": c.NotifyURL,
	} {
		if _, read := c.raw[env]; !read {
			continue
		}
		if _, err := BackendURL(c.Name(env), v, schemes[env]); err != nil {
			return err
		}
	}
	if len(c.DatabaseReplicaURLs) > 0 && !strings.HasPrefix(c.DatabaseURL, "postgres") {
		return fmt.Errorf("%s: replicas need a PostgreSQL primary: set %s to postgres://…", c.Name("ONEBOX_DATABASE_REPLICA_URLS"), c.Name("ONEBOX_DATABASE_URL"))
	}
	if err := c.checkMediaBackup(); err != nil {
		return err
	}
	if err := c.checkBackupVerify(); err != nil {
		return err
	}
	for env, d := range map[string]time.Duration{
		"ONEBOX_CACHE_TTL": c.CacheTTL, "ONEBOX_CACHE_NEGATIVE_TTL": c.CacheNegative,
		"ONEBOX_SESSION_TTL": c.SessionTTL, "ONEBOX_REQUEST_TIMEOUT": c.RequestTimeout, "ONEBOX_DEVICE_TTL": c.DeviceTTL,
		"ONEBOX_DB_BUSY_TIMEOUT": c.DBBusyTimeout, "ONEBOX_DB_MAX_READ": c.DBMaxRead, "ONEBOX_DATABASE_MAX_LAG": c.DatabaseMaxLag,
		"ONEBOX_EVENTS_FALLBACK_POLL": c.EventsFallbackPoll, "ONEBOX_BACKUP_RECOVERY_POINT": c.BackupRecoveryPoint,
	} {
		if _, read := c.raw[env]; read && d <= 0 {
			return fmt.Errorf("%s: must be positive", c.Name(env))
		}
	}
	return nil
}

// checkBackupVerify refuses a schedule that could not work: backup
// verify restores a Litestream replica, of SQLite, and each run waits
// the recovery point before it restores.
func (c Config) checkBackupVerify() error {
	if c.BackupVerifyEvery < 0 {
		return fmt.Errorf("%s: must not be negative (0 turns it off)", c.Name("ONEBOX_BACKUP_VERIFY_EVERY"))
	}
	if c.BackupVerifyEvery == 0 {
		return nil
	}
	if !strings.HasPrefix(c.DatabaseURL, "sqlite:") {
		return fmt.Errorf("%s: backup verify restores a Litestream replica of a SQLite database; PostgreSQL's backups are its own (unset it, or set %s to sqlite:PATH)", c.Name("ONEBOX_BACKUP_VERIFY_EVERY"), c.Name("ONEBOX_DATABASE_URL"))
	}
	if c.BackupVerifyEvery <= c.BackupRecoveryPoint {
		return fmt.Errorf("%s: %s is not longer than %s (%s), which each run waits", c.Name("ONEBOX_BACKUP_VERIFY_EVERY"), c.BackupVerifyEvery, c.Name("ONEBOX_BACKUP_RECOVERY_POINT"), c.BackupRecoveryPoint)
	}
	return nil
}

// checkMediaBackup refuses a media backup directory that is the media
// directory, or inside it or around it: a copy on the same files is no
// copy, and a Delete would remove both.
func (c Config) checkMediaBackup() error {
	if c.MediaBackupDir == "" || !strings.HasPrefix(c.MediaURL, "file:") {
		return nil
	}
	u, err := url.Parse(c.MediaURL)
	if err != nil {
		return nil // validate reports it
	}
	media := u.Opaque
	if media == "" {
		media = u.Path
	}
	a, errA := filepath.Abs(media)
	b, errB := filepath.Abs(c.MediaBackupDir)
	if errA != nil || errB != nil {
		return fmt.Errorf("%s: %w", c.Name("ONEBOX_MEDIA_BACKUP_DIR"), errors.Join(errA, errB))
	}
	if within(a, b) || within(b, a) {
		return fmt.Errorf("%s: %s overlaps the media directory %s; put the copy elsewhere, on another disk", c.Name("ONEBOX_MEDIA_BACKUP_DIR"), c.MediaBackupDir, media)
	}
	return nil
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && filepath.IsLocal(rel) || rel == "."
}

// BackendURL parses v, the value of the backend setting name, and checks
// its scheme against schemes when there are any. "none" alone is a
// valid cache URL.
func BackendURL(name, v string, schemes []string) (*url.URL, error) {
	if v == "none" {
		v = "none:"
	}
	u, err := url.Parse(v)
	if err != nil {
		return nil, fmt.Errorf("%s: malformed URL: %w", name, err)
	}
	if (u.Scheme == "sqlite" || u.Scheme == "file") && u.Opaque == "" && u.Path == "" {
		return nil, fmt.Errorf("%s: %s: needs a path, as in %s:data/x", name, u.Scheme, u.Scheme)
	}
	if (u.Scheme == "postgres" || u.Scheme == "postgresql") && u.Host == "" {
		return nil, fmt.Errorf("%s: %s: needs a host, as in %s://user@host:5432/db", name, u.Scheme, u.Scheme)
	}
	if schemes == nil || slices.Contains(schemes, u.Scheme) {
		return u, nil
	}
	return nil, fmt.Errorf("%s: unknown scheme %q in %q (want one of %s)", name, u.Scheme, Redact(v), strings.Join(schemes, ", "))
}

// Print writes the effective configuration as ONEBOX_* lines, with the
// passwords in backend URLs redacted.
func (c Config) Print(w io.Writer) {
	for _, s := range settings() {
		v := c.raw[s.env]
		if s.secret {
			v = Redact(v)
		}
		if s.hidden && v != "" {
			v = "xxxxx"
		}
		fmt.Fprintf(w, "%s=%s\n", s.env, v)
	}
}

// Redact is v with a URL's password and secret-looking query values
// replaced, for printing.
func Redact(v string) string {
	u, err := url.Parse(v)
	if err != nil {
		return "(unparseable)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	for k := range q {
		if lk := strings.ToLower(k); strings.Contains(lk, "pass") || strings.Contains(lk, "secret") || strings.Contains(lk, "token") {
			q.Set(k, "xxxxx")
		}
	}
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	return u.String()
}
