// Package memory implements notify.Hub in process: it reaches the
// subscribers of this instance only.
package memory

import (
	"context"
	"sync"

	"onebox/notify"
)

var _ notify.Hub = (*Hub)(nil)

// Hub is an in-process notify.Hub. It holds state only for topics that
// have subscribers.
type Hub struct {
	// mu is held for writing to add, remove and close subscriptions, and
	// for reading to publish: a publish's non-blocking sends are safe
	// together but must not race a close of the channel.
	mu     sync.RWMutex
	topics map[string]map[*subscription]struct{}
	closed bool
}

type subscription struct {
	ch chan struct{}
	// stop unregisters the context.AfterFunc that ends the subscription,
	// so a long-lived context does not keep ended ones alive.
	stop func() bool
}

// New returns a Hub with no subscribers.
func New() *Hub {
	return &Hub{topics: make(map[string]map[*subscription]struct{})}
}

// Publish wakes every subscriber of topic without blocking: a subscriber
// that has not taken its last wake-up keeps that one. It never fails.
func (h *Hub) Publish(_ context.Context, topic string) error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for sub := range h.topics[topic] {
		select {
		case sub.ch <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
	return nil
}

// Subscribe returns a channel that receives a value after Publish to
// topic, and a function that ends the subscription and closes the
// channel; calling it more than once is harmless. The subscription also
// ends when ctx ends or the Hub closes. On a closed Hub it fails with
// notify.ErrClosed.
func (h *Hub) Subscribe(ctx context.Context, topic string) (<-chan struct{}, func(), error) {
	sub := &subscription{ch: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, nil, notify.ErrClosed
	}
	subs := h.topics[topic]
	if subs == nil {
		subs = make(map[*subscription]struct{})
		h.topics[topic] = subs
	}
	subs[sub] = struct{}{}
	// AfterFunc runs its function in a goroutine, which waits for mu.
	sub.stop = context.AfterFunc(ctx, func() { h.unsubscribe(topic, sub) })
	return sub.ch, func() { h.unsubscribe(topic, sub) }, nil
}

func (h *Hub) unsubscribe(topic string, sub *subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	subs := h.topics[topic]
	if _, ok := subs[sub]; !ok {
		return // ended already
	}
	sub.stop()
	close(sub.ch)
	delete(subs, sub)
	if len(subs) == 0 {
		delete(h.topics, topic)
	}
}

// Drop ends every subscription, closing its channel, and leaves the Hub
// open: a hub across the network drops its subscribers when it may have
// lost a notification, so that they read the source.
func (h *Hub) Drop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropLocked()
}

func (h *Hub) dropLocked() {
	for _, subs := range h.topics {
		for sub := range subs {
			sub.stop()
			close(sub.ch)
		}
	}
	clear(h.topics)
}

// Close ends every subscription, closing its channel. Later calls to
// Subscribe fail; Publish wakes no one. Calling Close
// more than once is harmless.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	h.dropLocked()
}
