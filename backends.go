package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"onebox/app"
	"onebox/cache"
	cachememory "onebox/cache/memory"
	cacheredis "onebox/cache/redis"
	"onebox/config"
	"onebox/internal/redisconn"
	"onebox/jobs"
	jobpg "onebox/jobs/postgres"
	jobsqlite "onebox/jobs/sqlite"
	"onebox/media"
	medialocal "onebox/media/local"
	mediamirror "onebox/media/mirror"
	medias3 "onebox/media/s3"
	"onebox/notify"
	notifymemory "onebox/notify/memory"
	notifynats "onebox/notify/nats"
	notifypostgres "onebox/notify/postgres"
	"onebox/ops"
	"onebox/ops/metrics"
	"onebox/photos"
	"onebox/ratelimit"
	limitmemory "onebox/ratelimit/memory"
	limitredis "onebox/ratelimit/redis"
	"onebox/store"
	"onebox/store/postgres"
	"onebox/store/sqlite"
)

// backends is the one table of backends: for each seam, its setting and
// the URL schemes it accepts, each mapped to what opens it. Configuration
// validation takes its schemes from here (schemes, passed to config.Parse)
// and serve opens through it, so a scheme cannot be valid and unopenable.
// A backend that holds resources is an io.Closer.
type backends struct {
	store   seam[database]
	queue   seam[jobQueue]
	cache   seam[cache.Cache] // nil: caching off
	limiter seam[ratelimit.Limiter]
	media   seam[media.Storage]
	hub     seam[notify.Hub]
}

func backendTable() backends {
	return backends{
		store: seam[database]{env: "ONEBOX_DATABASE_URL", value: func(c config.Config) string { return c.DatabaseURL }, open: map[string]opener[database]{
			"sqlite": openSQLite, "postgres": openPostgresStore, "postgresql": openPostgresStore,
		}},
		queue: seam[jobQueue]{env: "ONEBOX_QUEUE_URL", value: func(c config.Config) string { return c.QueueURL }, open: map[string]opener[jobQueue]{
			"": openOutboxQueue, "nats": openNATSJobQueue,
		}},
		cache: seam[cache.Cache]{env: "ONEBOX_CACHE_URL", value: func(c config.Config) string { return c.CacheURL }, open: map[string]opener[cache.Cache]{
			"memory": openMemoryCache, "redis": openRedisCache, "rediss": openRedisCache,
			"none": func(context.Context, wiring, *url.URL) (cache.Cache, error) { return nil, nil },
		}},
		limiter: seam[ratelimit.Limiter]{env: "ONEBOX_LIMITER_URL", value: func(c config.Config) string { return c.LimiterURL }, open: map[string]opener[ratelimit.Limiter]{
			"memory": func(context.Context, wiring, *url.URL) (ratelimit.Limiter, error) {
				return limitmemory.New(limitmemory.Options{}), nil
			},
			"redis": openRedisLimiter, "rediss": openRedisLimiter,
		}},
		media: seam[media.Storage]{env: "ONEBOX_MEDIA_URL", value: func(c config.Config) string { return c.MediaURL }, open: map[string]opener[media.Storage]{
			"file": openLocalMedia, "s3": openS3Media,
		}},
		hub: seam[notify.Hub]{env: "ONEBOX_NOTIFY_URL", value: func(c config.Config) string { return c.NotifyURL }, open: map[string]opener[notify.Hub]{
			"memory": func(context.Context, wiring, *url.URL) (notify.Hub, error) { return notifymemory.New(), nil },
			// The hubs across the network connect in the background:
			// until they do, event streams poll.
			"postgres": openPostgresHub, "postgresql": openPostgresHub, "nats": openNATSHub,
		}},
	}
}

// schemes is what config.Parse checks each backend setting against.
func (b backends) schemes() map[string][]string {
	return map[string][]string{
		b.store.env: b.store.schemes(), b.queue.env: b.queue.schemes(), b.cache.env: b.cache.schemes(),
		b.limiter.env: b.limiter.schemes(), b.media.env: b.media.schemes(), b.hub.env: b.hub.schemes(),
	}
}

// wiring is what openers take besides their URL.
type wiring struct {
	cfg     config.Config
	log     *slog.Logger
	metrics *metrics.Metrics                        // nil when off
	onQuery func(context.Context, store.QueryEvent) // the store's hook
	outbox  jobs.Queue                              // the store's queue, which the job queue is or is fed from
}

// opener opens one scheme's backend. Errors need not name the setting:
// seam.open does.
type opener[T any] func(ctx context.Context, w wiring, u *url.URL) (T, error)

// seam is one backend setting and its schemes.
type seam[T any] struct {
	env   string
	value func(config.Config) string
	open  map[string]opener[T]
}

func (s seam[T]) schemes() []string {
	names := make([]string, 0, len(s.open))
	for k := range s.open {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// url is the setting's value parsed and checked against the table.
func (s seam[T]) url(cfg config.Config) (*url.URL, error) {
	return config.BackendURL(cfg.Name(s.env), s.value(cfg), s.schemes())
}

// Open opens the backend the setting names.
func (s seam[T]) Open(ctx context.Context, w wiring) (T, error) {
	var zero T
	u, err := s.url(w.cfg)
	if err != nil {
		return zero, err
	}
	v, err := s.open[u.Scheme](ctx, w, u)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", w.cfg.Name(s.env), err)
	}
	return v, nil
}

// urlPath is a file: or sqlite: URL's path, opaque (file:data/x) or not.
func urlPath(u *url.URL) string {
	if u.Opaque != "" {
		return u.Opaque
	}
	return u.Path
}

// sqliteOptions are the SQLite store's options for the file at path.
func sqliteOptions(w wiring, path string) sqlite.Options {
	o := sqlite.Options{
		Path: path, ReadConns: w.cfg.DBReadConns, BusyTimeout: w.cfg.DBBusyTimeout, MaxReadSnapshot: w.cfg.DBMaxRead, Logger: w.log, OnQuery: w.onQuery,
		Checkpoint: sqlite.CheckpointOptions{MaxWALBytes: w.cfg.WALMaxBytes},
	}
	if m := w.metrics; m != nil {
		o.OnWriterHold = func(h sqlite.WriterHold) { m.WriterHold(metrics.WriterHold(h)) }
	}
	return o
}

// openSQLite opens the store and, in the same database, its queue, so a
// job commits with its row.
func openSQLite(ctx context.Context, w wiring, u *url.URL) (database, error) {
	p := urlPath(u)
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return database{}, err
	}
	st, err := sqlite.New(ctx, sqliteOptions(w, p))
	if err != nil {
		return database{}, err
	}
	return database{
		Store: st, queue: st.Queue(jobsqlite.Options{Logger: w.log}), dir: filepath.Dir(p), explain: st.Explain,
		stats: func() metrics.DBStats { return sqliteStats(st) },
		// Advisory: a WAL past its bound slows reads and fills the disk,
		// but the instance still serves.
		checks: []ops.Check{{Name: "wal", Advisory: true, Probe: st.WALProblem}},
	}, nil
}

// sqliteStats is what the metrics sample of an SQLite store.
func sqliteStats(st *sqlite.Store) metrics.DBStats {
	s := st.Stats()
	d := metrics.DBStats{
		Backend: "sqlite", WriterOpen: s.WriterOpen, ReaderOpen: s.ReaderOpen, WriterWait: s.WriterWait, ReaderWait: s.ReaderWait, WriterBusy: s.WriterBusy,
		WriterHolder: metrics.WriterHolder(s.WriterHolder), WriterWaiting: s.WriterWaiting, Busy: s.Busy,
	}
	// Other processes' locks: what an SQLITE_BUSY with this process's
	// writer idle was waiting for.
	locks, _ := st.FileLocks()
	for _, l := range locks {
		d.FileLocks = append(d.FileLocks, metrics.FileLock(l))
	}
	if wal := st.WAL(); !wal.Off {
		d.WAL = &metrics.WALStats{
			Bytes: wal.Bytes, MaxBytes: wal.MaxBytes, Counts: wal.Counts,
			LastMode: wal.Last.Mode, LastAt: wal.Last.At, LastDuration: wal.Last.Duration,
		}
		if !wal.Last.At.IsZero() {
			d.WAL.LastResult = wal.Last.Result()
		}
	}
	return d
}

// openPostgresStore opens the store, its replicas, and its queue.
func openPostgresStore(ctx context.Context, w wiring, _ *url.URL) (database, error) {
	cfg := w.cfg
	st, err := postgres.New(ctx, postgres.Options{
		URL: cfg.DatabaseURL, MaxConns: int32(cfg.DBMaxConns), Logger: w.log, OnQuery: w.onQuery,
		Replicas:       cfg.DatabaseReplicaURLs,
		ReplicaOptions: postgres.ReplicaOptions{MaxLag: cfg.DatabaseMaxLag, MaxLagBytes: cfg.DatabaseMaxLagBytes, MaxConns: int32(cfg.DBMaxConns)},
	})
	if err != nil {
		return database{}, err
	}
	db := database{
		Store: st, queue: st.Queue(jobpg.Options{Logger: w.log}), dir: cfg.DataDir, explain: st.Explain,
		stats: func() metrics.DBStats {
			s := st.Stats()
			d := metrics.DBStats{Backend: "postgres", WriterOpen: s.Open, WriterWait: s.Wait}
			for _, r := range st.Replicas() {
				d.Replicas = append(d.Replicas, metrics.ReplicaStats{Name: r.Name, InRotation: r.InRotation, LagBytes: r.LagBytes, LagSeconds: r.LagSeconds})
			}
			return d
		},
	}
	if len(cfg.DatabaseReplicaURLs) > 0 {
		db.checks = append(db.checks, ops.Check{Name: "replicas", Advisory: true, Probe: func(context.Context) error {
			return postgres.ReplicaProblems(st.Replicas())
		}})
	}
	return db, nil
}

// openOutboxQueue is the default: the store's own table, where the row a
// store commits is the job.
func openOutboxQueue(_ context.Context, w wiring, _ *url.URL) (jobQueue, error) {
	return jobQueue{Queue: w.outbox, close: func() {}}, nil
}

// openNATSJobQueue is JetStream, fed from the store's table by a relay
// (see jobs.Relay). JetStream serves a kind in arrival order, so the
// relay keeps photo jobs in the store's table, which serves owners in
// turn, and lets only ?ahead=N of them (default 4 per photo worker) wait
// in the broker; ?ahead=0 moves every job at once.
func openNATSJobQueue(ctx context.Context, w wiring, u *url.URL) (jobQueue, error) {
	ahead := 4 * w.cfg.PhotoWorkers
	if v := u.Query().Get("ahead"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return jobQueue{}, fmt.Errorf("ahead: want a count of jobs, 0 for no bound, got %q", v)
		}
		ahead = n
	}
	q, nc, err := openNATSQueue(ctx, w.cfg, w.log)
	if err != nil {
		return jobQueue{}, err
	}
	o := jobs.RelayOptions{Logger: w.log}
	if ahead > 0 {
		o.Ahead = map[string]int{photos.KindProcess: ahead}
	}
	relay := jobs.NewRelay(w.outbox, q, o)
	return jobQueue{Queue: q, relay: relay, nc: nc, close: nc.Close}, nil
}

func openMemoryCache(_ context.Context, w wiring, _ *url.URL) (cache.Cache, error) {
	o := cachememory.Options{MaxBytes: w.cfg.CacheMaxBytes}
	if m := w.metrics; m != nil {
		o.OnEvict = func(key string) { m.Cache(app.CacheName(key)).Evicted() }
	}
	return cachememory.New(o), nil
}

func openRedisCache(ctx context.Context, w wiring, _ *url.URL) (cache.Cache, error) {
	c, err := cacheredis.Open(ctx, w.cfg.CacheURL, cacheredis.Options{})
	if errors.Is(err, redisconn.ErrUnreachable) {
		// A restart during a Redis outage must not become an outage.
		w.log.Error("ONEBOX_CACHE_URL: starting anyway; every read misses the cache until Redis answers", "err", err.Error())
		return c, nil
	}
	return c, err
}

func openRedisLimiter(ctx context.Context, w wiring, _ *url.URL) (ratelimit.Limiter, error) {
	l, err := limitredis.Open(ctx, w.cfg.LimiterURL, limitredis.Options{})
	if errors.Is(err, redisconn.ErrUnreachable) {
		w.log.Error("ONEBOX_LIMITER_URL: starting anyway; requests are not limited until Redis answers", "err", err.Error())
		return l, nil
	}
	return l, err
}

func openLocalMedia(_ context.Context, w wiring, u *url.URL) (media.Storage, error) {
	m, err := medialocal.New(urlPath(u))
	if err != nil {
		return nil, err
	}
	if w.cfg.MediaPublicURL != "" {
		m.URLPrefix = w.cfg.MediaPublicURL // a CDN in front of /media/
	}
	return m, nil
}

// openS3Media takes its credentials from AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY (the SDK's default chain).
func openS3Media(ctx context.Context, w wiring, u *url.URL) (media.Storage, error) {
	return medias3.Open(ctx, u, medias3.Options{PublicURL: w.cfg.MediaPublicURL})
}

// openMedia opens the media storage and, with ONEBOX_MEDIA_BACKUP_DIR,
// mirrors every write into that directory before acknowledging it.
func openMedia(ctx context.Context, b backends, w wiring) (media.Storage, error) {
	primary, err := b.media.Open(ctx, w)
	if err != nil || w.cfg.MediaBackupDir == "" {
		return primary, err
	}
	backup, err := medialocal.New(w.cfg.MediaBackupDir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", w.cfg.Name("ONEBOX_MEDIA_BACKUP_DIR"), err)
	}
	return mediamirror.New(primary, backup, w.log), nil
}

func openPostgresHub(_ context.Context, w wiring, _ *url.URL) (notify.Hub, error) {
	return notifypostgres.Open(w.cfg.NotifyURL, notifypostgres.Options{Logger: w.log})
}

// openNATSHub opens the NATS hub; ?subject= gives services (or test
// runs) sharing a NATS server a hub each.
func openNATSHub(_ context.Context, w wiring, u *url.URL) (notify.Hub, error) {
	subject := u.Query().Get("subject")
	server := *u
	server.RawQuery = ""
	return notifynats.Open(server.String(), notifynats.Options{Subject: subject, Logger: w.log})
}
