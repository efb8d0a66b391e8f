// Package postgres is a lease.Locker over PostgreSQL session advisory
// locks: a holder keeps its lease on a connection of its own, and the
// server frees it the moment that connection ends, whether the holder
// released it, stopped, or died (the kernel closes a dead process's
// socket). Locks belong to the database; the key is also derived from
// the connection's schema, so deployments on schemas of one database do
// not contend.
//
// Session locks need a session: through a pooler (PgBouncer) in
// transaction mode they do not hold. Point the URL at PostgreSQL or a
// session-mode pool.
package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"onebox/lease"
)

// Options configure a Locker. Zero fields take the defaults.
type Options struct {
	// Retry is how often a waiting holder asks for the lock. Default 1s.
	Retry time.Duration
	// Check is how often a holder pings its connection: a holder cut
	// off from the server (which then frees the lock) learns it within
	// Check plus the ping's own timeout of Check. Default 1s.
	Check time.Duration
	// ApplicationName names the connections in pg_stat_activity.
	// Default "onebox-lease".
	ApplicationName string
}

// Locker takes leases on the database at a URL.
type Locker struct {
	cfg *pgx.ConnConfig
	o   Options
}

var _ lease.Locker = (*Locker)(nil)

// New returns a Locker for the database at rawURL (a postgres:// URL as
// the store takes; pool settings in it are ignored). It connects only
// when asked for a lease.
func New(rawURL string, o Options) (*Locker, error) {
	pc, err := pgxpool.ParseConfig(rawURL) // strips the pool_* settings
	if err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}
	if o.Retry <= 0 {
		o.Retry = time.Second
	}
	if o.Check <= 0 {
		o.Check = time.Second
	}
	if o.ApplicationName == "" {
		o.ApplicationName = "onebox-lease"
	}
	cfg := pc.ConnConfig
	cfg.RuntimeParams["application_name"] = o.ApplicationName
	return &Locker{cfg: cfg, o: o}, nil
}

// tryLock takes the lock of the lease name in the connection's schema,
// without waiting. The key is the first 64 bits of an MD5: a collision
// between two names would make them share a holder, nothing worse.
const tryLock = `select pg_try_advisory_lock(('x' || substr(md5(current_schema() || '/' || $1), 1, 16))::bit(64)::bigint)`

// Acquire opens a connection and asks for the lock on it every Retry
// until it has it.
func (l *Locker) Acquire(ctx context.Context, name string) (lease.Held, error) {
	conn, err := pgx.ConnectConfig(ctx, l.cfg)
	if err != nil {
		return nil, fmt.Errorf("lease %s: %w", name, err)
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			conn.Close(context.Background()) // frees nothing: nothing is held
			return nil, ctx.Err()
		case <-t.C:
		}
		var got bool
		if err := conn.QueryRow(ctx, tryLock, name).Scan(&got); err != nil {
			conn.Close(context.Background())
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("lease %s: %w", name, err)
		}
		if got {
			return l.hold(conn), nil
		}
		t.Reset(l.o.Retry)
	}
}

// hold watches conn: the lease is held as long as it answers.
func (l *Locker) hold(conn *pgx.Conn) *held {
	h := &held{conn: conn}
	h.Watched = lease.Watch(func(ctx context.Context, w *lease.Watched) {
		t := time.NewTicker(l.o.Check)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			pctx, cancel := context.WithTimeout(ctx, l.o.Check)
			err := conn.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				w.MarkLost()
				return
			}
		}
	})
	return h
}

type held struct {
	*lease.Watched // its watcher uses conn until stopped
	conn           *pgx.Conn
}

// Release closes the connection, which frees the lock: no unlock
// statement is needed, and none can be forgotten.
func (h *held) Release(ctx context.Context) error {
	return h.ReleaseWith(func() error { return h.conn.Close(ctx) })
}
