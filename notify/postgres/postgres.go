// Package postgres implements notify.Hub and notify.Bus over PostgreSQL
// LISTEN/NOTIFY, across every instance using the same database.
//
// One connection of its own LISTENs on one channel for every topic and
// fans the notifications out in process (NOTIFY is database-wide and
// cheap; a channel per topic would be a LISTEN per subscription). A
// pool of one connection sends the NOTIFYs. When the listening connection
// breaks, the hub drops every subscription, since notifications sent
// meanwhile are lost, and reconnects with backoff.
package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"onebox/notify"
	"onebox/notify/internal/fanout"
)

var (
	_ notify.Hub = (*Hub)(nil)
	_ notify.Bus = (*Hub)(nil)
)

// DefaultChannel is the channel every instance LISTENs on.
const DefaultChannel = "onebox_notify"

// Options configure a Hub.
type Options struct {
	// Channel is the LISTEN/NOTIFY channel; DefaultChannel if "". Tests
	// sharing a database give each hub its own.
	Channel string
	// Logger reports lost and restored connections; nil discards.
	Logger *slog.Logger
	// MaxBackoff bounds the wait between reconnections; 0 is 5s.
	MaxBackoff time.Duration
}

// Hub is a notify.Hub over LISTEN/NOTIFY.
type Hub struct {
	fan     *fanout.Fanout
	pool    *pgxpool.Pool // sends NOTIFY
	connCfg *pgx.ConnConfig
	opts    Options

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// Open starts a Hub on the database at url. It returns at once: the
// listener connects in the background, and until it has, Subscribe fails
// with notify.ErrUnavailable (a database outage must not stop a start).
func Open(url string, o Options) (*Hub, error) {
	if o.Channel == "" {
		o.Channel = DefaultChannel
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	connCfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("notify/postgres: %w", err)
	}
	poolCfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("notify/postgres: %w", err)
	}
	poolCfg.MaxConns = 1 // a NOTIFY is quick; publishes queue for it
	pool, err := pgxpool.NewWithConfig(context.Background(), poolCfg)
	if err != nil {
		return nil, fmt.Errorf("notify/postgres: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{fan: fanout.New(), pool: pool, connCfg: connCfg, opts: o, cancel: cancel, done: make(chan struct{})}
	go h.listen(ctx)
	return h, nil
}

// Publish sends a NOTIFY with the topic. It fails when the database does.
func (h *Hub) Publish(ctx context.Context, topic string) error {
	return h.notify(ctx, fanout.Wake(topic))
}

// Subscribe subscribes to topic while the listener is connected; else it
// fails with notify.ErrUnavailable.
func (h *Hub) Subscribe(ctx context.Context, topic string) (<-chan struct{}, func(), error) {
	return h.fan.Subscribe(ctx, topic)
}

// Send delivers msg, which must be text without NUL bytes (a NOTIFY
// payload is text of under 8000 bytes), to the listeners of subject.
func (h *Hub) Send(ctx context.Context, subject string, msg []byte) error {
	p, err := fanout.Message(subject, msg)
	if err != nil {
		return err
	}
	return h.notify(ctx, p)
}

// Connected reports whether the hub is listening: Subscribe succeeds.
func (h *Hub) Connected() bool { return h.fan.Connected() }

// Listen calls handle with each message on subject until stop.
func (h *Hub) Listen(subject string, handle func([]byte)) (stop func()) {
	return h.fan.Listen(subject, handle)
}

func (h *Hub) notify(ctx context.Context, payload []byte) error {
	if _, err := h.pool.Exec(ctx, "select pg_notify($1, $2)", h.opts.Channel, string(payload)); err != nil {
		return fmt.Errorf("notify/postgres: notify: %w", err)
	}
	return nil
}

// listen keeps a listening connection until ctx ends.
func (h *Hub) listen(ctx context.Context) {
	defer close(h.done)
	backoff := 50 * time.Millisecond
	for {
		listened, err := h.session(ctx)
		h.fan.Down()
		if listened {
			backoff = 50 * time.Millisecond
		}
		if ctx.Err() != nil {
			return
		}
		h.opts.Logger.Warn("notification hub: lost the database; event streams poll until it is back", "err", err.Error(), "retry_in", backoff.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, h.opts.MaxBackoff)
	}
}

// session connects, LISTENs and delivers until the connection fails;
// listened says it got as far as listening.
func (h *Hub) session(ctx context.Context) (listened bool, _ error) {
	conn, err := pgx.ConnectConfig(ctx, h.connCfg)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "listen "+pgx.Identifier{h.opts.Channel}.Sanitize()); err != nil {
		return false, err
	}
	// Only now are notifications delivered: subscriptions start here.
	h.fan.Up()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, err
		}
		h.fan.Deliver([]byte(n.Payload))
	}
}

// Close stops listening, ends every subscription and closes the pool.
func (h *Hub) Close() error {
	h.once.Do(func() {
		h.cancel()
		<-h.done
		h.fan.Close()
		h.pool.Close()
	})
	return nil
}
