package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"onebox/notify"
	"onebox/photos"
	"onebox/store"
)

// Streams of photo events (Server-Sent Events). The events are rows the
// store writes with each status change, so a client that reconnects with
// Last-Event-ID gets what it missed, even across a restart; the hub only
// wakes the stream, and a poll stands in for it while it is down.
const (
	sseKeepAlive = 15 * time.Second
	// defaultEventsFallbackPoll is how often a stream reads the store
	// while the hub is down, when Options.EventsFallbackPoll is 0.
	defaultEventsFallbackPoll = 2 * time.Second
	sseMaxAge                 = time.Hour // then the client reconnects, with Last-Event-ID
	sseBatch                  = 100
	// Retry-After past a cap. At the total cap, streams end every
	// sseMaxAge/cap on average (3.6 s at 1000), so a slot comes soon; past
	// the user's own cap, one of the user's streams (another tab) must
	// close first, so the client should wait longer.
	sseRetryFull = 5 * time.Second
	sseRetryUser = 30 * time.Second
)

// streamCaps bounds the event streams open on this instance: per user,
// so one account cannot hold them all, and in total, since every stream
// is a connection, a goroutine and, while the hub is down, a store read
// every EventsFallbackPoll. The counts
// are this process's: behind a load balancer, each instance has its own.
type streamCaps struct {
	perUser, max int // 0 is no bound

	mu     sync.Mutex
	open   int
	byUser map[string]int
}

func newStreamCaps(perUser, max int) *streamCaps {
	return &streamCaps{perUser: perUser, max: max, byUser: map[string]int{}}
}

// acquire takes a stream slot for userID, or returns the 429 (the user's
// cap) or 503 (this instance's) problem. release gives the slot back.
func (s *streamCaps) acquire(userID string) (release func(), _ error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perUser > 0 && s.byUser[userID] >= s.perUser {
		p := problem(http.StatusTooManyRequests, "too-many-streams",
			fmt.Sprintf("at most %d event streams per user are open at once; close one first", s.perUser))
		p.retryAfter = sseRetryUser
		return nil, p
	}
	if s.max > 0 && s.open >= s.max {
		p := problem(http.StatusServiceUnavailable, "too-many-streams", "the server has as many event streams open as it takes; retry shortly")
		p.retryAfter = sseRetryFull
		return nil, p
	}
	s.open++
	s.byUser[userID]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.open--
		if s.byUser[userID]--; s.byUser[userID] == 0 {
			delete(s.byUser, userID) // the map holds only users with a stream
		}
	}, nil
}

// photoEvents: GET /v1/photos/{id}/events, the owner's stream of one
// photo. Without Last-Event-ID it starts with the photo's current state.
func (a *App) photoEvents(c echo.Context) error {
	who, err := requireUser(c)
	if err != nil {
		return err
	}
	ph, err := a.visiblePhoto(c, c.Param("id"))
	if err != nil {
		return err
	}
	if ph.OwnerID != who.userID {
		return problem(http.StatusNotFound, "not-found", "no such photo")
	}
	return a.stream(c, who.userID, ph.ID)
}

// userEvents: GET /v1/users/me/events, every photo event of the caller.
func (a *App) userEvents(c echo.Context) error {
	who, err := requireUser(c)
	if err != nil {
		return err
	}
	return a.stream(c, who.userID, "")
}

func (a *App) stream(c echo.Context, userID, photoID string) error {
	req := c.Request()
	after, resumed, err := lastEventID(c)
	if err != nil {
		return err
	}
	release, err := a.streams.acquire(userID)
	if err != nil {
		return err
	}
	defer release()
	res := c.Response()
	if req.Method == http.MethodHead {
		// The stream's headers and no stream: a probe holds nothing.
		streamHeaders(res.Header())
		res.WriteHeader(http.StatusOK)
		return nil
	}
	ctx, cancel := context.WithTimeout(req.Context(), sseMaxAge)
	defer cancel()
	// Subscribe before the first read, so no event falls between them.
	sub := a.subscribe(ctx, photos.UserTopic(userID))
	defer sub.end()
	if !resumed {
		if after, err = a.store.LastEventID(ctx, userID); err != nil {
			return err
		}
	}

	streamHeaders(res.Header())
	res.WriteHeader(http.StatusOK)
	a.metrics.SSE(1)
	defer a.metrics.SSE(-1)
	rc := http.NewResponseController(res)
	write := func(s string) error {
		// Each write gets its own deadline: streams are exempt from the
		// server's write timeout, but a stuck client must not hold us.
		_ = rc.SetWriteDeadline(time.Now().Add(sseKeepAlive * 2))
		if _, err := res.Write([]byte(s)); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := write("retry: 2000\n\n"); err != nil {
		return nil
	}
	if photoID != "" && !resumed {
		if err := a.sendPhoto(ctx, write, after, photoID); err != nil {
			return nil
		}
	}
	keepAlive := time.NewTicker(sseKeepAlive)
	defer keepAlive.Stop()
	for {
		evs, err := a.store.Events(ctx, store.EventsParams{UserID: userID, PhotoID: photoID, AfterID: after, Limit: sseBatch})
		if err != nil {
			return nil // the response has started; the client reconnects
		}
		for _, ev := range evs {
			if err := a.sendPhoto(ctx, write, ev.ID, ev.PhotoID); err != nil {
				return nil
			}
			after = ev.ID
		}
		if len(evs) == sseBatch {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.closing:
			_ = write("event: shutdown\ndata: {}\n\n")
			return nil
		case _, ok := <-sub.wake:
			if !ok && sub.lost(ctx) {
				return nil
			} // else woken, or subscribed again: read what a lost wake-up announced
		case <-sub.poll():
			sub.retry(ctx)
		case <-keepAlive.C:
			if err := write(": keep-alive\n\n"); err != nil {
				return nil
			}
		}
	}
}

// subscription is an event stream's hold on the hub. While the hub works,
// a stream reads the store only when woken. While it does not (Subscribe
// failed, or the hub ended the subscription because it may have lost a
// wake-up), the stream polls the store every EventsFallbackPoll and tries
// to subscribe again at each poll.
//
// There is no safety poll beside a working hub: every wake-up a hub can
// lose on the subscriber's side (a dropped connection, a slow consumer)
// ends the subscription, and the stream then reads the store. A Publish
// that fails on the publisher's side is logged there; its subscribers
// learn of the event with the next one, or when they reconnect.
type subscription struct {
	hub      notify.Hub
	topic    string
	interval time.Duration
	log      *slog.Logger

	wake  <-chan struct{} // nil while polling: never ready
	end   func()
	timer *time.Timer // runs only while polling
}

func (a *App) subscribe(ctx context.Context, topic string) *subscription {
	s := &subscription{hub: a.hub, topic: topic, interval: a.opts.EventsFallbackPoll, log: a.log, end: func() {}}
	if s.interval <= 0 {
		s.interval = defaultEventsFallbackPoll
	}
	s.retry(ctx)
	return s
}

// retry subscribes, or else arms the fallback poll.
func (s *subscription) retry(ctx context.Context) {
	wake, end, err := s.hub.Subscribe(ctx, s.topic)
	if err != nil {
		if ctx.Err() == nil {
			s.log.DebugContext(ctx, "event stream polls: the hub is down", "err", err.Error())
		}
		s.wake, s.end = nil, func() {}
		s.arm()
		return
	}
	s.wake, s.end = wake, end
}

// lost handles the end of a subscription the stream did not end: it
// reports whether the stream should end (its context did), and otherwise
// subscribes again, so the caller reads the store at once.
func (s *subscription) lost(ctx context.Context) bool {
	s.end()
	if ctx.Err() != nil {
		return true
	}
	s.retry(ctx)
	return false
}

func (s *subscription) arm() {
	if s.timer == nil {
		s.timer = time.NewTimer(s.interval)
		return
	}
	s.timer.Reset(s.interval)
}

// poll is ready when a fallback poll is due; nil (never ready) while the
// hub works.
func (s *subscription) poll() <-chan time.Time {
	if s.wake != nil || s.timer == nil {
		return nil
	}
	return s.timer.C
}

func streamHeaders(h http.Header) {
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set(echo.HeaderCacheControl, "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
}

// sendPhoto writes one "photo" event with the photo's current state; a
// photo deleted since reads as status "deleted".
func (a *App) sendPhoto(ctx context.Context, write func(string) error, id int64, photoID string) error {
	var data []byte
	ph, err := a.store.Photo(ctx, store.PhotoParams{ID: photoID, Freshness: store.MustBeFresh})
	switch {
	case errors.Is(err, store.ErrNotFound):
		data = mustJSON(map[string]string{"id": photoID, "status": "deleted"})
	case err != nil:
		return err
	default:
		j, err := a.photo(ctx, ph)
		if err != nil {
			return err
		}
		data = mustJSON(j)
	}
	return write(fmt.Sprintf("id: %d\nevent: photo\ndata: %s\n\n", id, data))
}

// lastEventID reads Last-Event-ID (or ?last_event_id= for clients that
// cannot set headers).
func lastEventID(c echo.Context) (int64, bool, error) {
	v := c.Request().Header.Get("Last-Event-ID")
	if v == "" {
		v = c.QueryParam("last_event_id")
	}
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false, badHeader("Last-Event-ID", "must be an event id this API sent")
	}
	return n, true, nil
}
