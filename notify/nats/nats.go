// Package nats implements notify.Hub and notify.Bus over NATS core
// publish/subscribe, across every instance connected to the same NATS
// servers.
//
// Core NATS delivers at most once, to the subscriptions present at the
// time. Every instance subscribes to one subject and fans its messages
// out in process. While the connection is down (the client reconnects on
// its own, and buffers publishes meanwhile), messages to this instance are
// lost: the hub drops every subscription when it disconnects, or when the
// client drops messages as a slow consumer, so the subscribers read the
// store, and it accepts new ones once it is back.
package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"onebox/notify"
	"onebox/notify/internal/fanout"
)

var (
	_ notify.Hub = (*Hub)(nil)
	_ notify.Bus = (*Hub)(nil)
)

// DefaultSubject is the subject every instance subscribes to.
const DefaultSubject = "onebox.notify"

// Options configure a Hub.
type Options struct {
	// Subject carries every notification; DefaultSubject if "". Tests
	// sharing a server give each hub its own.
	Subject string
	// Logger reports lost and restored connections; nil discards.
	Logger *slog.Logger
	// ReconnectWait is the wait between reconnections; 0 is 500ms.
	ReconnectWait time.Duration
}

// Hub is a notify.Hub over NATS.
type Hub struct {
	fan  *fanout.Fanout
	nc   *nats.Conn
	opts Options
}

// Open connects to the NATS servers at url (nats://host:port, several
// separated by commas). It does not wait for them: until the first
// connection, Subscribe fails with notify.ErrUnavailable, so that a NATS
// outage does not stop a start.
func Open(url string, o Options) (*Hub, error) {
	if o.Subject == "" {
		o.Subject = DefaultSubject
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ReconnectWait <= 0 {
		o.ReconnectWait = 500 * time.Millisecond
	}
	h := &Hub{fan: fanout.New(), opts: o}
	nc, err := nats.Connect(url,
		nats.Name("onebox notify"),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(o.ReconnectWait),
		nats.ConnectHandler(h.up),
		nats.ReconnectHandler(h.up),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			h.fan.Down()
			if err != nil {
				o.Logger.Warn("notification hub: lost NATS; event streams poll until it is back", "err", err.Error())
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) {
				// Messages were dropped: the subscribers read the store.
				h.fan.Down()
				h.fan.Up()
			}
			o.Logger.Warn("notification hub: NATS error", "err", err.Error())
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("notify/nats: %w", err)
	}
	h.nc = nc
	if _, err := nc.Subscribe(o.Subject, func(m *nats.Msg) { h.fan.Deliver(m.Data) }); err != nil {
		nc.Close()
		return nil, fmt.Errorf("notify/nats: subscribe: %w", err)
	}
	if nc.IsConnected() { // connected at once: no handler is called
		h.up(nc)
	}
	return h, nil
}

// up opens the hub to subscribers once the server has our subscription:
// the flush's round trip comes after the client's SUB.
func (h *Hub) up(nc *nats.Conn) {
	if err := nc.Flush(); err != nil {
		return // disconnected again; the next reconnection tries again
	}
	h.fan.Up()
	h.opts.Logger.Info("notification hub: connected to NATS", "server", nc.ConnectedUrlRedacted())
}

// Publish publishes the topic. While reconnecting, the client buffers it.
func (h *Hub) Publish(_ context.Context, topic string) error {
	if err := h.nc.Publish(h.opts.Subject, fanout.Wake(topic)); err != nil {
		return fmt.Errorf("notify/nats: publish: %w", err)
	}
	return nil
}

// Subscribe subscribes to topic while connected; else it fails with
// notify.ErrUnavailable.
func (h *Hub) Subscribe(ctx context.Context, topic string) (<-chan struct{}, func(), error) {
	return h.fan.Subscribe(ctx, topic)
}

// Send delivers msg to the listeners of subject.
func (h *Hub) Send(_ context.Context, subject string, msg []byte) error {
	p, err := fanout.Message(subject, msg)
	if err != nil {
		return err
	}
	if err := h.nc.Publish(h.opts.Subject, p); err != nil {
		return fmt.Errorf("notify/nats: publish: %w", err)
	}
	return nil
}

// Listen calls handle with each message on subject until stop.
func (h *Hub) Listen(subject string, handle func([]byte)) (stop func()) {
	return h.fan.Listen(subject, handle)
}

// Connected reports whether the hub is connected: Subscribe succeeds.
func (h *Hub) Connected() bool { return h.fan.Connected() }

// Close closes the connection and ends every subscription.
func (h *Hub) Close() error {
	h.nc.Close()
	h.fan.Close()
	return nil
}
