package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"onebox/config"
	"onebox/jobs"
	jobnats "onebox/jobs/nats"
	"onebox/lease"
	leaselocal "onebox/lease/local"
	leasenats "onebox/lease/nats"
	leasepg "onebox/lease/postgres"
	"onebox/photos"
)

// kindOptions are the job kinds the worker runs, in one place, so the
// broker's per-kind limits (JetStream's MaxDeliver) follow the Runner's.
// A kind's rate (no cap when its config is 0) is a token bucket of the
// API's limiter, so workers sharing ONEBOX_LIMITER_URL share it.
func kindOptions(cfg config.Config) map[string]jobs.KindOptions {
	return map[string]jobs.KindOptions{
		photos.KindProcess: {Concurrency: cfg.PhotoWorkers, MaxAttempts: 5, Timeout: 5 * time.Minute, Rate: policy("job-process", cfg.RateJobProcess)},
		photos.KindCleanup: {Concurrency: 2, MaxAttempts: 10, Timeout: time.Minute, Rate: policy("job-cleanup", cfg.RateJobCleanup)},
	}
}

// jobQueue is where the Runner takes its jobs from and, with an external
// broker, the relay that feeds it from the store's outbox.
type jobQueue struct {
	jobs.Queue
	relay *jobs.Relay // nil: the queue is the store's own table
	nc    *nats.Conn  // the broker's connection, nil without one
	close func()
}

// AckInterval passes the queue's preference on (jobs.AckPacer): the
// Runner sees the queue through this wrapper.
func (q jobQueue) AckInterval() time.Duration { return jobs.AckIntervalOf(q.Queue) }

// openNATSQueue connects to ONEBOX_QUEUE_URL, a nats:// URL; its query
// may name the stream (?stream=JOBS) and the subject prefix
// (?prefix=onebox).
func openNATSQueue(ctx context.Context, cfg config.Config, log *slog.Logger) (*jobnats.Queue, *nats.Conn, error) {
	name := cfg.Name("ONEBOX_QUEUE_URL")
	u, err := backendTable().queue.url(cfg)
	if err != nil {
		return nil, nil, err
	}
	if u.Scheme != "nats" {
		return nil, nil, fmt.Errorf("%s: unsupported scheme %q", name, u.Scheme)
	}
	o := jobnats.Options{Stream: u.Query().Get("stream"), Prefix: u.Query().Get("prefix"), Logger: log, MaxDeliver: map[string]int{}}
	for kind, ko := range kindOptions(cfg) {
		o.MaxDeliver[kind] = ko.MaxAttempts + 1
	}
	server := *u
	server.RawQuery = ""
	nc, err := nats.Connect(server.String(), nats.Name("onebox"), nats.MaxReconnects(-1))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	q, err := jobnats.New(ctx, nc, o)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	return q, nc, nil
}

// notifyAll tells every Notifier: a committed job wakes the relay that
// publishes it and the Runner that may receive it.
type notifyAll []interface{ Notify() }

func (n notifyAll) Notify() {
	for _, x := range n {
		x.Notify()
	}
}

// openLocker picks where the leases of work that runs on one instance at
// a time are held: on the PostgreSQL store when there is one (the work
// is on its tables), else on the NATS broker's key-value store, else in
// this process (SQLite is one box).
func openLocker(cfg config.Config, jq jobQueue) (lease.Locker, error) {
	switch {
	case strings.HasPrefix(cfg.DatabaseURL, "postgres"):
		l, err := leasepg.New(cfg.DatabaseURL, leasepg.Options{})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Name("ONEBOX_DATABASE_URL"), err)
		}
		return l, nil
	case jq.nc != nil:
		// A bucket per queue stream: deployments sharing a server
		// hold their own leases.
		l, err := leasenats.New(jq.nc, leasenats.Options{Bucket: leaseBucket(cfg)})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Name("ONEBOX_QUEUE_URL"), err)
		}
		return l, nil
	}
	return leaselocal.New(), nil
}

// leaseBucket is the NATS key-value bucket of the leases of the
// deployment whose jobs are on ONEBOX_QUEUE_URL's stream.
func leaseBucket(cfg config.Config) string {
	stream := "JOBS"
	if u, err := url.Parse(cfg.QueueURL); err == nil && u.Query().Get("stream") != "" {
		stream = u.Query().Get("stream")
	}
	return stream + "_leases"
}
