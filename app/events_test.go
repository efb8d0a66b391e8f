package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	if created.data["id"] != id || done.data["status"] != "ready" || done.id <= created.id {
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
