// Package notify tells connected clients that something changed: the Hub
// interface, in process (notify/memory) or across instances
// (notify/postgres, notify/nats). A notification is only a wake-up: the
// durable events live in the store, so a client that misses one catches up
// from there.
package notify

import (
	"context"
	"errors"
)

// ErrClosed is returned by Subscribe on a hub that was closed.
var ErrClosed = errors.New("notify: hub closed")

// ErrUnavailable is returned by Subscribe while a hub across the network
// cannot reach its server; it reconnects on its own, so a later Subscribe
// may succeed.
var ErrUnavailable = errors.New("notify: hub unavailable")

// Hub fans a topic's notifications out to its subscribers.
type Hub interface {
	// Publish wakes every subscriber of topic. It never blocks on a slow
	// subscriber: their wake-ups coalesce.
	Publish(ctx context.Context, topic string) error
	// Subscribe returns a channel that receives a value after each Publish
	// to topic (several publishes may coalesce into one), and a function
	// that ends the subscription. The channel is closed when ctx ends, the
	// hub closes, or the hub may have lost a notification (a hub across
	// the network lost its connection): the subscriber then reads the
	// source, since something may have changed, and subscribes again.
	// Subscribe fails when the hub cannot deliver notifications now
	// (ErrUnavailable, ErrClosed); the subscriber then polls the source.
	Subscribe(ctx context.Context, topic string) (<-chan struct{}, func(), error)
}

// Bus carries short messages to every instance listening on a subject,
// this one included, at most once: for hints whose loss something else
// bounds, such as a cache invalidation, bounded by the entry's TTL.
// The hubs across the network implement it.
type Bus interface {
	// Send delivers msg to the listeners of subject on every instance.
	Send(ctx context.Context, subject string, msg []byte) error
	// Listen calls handle with each message sent on subject until stop is
	// called. handle runs on the hub's own goroutine: it must not block.
	Listen(subject string, handle func(msg []byte)) (stop func())
}
