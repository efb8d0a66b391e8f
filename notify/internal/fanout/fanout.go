// Package fanout is the part the hubs across the network share: one
// upstream channel carries every wake-up and bus message, and this
// package fans them out to the subscribers and listeners of this
// instance, and drops the subscribers whenever the upstream may have lost
// something.
package fanout

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"onebox/notify"
	"onebox/notify/memory"
)

// Upstream payloads start with one of these tags.
const (
	tagWake    = 'w' // the topic follows
	tagMessage = 'm' // the subject, a newline, then the message
)

// Wake is the upstream payload of a wake-up of topic.
func Wake(topic string) []byte { return append([]byte{tagWake}, topic...) }

// Message is the upstream payload of msg on subject, which must not hold
// a newline.
func Message(subject string, msg []byte) ([]byte, error) {
	if bytes.IndexByte([]byte(subject), '\n') >= 0 {
		return nil, fmt.Errorf("notify: subject %q holds a newline", subject)
	}
	p := make([]byte, 0, 2+len(subject)+len(msg))
	p = append(append(append(append(p, tagMessage), subject...), '\n'), msg...)
	return p, nil
}

// Fanout holds this instance's subscribers and listeners.
type Fanout struct {
	local *memory.Hub

	// mu orders Subscribe against Down: a subscription taken while the
	// upstream is up is dropped by the Down that follows, never missed.
	mu        sync.Mutex
	up        bool
	closed    bool
	listeners map[string]map[*listener]struct{}
}

type listener struct{ handle func([]byte) }

// New returns a Fanout whose upstream is down.
func New() *Fanout {
	return &Fanout{local: memory.New(), listeners: map[string]map[*listener]struct{}{}}
}

// Subscribe subscribes to topic while the upstream is up; else it fails
// with notify.ErrUnavailable.
func (f *Fanout) Subscribe(ctx context.Context, topic string) (<-chan struct{}, func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.closed:
		return nil, nil, notify.ErrClosed
	case !f.up:
		return nil, nil, notify.ErrUnavailable
	}
	return f.local.Subscribe(ctx, topic)
}

// Connected reports whether the upstream is up.
func (f *Fanout) Connected() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.up
}

// Up says the upstream delivers from now on.
func (f *Fanout) Up() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.up = !f.closed
}

// Down says the upstream may have lost payloads: every subscription ends
// (its subscriber reads the source) and Subscribe fails until Up.
func (f *Fanout) Down() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.up = false
	f.local.Drop()
}

// Deliver hands a payload from upstream to its subscribers or listeners.
// Payloads it does not know are ignored: another version may send them.
func (f *Fanout) Deliver(p []byte) {
	if len(p) == 0 {
		return
	}
	switch p[0] {
	case tagWake:
		_ = f.local.Publish(context.Background(), string(p[1:])) // never fails
	case tagMessage:
		subject, msg, ok := bytes.Cut(p[1:], []byte{'\n'})
		if !ok {
			return
		}
		f.mu.Lock()
		ls := make([]*listener, 0, len(f.listeners[string(subject)]))
		for l := range f.listeners[string(subject)] {
			ls = append(ls, l)
		}
		f.mu.Unlock()
		for _, l := range ls {
			l.handle(msg)
		}
	}
}

// Listen calls handle with each message on subject until stop.
func (f *Fanout) Listen(subject string, handle func([]byte)) (stop func()) {
	l := &listener{handle: handle}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listeners[subject] == nil {
		f.listeners[subject] = map[*listener]struct{}{}
	}
	f.listeners[subject][l] = struct{}{}
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.listeners[subject], l)
		if len(f.listeners[subject]) == 0 {
			delete(f.listeners, subject)
		}
	}
}

// Close ends every subscription; Subscribe fails from then on.
func (f *Fanout) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.up, f.closed = false, true
	f.local.Close()
}
