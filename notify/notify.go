// Package notify tells connected clients that something changed: the Hub
// interface, in process today (notify/memory), across instances later.
// A notification is only a wake-up: the durable events live in the store,
// so a client that misses one catches up from there.
package notify

import "context"

// Hub fans a topic's notifications out to its subscribers.
type Hub interface {
	// Publish wakes every subscriber of topic. It never blocks on a slow
	// subscriber: their wake-ups coalesce.
	Publish(ctx context.Context, topic string) error
	// Subscribe returns a channel that receives a value after each Publish
	// to topic (several publishes may coalesce into one), and a function
	// that ends the subscription. The channel is closed when ctx ends or
	// the hub closes.
	Subscribe(ctx context.Context, topic string) (<-chan struct{}, func())
}
