package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"onebox/notify"
	"onebox/photos"
	"onebox/store"
)

type sseEvent struct {
	id, event string
	data      map[string]any
}

// openStream connects to an SSE endpoint and returns its events.
func (b *bundle) openStream(ctx context.Context, path, token, lastID string) (<-chan sseEvent, *http.Response) {
	b.t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", b.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	out := make(chan sseEvent, 16)
	go func() {
		defer close(out)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.event != "" {
					out <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(line[6:]), &ev.data)
			}
		}
	}()
	return out, res
}

func next(t *testing.T, evs <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-evs:
		if !ok {
			t.Fatal("stream ended")
		}
		return ev
	case <-time.After(time.Minute):
		t.Fatal("no event within a minute")
	}
	return sseEvent{}
}

func TestPhotoEventStream(t *testing.T) {
	t.Parallel()
	needImages(t)
	b := newBundle(t)
	_, token := b.signup("watcher")
	_, otherToken := b.signup("stranger")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	all, res := b.openStream(ctx, "/v1/users/me/events", token, "")
	if ct := res.Header.Get("Content-Type"); res.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("stream answer %d %q", res.StatusCode, ct)
	}
	r := b.upload(token, filepath.Join(images, "formats", "jpeg_baseline_synthetic_1024x768.jpg"), true) // 1024 wide: four widths and the thumbnail
	mustStatus(t, r, http.StatusAccepted)
	id := r.json(t)["id"].(string)

	one, _ := b.openStream(ctx, "/v1/photos/"+id+"/events", token, "")
	first := next(t, one) // the photo's state when the stream opened
	if first.event != "photo" || first.data["id"] != id {
		t.Fatalf("first event %+v", first)
	}
	for first.data["status"] == "processing" {
		first = next(t, one)
	}
	if first.data["status"] != "ready" || len(first.data["variants"].([]any)) != 5 {
		t.Fatalf("final event %+v", first.data)
	}

	// The user stream saw the upload, then its completion.
	created := next(t, all)
	done := next(t, all)
	if created.data["id"] != id || done.data["status"] != "ready" || eventID(t, done) <= eventID(t, created) {
		t.Fatalf("user stream: %+v then %+v", created, done)
	}

	// Resuming after the last seen id replays only what came later.
	mustStatus(t, b.do("DELETE", "/v1/photos/"+id, "", bearer(token)...), http.StatusNoContent)
	resumed, _ := b.openStream(ctx, "/v1/users/me/events", token, done.id)
	if ev := next(t, resumed); ev.data["id"] != id || ev.data["status"] != "deleted" {
		t.Fatalf("resumed stream: %+v", ev)
	}

	// Strangers and bad resume points are refused.
	mustStatus(t, b.do("GET", "/v1/photos/"+id+"/events", "", bearer(otherToken)...), http.StatusNotFound)
	mustStatus(t, b.do("GET", "/v1/users/me/events", "", append(bearer(token), "Last-Event-ID", "x")...), http.StatusBadRequest)
	mustStatus(t, b.do("GET", "/v1/users/me/events", ""), http.StatusUnauthorized)
}

// eventID is an event's id as the integer it is: ids compared as
// strings would put "10" before "9".
func eventID(t *testing.T, ev sseEvent) int64 {
	t.Helper()
	n, err := strconv.ParseInt(ev.id, 10, 64)
	if err != nil {
		t.Fatalf("event %+v: id %q is not an integer", ev, ev.id)
	}
	return n
}

// TestEventStreamResume: a stream opened with Last-Event-ID (or
// ?last_event_id=) replays exactly the events after that id, in order,
// and then the live ones; nothing before it, nothing twice. The events
// after the resume point have ids of more digits than it (9 → 10, 11,
// 12), so only an integer comparison passes.
func TestEventStreamResume(t *testing.T) {
	t.Parallel()
	b := newBundle(t, func(s *setup) { s.noWorkers = true }) // one event per upload, none from the pipeline
	userID, token := b.signup("resumer")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	img := smallPNG(t)
	upload := func() string {
		t.Helper()
		r := b.uploadBytes(token, img, false)
		mustStatus(t, r, http.StatusAccepted)
		return r.json(t)["id"].(string)
	}
	var photos []string
	for range 12 {
		photos = append(photos, upload())
	}
	stored, err := b.store.Events(ctx, store.EventsParams{UserID: userID, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 12 {
		t.Fatalf("%d events stored for 12 uploads", len(stored))
	}
	const resumeAt = 8 // the ninth event; a fresh database numbers it 9
	after := stored[resumeAt].ID

	// want reads the next len(ids) events and checks each: after the
	// resume point, increasing, and the ones stored.
	want := func(evs <-chan sseEvent, from int64, ids []int64, photoIDs []string) int64 {
		t.Helper()
		last := from
		for i := range ids {
			ev := next(t, evs)
			n := eventID(t, ev)
			if n <= last {
				t.Fatalf("event %d of the replay has id %d, not after %d", i, n, last)
			}
			if n != ids[i] || ev.data["id"] != photoIDs[i] {
				t.Fatalf("event %d of the replay: id %d for photo %v, want %d for %s", i, n, ev.data["id"], ids[i], photoIDs[i])
			}
			last = n
		}
		return last
	}
	var ids []int64
	for _, ev := range stored[resumeAt+1:] {
		ids = append(ids, ev.ID)
	}
	resumed, res := b.openStream(ctx, "/v1/users/me/events", token, strconv.FormatInt(after, 10))
	mustStatus(t, response{Response: res}, http.StatusOK)
	last := want(resumed, after, ids, photos[resumeAt+1:])

	// What comes next is live, not more replay: the replay was exactly
	// the three events after the resume point. (A deletion wakes the
	// stream at once; an upload waits for the poll.)
	mustStatus(t, b.do("DELETE", "/v1/photos/"+photos[0], "", bearer(token)...), http.StatusNoContent)
	ev := next(t, resumed)
	if eventID(t, ev) <= last || ev.data["id"] != photos[0] || ev.data["status"] != "deleted" {
		t.Fatalf("after the replay: %+v, want the deletion of %s with an id after %d", ev, photos[0], last)
	}
	deletedID := eventID(t, ev)

	// The query parameter resumes the same way.
	byQuery, _ := b.openStream(ctx, "/v1/users/me/events?last_event_id="+strconv.FormatInt(ids[1], 10), token, "")
	last = want(byQuery, ids[1], []int64{ids[2], deletedID}, []string{photos[11], photos[0]})
	mustStatus(t, b.do("DELETE", "/v1/photos/"+photos[1], "", bearer(token)...), http.StatusNoContent)
	if ev := next(t, byQuery); eventID(t, ev) <= last || ev.data["id"] != photos[1] || ev.data["status"] != "deleted" {
		t.Fatalf("after the replay by query: %+v, want the deletion of %s", ev, photos[1])
	}

	// A photo's stream resumed after its upload event starts with what
	// came later (here, its deletion), not with the upload again.
	one, _ := b.openStream(ctx, "/v1/photos/"+photos[5]+"/events", token, strconv.FormatInt(stored[5].ID, 10))
	mustStatus(t, b.do("DELETE", "/v1/photos/"+photos[5], "", bearer(token)...), http.StatusNoContent)
	if ev := next(t, one); eventID(t, ev) <= stored[5].ID || ev.data["status"] != "deleted" {
		t.Fatalf("resumed photo stream: %+v, want the deletion after %d", ev, stored[5].ID)
	}
}

func TestModerationRejects(t *testing.T) {
	t.Parallel()
	needImages(t)
	// The blocklist holds the hash the pipeline computes for this image.
	b := newBundle(t, func(s *setup) {
		s.blocked = []uint64{mustHash(t, filepath.Join(images, "formats", "gif_static_synthetic_400x267.gif"))}
	})
	_, token := b.signup("moderated")
	r := b.upload(token, filepath.Join(images, "formats", "gif_static_synthetic_400x267.gif"), true)
	ph := b.waitPhoto(token, r.json(t)["id"].(string))
	if ph["status"] != "rejected" || ph["reason"] == "" {
		t.Fatalf("blocked image: %v", ph)
	}
	r = b.upload(token, filepath.Join(images, "formats", "jpeg_gray_hopper.jpg"), true)
	if ph := b.waitPhoto(token, r.json(t)["id"].(string)); ph["status"] != "ready" {
		t.Fatalf("other image: %v", ph)
	}
}

// downHub is a hub that can be taken down: while down, Subscribe fails
// as a hub across the network fails without its server.
type downHub struct {
	notify.Hub
	down       atomic.Bool
	subscribed atomic.Int64 // successful Subscribe calls

	mu   sync.Mutex
	ends []func() // of every subscription, for drop
}

// drop ends every subscription, as a hub that lost its connection does.
func (h *downHub) drop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, end := range h.ends {
		end()
	}
	h.ends = nil
}

func (h *downHub) Subscribe(ctx context.Context, topic string) (<-chan struct{}, func(), error) {
	if h.down.Load() {
		return nil, nil, notify.ErrUnavailable
	}
	ch, end, err := h.Hub.Subscribe(ctx, topic)
	if err == nil {
		h.subscribed.Add(1)
		h.mu.Lock()
		h.ends = append(h.ends, end)
		h.mu.Unlock()
	}
	return ch, end, err
}

// waitCount waits until query has run at least n times.
func (b *bundle) waitCount(t *testing.T, query string, n int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); b.count(query) < n; {
		if time.Now().After(deadline) {
			t.Fatalf("%s ran %d times in 10s, want %d", query, b.count(query), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// requireIdle watches query for many fallback intervals, after a few to
// let a read under way finish: it must not run.
func (b *bundle) requireIdle(t *testing.T, query string, interval time.Duration) {
	t.Helper()
	time.Sleep(5 * interval)
	before := b.count(query)
	time.Sleep(30 * interval)
	if n := b.count(query) - before; n != 0 {
		t.Fatalf("%s ran %d times on an idle stream with a working hub, want none", query, n)
	}
}

// TestEventStreamFallbackPoll: with a working hub an idle stream reads
// nothing from the store after its first read; while the hub is down it
// polls every EventsFallbackPoll, and stops once it subscribes again.
func TestEventStreamFallbackPoll(t *testing.T) {
	t.Parallel()
	const interval = 10 * time.Millisecond
	var hub *downHub
	b := newBundle(t, func(s *setup) {
		s.opts.EventsFallbackPoll = interval
		s.wrapHub = func(h notify.Hub) notify.Hub { hub = &downHub{Hub: h}; return hub }
	})
	userID, token := b.signup("idle")
	topic := photos.UserTopic(userID)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	// A working hub: one read of the last id, one of the events, then
	// nothing until a wake-up.
	b.openStream(ctx, "/v1/users/me/events", token, "")
	b.waitCount(t, "events_after", 1)
	b.requireIdle(t, "events_after", interval)
	if n := b.count("events_last_id"); n != 1 {
		t.Fatalf("events_last_id ran %d times, want 1", n)
	}
	if err := b.hub.Publish(ctx, topic); err != nil {
		t.Fatal(err)
	}
	b.waitCount(t, "events_after", 2) // woken: it reads

	// The hub ends the subscription, as on a lost connection: the stream
	// subscribes again and reads what it may have missed.
	hub.drop()
	b.waitCount(t, "events_after", 3)
	if n := hub.subscribed.Load(); n != 2 {
		t.Fatalf("%d subscriptions, want the stream to have subscribed again", n)
	}
	b.requireIdle(t, "events_after", interval)

	// The hub is down: a new stream polls.
	hub.down.Store(true)
	polled := b.count("events_after")
	b.openStream(ctx, "/v1/users/me/events", token, "")
	b.waitCount(t, "events_after", polled+5)

	// Back up: at its next poll the stream subscribes, then idles.
	hub.down.Store(false)
	for hub.subscribed.Load() < 3 {
		b.waitCount(t, "events_after", b.count("events_after")+1)
	}
	b.requireIdle(t, "events_after", interval)
	before := b.count("events_after")
	if err := b.hub.Publish(ctx, topic); err != nil {
		t.Fatal(err)
	}
	b.waitCount(t, "events_after", before+2) // both streams woken
}
