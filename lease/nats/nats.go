// Package nats is a lease.Locker over a JetStream key-value bucket: a
// lease is a key created by its holder and renewed by it; the bucket's
// TTL (its streams's MaxAge, which nats-server 2.9 has; per-key TTLs
// came in 2.11) removes the key of a holder that stopped renewing, so a
// dead holder's lease passes within the TTL. Expiry is the server's
// clock, not the holders'.
package nats

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"onebox/lease"
)

// Options configure a Locker. Zero fields take the defaults.
type Options struct {
	// Bucket is the key-value bucket of the leases. Default
	// "onebox_leases".
	Bucket string
	// TTL is how long a lease outlives its holder's last renewal: the
	// most a dead holder's lease takes to pass. A holder renews every
	// TTL/4 and stops its work once TTL/2 has passed without a renewal,
	// before the server could give the lease to another. Every holder
	// of a bucket must use the same TTL. Default 10s.
	TTL time.Duration
	// Retry is how often a waiting holder asks for the lease. Default 1s.
	Retry time.Duration
}

// Locker takes leases in a bucket on a NATS connection it does not own.
type Locker struct {
	js jetstream.JetStream
	o  Options
	id string // this holder's, the value of the keys it holds

	mu sync.Mutex
	kv jetstream.KeyValue // created on first use, so a server down at start is no error
}

var _ lease.Locker = (*Locker)(nil)

// New returns a Locker over nc.
func New(nc *nats.Conn, o Options) (*Locker, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}
	if o.Bucket == "" {
		o.Bucket = "onebox_leases"
	}
	if o.TTL <= 0 {
		o.TTL = 10 * time.Second
	}
	if o.Retry <= 0 {
		o.Retry = time.Second
	}
	return &Locker{js: js, o: o, id: rand.Text()}, nil
}

func (l *Locker) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kv != nil {
		return l.kv, nil
	}
	kv, err := l.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: l.o.Bucket, TTL: l.o.TTL, History: 1, Description: "onebox leases: work that runs on one instance at a time",
	})
	if err != nil {
		return nil, fmt.Errorf("lease bucket %s: %w", l.o.Bucket, err)
	}
	l.kv = kv
	return kv, nil
}

// key is name in the characters a key may hold.
func key(name string) string { return "l." + base64.RawURLEncoding.EncodeToString([]byte(name)) }

// Acquire creates the lease's key, every Retry until no one else holds it.
func (l *Locker) Acquire(ctx context.Context, name string) (lease.Held, error) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
		kv, err := l.bucket(ctx)
		if err != nil {
			return nil, err
		}
		start := time.Now() // the server stamps the entry after this
		rev, err := kv.Create(ctx, key(name), []byte(l.id))
		switch {
		case err == nil:
			return l.hold(kv, key(name), rev, start), nil
		case errors.Is(err, jetstream.ErrKeyExists):
			// Ours still, if this holder lost it to a broken connection
			// and the key outlived the break: take it back.
			if e, gerr := kv.Get(ctx, key(name)); gerr == nil && string(e.Value()) == l.id {
				if rev, err = kv.Update(ctx, key(name), []byte(l.id), e.Revision()); err == nil {
					return l.hold(kv, key(name), rev, start), nil
				}
			}
			t.Reset(l.o.Retry)
		case ctx.Err() != nil:
			return nil, ctx.Err()
		default:
			return nil, fmt.Errorf("lease %s: %w", name, err)
		}
	}
}

// hold renews the key every TTL/4 while the holder runs.
func (l *Locker) hold(kv jetstream.KeyValue, k string, rev uint64, renewed time.Time) *held {
	h := &held{kv: kv, key: k}
	h.rev.Store(rev)
	h.Watched = lease.Watch(func(ctx context.Context, w *lease.Watched) {
		t := time.NewTicker(l.o.TTL / 4)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			start := time.Now()
			rctx, cancel := context.WithTimeout(ctx, l.o.TTL/4)
			rev, err := kv.Update(rctx, k, []byte(l.id), h.rev.Load())
			cancel()
			switch {
			case ctx.Err() != nil:
				return
			case err == nil:
				h.rev.Store(rev)
				renewed = start
			case errors.Is(err, jetstream.ErrKeyExists), time.Since(renewed) > l.o.TTL/2:
				// Another holder has it, or the server may soon give it.
				w.MarkLost()
				return
			}
		}
	})
	return h
}

type held struct {
	*lease.Watched
	kv  jetstream.KeyValue
	key string
	rev atomic.Uint64
}

// Release deletes the key if it is still this holder's.
func (h *held) Release(ctx context.Context) error {
	err := h.ReleaseWith(func() error {
		select {
		case <-h.Lost(): // not ours any more: nothing to delete
			return nil
		default:
		}
		err := h.kv.Delete(ctx, h.key, jetstream.LastRevision(h.rev.Load()))
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil // taken over meanwhile
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("lease release: %w", err)
	}
	return nil
}
