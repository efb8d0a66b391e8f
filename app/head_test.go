package app_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

// Every GET route answers HEAD (RFC 9110): the status and headers of GET,
// and no body, so the next answer on the connection is intact. The routes
// come from the router, so a GET route added without HEAD fails here; a
// route with parameters needs an example below.
func TestHeadOnEveryGetRoute(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	userID, token := b.signup("prober")
	r := b.uploadBytes(token, smallPNG(t), false)
	mustStatus(t, r, http.StatusAccepted)
	photoID := r.json(t)["id"].(string)
	ph := b.waitPhoto(token, photoID)
	mediaURL := ph["variants"].([]any)[0].(map[string]any)["url"].(string)
	page := b.do("GET", "/", "")
	asset := regexp.MustCompile(`/static/[^"]+\.css`).Find(page.body)
	if asset == nil {
		t.Fatalf("no stylesheet in the page:\n%s", page.body)
	}
	examples := map[string]string{
		"/v1/users/:id":         "/v1/users/" + userID,
		"/v1/users/:id/photos":  "/v1/users/" + userID + "/photos",
		"/v1/photos/:id":        "/v1/photos/" + photoID,
		"/v1/photos/:id/events": "/v1/photos/" + photoID + "/events",
		"/media/*":              mediaURL,
		"/static/:name":         string(asset),
		"/u/:handle":            "/u/prober",
	}
	e, ok := b.handler.(*echo.Echo)
	if !ok {
		t.Fatalf("the handler is a %T, not the router", b.handler)
	}
	var paths []string
	for _, rt := range e.Routes() {
		if rt.Method != http.MethodGet {
			continue
		}
		p := rt.Path
		if strings.ContainsAny(p, ":*") {
			if p, ok = examples[rt.Path]; !ok {
				t.Fatalf("GET %s: add an example path for it", rt.Path)
			}
		}
		paths = append(paths, p)
	}
	if len(paths) < len(examples) {
		t.Fatalf("only %d GET routes: %v", len(paths), paths)
	}
	// And problems: a missing resource, a path no route has.
	paths = append(paths, "/v1/users/0190b3a4-0000-7000-8000-000000000000", "/no/such/route")

	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel() // ends a stream's GET
			req, _ := http.NewRequestWithContext(ctx, "GET", b.url+path, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			get, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			get.Body.Close()

			// HEAD, then GET /health/live on the same connection: a HEAD
			// answer with a body, or one that never ends, breaks the second.
			c := dial(t, b.url)
			c.send("HEAD " + path + " HTTP/1.1\r\nHost: onebox\r\nAuthorization: Bearer " + token + "\r\n\r\n" +
				"GET /health/live HTTP/1.1\r\nHost: onebox\r\n\r\n")
			head := c.read("HEAD", path)
			if head.StatusCode == http.StatusMethodNotAllowed || head.StatusCode != get.StatusCode {
				t.Fatalf("HEAD %d, GET %d", head.StatusCode, get.StatusCode)
			}
			for _, h := range []string{"Content-Type", "Content-Length", "Cache-Control", "Etag"} {
				if head.Header.Get(h) != get.Header.Get(h) {
					t.Errorf("%s: HEAD %q, GET %q", h, head.Header.Get(h), get.Header.Get(h))
				}
			}
			next := c.read("GET", "/health/live")
			if next.StatusCode != http.StatusOK || string(next.body) != `{"status":"live"}` {
				t.Fatalf("the answer after HEAD: %d %q", next.StatusCode, next.body)
			}
		})
	}
}
