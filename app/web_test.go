package app_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"onebox/store"
)

var (
	assetURL = regexp.MustCompile(`/static/(app|icon)\.([0-9a-f]{10})\.(js|css|svg)`)
	inline   = regexp.MustCompile(`(?i)\sstyle=|<script>|<script [^>]*>[^<]|\son[a-z]+=|javascript:`)
)

// TestPageCSPAdmitsMediaOrigin: with media served from elsewhere (a CDN,
// a bucket), the page's images may come from there, and nothing else may.
func TestPageCSPAdmitsMediaOrigin(t *testing.T) {
	t.Parallel()
	b := newBundle(t, func(s *setup) { s.opts.MediaOrigin = "https://cdn.example.com" })
	r := b.do("GET", "/", "")
	mustStatus(t, r, http.StatusOK)
	csp := r.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "img-src 'self' https://cdn.example.com;") || strings.Count(csp, "cdn.example.com") != 1 {
		t.Errorf("CSP %q: want img-src to admit https://cdn.example.com, and only img-src", csp)
	}
}

// TestPageAndAssets checks the page's headers and its hashed, immutable
// assets without a browser.
func TestPageAndAssets(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	r := b.do("GET", "/", "")
	mustStatus(t, r, http.StatusOK)
	h := r.Header
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self';") || !strings.Contains(csp, "img-src 'self';") || strings.Contains(csp, "unsafe") {
		t.Errorf("CSP %q", csp)
	}
	if h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") != "no-referrer" || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("page security headers %v", h)
	}
	if h.Get("Cache-Control") != "no-cache" || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Errorf("page headers %v", h)
	}
	html := string(r.body)
	if !strings.Contains(html, `id="signup-form"`) || strings.Contains(html, `id="profile-form"`) {
		t.Error("a visitor should get the sign-up form")
	}
	if m := inline.FindString(html); m != "" {
		t.Errorf("the page holds %q: inline code or style", m)
	}
	assets := assetURL.FindAllStringSubmatch(html, -1)
	if len(assets) < 3 {
		t.Fatalf("hashed asset URLs in the page: %v", assets)
	}
	for _, m := range assets {
		r := b.do("GET", m[0], "")
		mustStatus(t, r, http.StatusOK)
		sum := sha256.Sum256(r.body)
		if hex.EncodeToString(sum[:5]) != m[2] {
			t.Errorf("%s: the name's hash is not the content's", m[0])
		}
		if cc := r.Header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
			t.Errorf("%s: Cache-Control %q", m[0], cc)
		}
		if ct := r.Header.Get("Content-Type"); ct == "" || strings.HasPrefix(ct, "text/plain") {
			t.Errorf("%s: Content-Type %q", m[0], ct)
		}
		mustStatus(t, b.do("GET", m[0], "", "If-None-Match", r.Header.Get("ETag")), http.StatusNotModified)
	}
	for _, p := range []string{"/static/app.js", "/static/app.0000000000.js", "/static/", "/static/page.html"} {
		mustStatus(t, b.do("GET", p, ""), http.StatusNotFound)
	}

	// A valid session cookie gets the profile, rendered by the server; a
	// stale one is a visitor.
	b.signup("grace")
	token := b.login("grace", "correct horse")
	r = b.do("GET", "/", "", "Cookie", "onebox_session="+token)
	mustStatus(t, r, http.StatusOK)
	if html := string(r.body); !strings.Contains(html, `id="profile-form"`) || !strings.Contains(html, "@grace") || strings.Contains(html, `id="signup-form"`) {
		t.Errorf("a signed-in page should show the profile:\n%s", html)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "private, no-cache" {
		t.Errorf("signed-in page Cache-Control %q", cc)
	}
	r = b.do("GET", "/", "", "Cookie", "onebox_session="+strings.Repeat("x", 43))
	mustStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), `id="signup-form"`) {
		t.Error("a stale cookie should get the visitor's page")
	}
}

// TestPublicPage checks /u/{handle} without a browser: only the profile
// and ready photos, the same bytes for every visitor (so a shared cache
// may keep them), an ETag that follows the photos as well as the
// profile, escaping, paging, and 404s that look nothing up for handles
// sign-up would refuse.
func TestPublicPage(t *testing.T) {
	t.Parallel()
	needImages(t)
	blocked := filepath.Join(images, "formats", "gif_static_synthetic_400x267.gif")
	b := newBundle(t, func(s *setup) { s.blocked = []uint64{mustHash(t, blocked)} })
	userID, token := b.signup("grace")
	mustStatus(t, b.do("PATCH", "/v1/users/me", `{"display_name":"Grace <b>Hopper</b>","bio":"<script>alert(1)</script>"}`,
		bearer(token)...), http.StatusOK)
	upload := func(path string) string {
		t.Helper()
		r := b.upload(token, path, true)
		mustStatus(t, r, http.StatusAccepted)
		return b.waitPhoto(token, r.json(t)["id"].(string))["id"].(string)
	}
	older := upload(filepath.Join(images, "formats", "jpeg_gray_hopper.jpg"))
	rejected := upload(blocked)
	mustStatus(t, b.do("PATCH", "/v1/users/me", `{"avatar_id":"`+older+`"}`, bearer(token)...), http.StatusOK)

	r := b.do("GET", "/u/grace", "")
	mustStatus(t, r, http.StatusOK)
	html := string(r.body)
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
		t.Errorf("Content-Type %q", r.Header.Get("Content-Type"))
	}
	for _, want := range []string{`id="photo-` + older + `"`, "Grace &lt;b&gt;Hopper&lt;/b&gt;", "@grace",
		"&lt;script&gt;alert(1)&lt;/script&gt;", `<p class="badge">Avatar</p>`} {
		if !strings.Contains(html, want) {
			t.Errorf("the public page lacks %s:\n%s", want, html)
		}
	}
	for _, unwanted := range []string{rejected, "<script>alert", "<b>Hopper", "Signed in as", "/v1/"} {
		if strings.Contains(html, unwanted) {
			t.Errorf("the public page holds %q:\n%s", unwanted, html)
		}
	}
	if m := inline.FindString(html); m != "" {
		t.Errorf("the public page holds %q: inline code or style", m)
	}
	profile := b.do("GET", "/v1/users/"+userID, "")
	mustStatus(t, profile, http.StatusOK)
	h := r.Header
	if cc := h.Get("Cache-Control"); cc == "" || cc != profile.Header.Get("Cache-Control") {
		t.Errorf("Cache-Control %q, want the public profile's %q", cc, profile.Header.Get("Cache-Control"))
	}
	if h.Get("Content-Security-Policy") == "" || h.Get("X-Frame-Options") != "DENY" || strings.Contains(h.Get("Vary"), "Cookie") {
		t.Errorf("public page headers %v", h)
	}
	tag := h.Get("ETag")
	if !strings.HasPrefix(tag, `"`) {
		t.Fatalf("ETag %q, want a strong one", tag)
	}

	// The session is never read: the owner gets the bytes anyone gets.
	if mine := b.do("GET", "/u/GRACE", "", "Cookie", "onebox_session="+token); string(mine.body) != html || mine.Header.Get("ETag") != tag {
		t.Errorf("the page differs for its owner or by the handle's case:\n%s", mine.body)
	}
	mustStatus(t, b.do("GET", "/u/grace", "", "If-None-Match", tag), http.StatusNotModified)

	// A photo becoming ready changes the page, not the profile's version:
	// the ETag must change all the same.
	newer := upload(filepath.Join(images, "formats", "png_palette_synthetic_68x68.png"))
	r = b.do("GET", "/u/grace", "", "If-None-Match", tag)
	mustStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), `id="photo-`+newer+`"`) || r.Header.Get("ETag") == tag {
		t.Errorf("after a new ready photo: ETag %q (was %q), page:\n%s", r.Header.Get("ETag"), tag, r.body)
	}

	// Older photos: the cursor after the newest shows the one before it.
	cursor := base64.RawURLEncoding.EncodeToString([]byte("u1:" + newer))
	r = b.do("GET", "/u/grace?cursor="+cursor, "")
	mustStatus(t, r, http.StatusOK)
	if page := string(r.body); !strings.Contains(page, `id="photo-`+older+`"`) || strings.Contains(page, newer) {
		t.Errorf("the page after the newest photo:\n%s", page)
	}
	mustProblem(t, b.do("GET", "/u/grace?cursor=nonsense", ""), http.StatusBadRequest, "")

	// Unknown handles are 404 pages; those sign-up refuses are not looked up.
	r = b.do("GET", "/u/nobody", "")
	mustStatus(t, r, http.StatusNotFound)
	if !strings.Contains(string(r.body), "No such user") || r.Header.Get("ETag") != "" {
		t.Errorf("unknown handle: %v\n%s", r.Header, r.body)
	}
	lookups := b.count("users_by_handle")
	for _, bad := range []string{"gr", "1grace", "me", "grace%3Cx%3E", strings.Repeat("g", 31), "gr%C3%A2ce"} {
		r := b.do("GET", "/u/"+bad, "")
		mustStatus(t, r, http.StatusNotFound)
		if strings.Contains(string(r.body), "<x>") {
			t.Errorf("/u/%s: the handle is not escaped:\n%s", bad, r.body)
		}
	}
	if n := b.count("users_by_handle") - lookups; n != 0 {
		t.Errorf("%d lookups for handles sign-up refuses", n)
	}
}

// gated holds the pipeline's last step until the test lets one photo
// through (a send on gate) or all (closing it), so the page's
// "processing" state can be seen for sure.
type gated struct {
	store.Store
	gate chan struct{}
}

func (g gated) FinishPhoto(ctx context.Context, p store.FinishPhotoParams) (store.Photo, error) {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return store.Photo{}, ctx.Err()
	}
	return g.Store.FinishPhoto(ctx, p)
}

// TestPageInBrowser drives the page in headless Chromium against a real
// onebox: sign up, edit the profile, the upload card's layout, refused
// uploads and the status line after each, an upload seen from processing
// to ready without a reload, the avatar and its label, a deletion, a
// reload, the public page from the gallery's link, logging out and in.
// No step may write an error to the console, and a CSP violation is one.
func TestPageInBrowser(t *testing.T) {
	t.Parallel()
	needImages(t)
	exe := needChromium(t)
	gate := make(chan struct{})
	b := newBundle(t, func(s *setup) {
		s.opts.MaxUploadBytes = 1 << 20
		s.wrapStore = func(st store.Store) store.Store { return gated{st, gate} }
	})
	t.Cleanup(func() { close(gate) }) // before the bundle's: the last photo waits here
	release := func() {
		t.Helper()
		select {
		case gate <- struct{}{}:
		case <-time.After(time.Minute): // a hang, not a timing
			t.Fatal("the pipeline never came to finish a photo")
		}
	}
	br := newBrowser(t, exe)
	dir := t.TempDir()
	notImage := filepath.Join(dir, "notes.txt")
	tooBig := filepath.Join(dir, "big.jpg")
	must(t, os.WriteFile(notImage, []byte("these are words, not pixels"), 0o600))
	must(t, os.WriteFile(tooBig, make([]byte, 3<<19), 0o600))
	photo, _ := filepath.Abs(filepath.Join(images, "formats", "jpeg_gray_concert.jpg"))
	other, _ := filepath.Abs(filepath.Join(images, "formats", "png_palette_synthetic_68x68.png"))

	br.step("the visitor's page", chromedp.Navigate(b.url), chromedp.WaitVisible(chromedp.ID("signup-form")))
	br.expectNetworkError(http.StatusUnprocessableEntity)
	br.step("a sign-up error is a sentence by its field",
		chromedp.SendKeys(chromedp.ID("signup-handle"), "ada"),
		chromedp.SendKeys(chromedp.ID("signup-password"), "short\n"), // Enter submits
		hasText("#signup-password-error", "Password must be at least 8 characters."))
	br.step("sign up", // the page reloads with the profile, rendered by the server
		chromedp.SetValue(chromedp.ID("signup-password"), "correct horse"),
		chromedp.SendKeys(chromedp.ID("signup-display_name"), "Ada Lovelace"),
		chromedp.Click(chromedp.CSS("#signup-form button[type=submit]")),
		loaded("profile-form"),
		hasText("#who-name", "Ada Lovelace"))
	br.step("edit the profile",
		chromedp.SendKeys(chromedp.ID("profile-bio"), "Enchantress of numbers."),
		chromedp.Click(chromedp.CSS("#profile-form button[type=submit]")),
		hasText("#status", "Profile saved."))
	// The status line says how the latest attempt went, never the one
	// before: a refused save after a good one, and a good one after it.
	// Every text the line takes is logged, so its clearing when the new
	// attempt starts is seen, not only where it ends.
	br.step("a refused save: the status line says so, not the save before",
		chromedp.Evaluate[chromedp.Void](`window.statusLog = [];
			new MutationObserver(() => statusLog.push(document.querySelector('#status').textContent))
				.observe(document.querySelector('#status'), {childList: true, characterData: true, subtree: true})`),
		chromedp.SetValue(chromedp.ID("profile-display_name"), strings.Repeat("x", 65)),
		chromedp.Click(chromedp.CSS("#profile-form button[type=submit]")),
		hasText("#profile-display_name-error", "Display name must be at most 64 characters."),
		hasText("#status", "Display name must be at most 64 characters."),
		until(`statusLog.length === 2 && statusLog[0] === ''`))
	br.step("then a save that works",
		chromedp.SetValue(chromedp.ID("profile-display_name"), "Ada Lovelace"),
		chromedp.Click(chromedp.CSS("#profile-form button[type=submit]")),
		hasText("#status", "Profile saved."),
		chromedp.WaitNotVisible(chromedp.ID("profile-display_name-error")))
	// The upload card is as tall as the profile card beside it; what it
	// holds must fill it, not leave the lower part empty.
	br.step("the upload card has no empty area", until(`(() => {
		const card = document.getElementById('upload-h').closest('.card');
		const box = card.getBoundingClientRect();
		const inner = box.bottom - parseFloat(getComputedStyle(card).paddingBottom) - card.clientTop;
		let bottom = box.top;
		for (const el of card.querySelectorAll('*')) {
			if (el.checkVisibility()) bottom = Math.max(bottom, el.getBoundingClientRect().bottom);
		}
		const profile = document.getElementById('profile').getBoundingClientRect();
		return box.top === profile.top && inner - bottom <= 24;
	})()`))

	br.expectNetworkError(http.StatusUnsupportedMediaType)
	br.step("a file that is no image is refused",
		chromedp.SetUploadFiles(chromedp.ID("upload-file"), []string{notImage}),
		hasText("#upload-file-error", "The file must be a JPEG, PNG, GIF or WebP image."),
		hasText("#status", "The file must be a JPEG, PNG, GIF or WebP image."))
	br.step("a file over the limit is refused",
		chromedp.SetUploadFiles(chromedp.ID("upload-file"), []string{tooBig}),
		hasText("#upload-file-error", "The file must be at most 1 MB."),
		hasText("#status", "The file must be at most 1 MB."))

	br.step("upload after a failure: processing, and the status line says so",
		chromedp.SetUploadFiles(chromedp.ID("upload-file"), []string{photo}),
		chromedp.WaitVisible(chromedp.CSS(`#gallery .photo[data-status="processing"] .photo-state`)),
		hasText("#upload-file-error", ""),
		hasText("#status", "Uploaded jpeg_gray_concert.jpg. Processing…"))
	release()
	br.step("upload: ready without a reload",
		chromedp.WaitVisible(chromedp.CSS(`#gallery .photo[data-status="ready"] img[srcset*="/media/"]`)),
		until(`(() => {
			const img = document.querySelector('#gallery .photo[data-status="ready"] img');
			return img.complete && img.naturalWidth > 0 && /\/media\/\S+ 128w, .+ 400w$/.test(img.srcset) &&
				img.sizes !== '' && img.currentSrc.includes('/media/');
		})()`))
	id, err := chromedp.Run(br.ctx, chromedp.Evaluate[string](`document.querySelector('#gallery .photo').dataset.id`))
	must(t, err)

	br.step("a second upload",
		chromedp.SetUploadFiles(chromedp.ID("upload-file"), []string{other}),
		hasText("#status", "Uploaded png_palette_synthetic_68x68.png. Processing…"))
	release()
	br.step("the second is ready",
		until(`document.querySelectorAll('#gallery .photo[data-status="ready"]').length === 2`),
		until(`document.querySelectorAll('#gallery .avatar-badge').length === 2 &&
			[...document.querySelectorAll('#gallery .avatar-badge')].every((b) => !b.checkVisibility())`))
	// The label is on the avatar's photo and on no other.
	avatarLabel := `(() => {
		const shown = [...document.querySelectorAll('#gallery .avatar-badge')].filter((b) => b.checkVisibility());
		return shown.length === 1 && shown[0].closest('.photo').dataset.id === '` + id + `' &&
			shown[0].textContent.trim() === 'Current avatar';
	})()`
	br.step("choose the avatar: it is labelled",
		chromedp.Click(chromedp.CSS(`#gallery .photo[data-id="`+id+`"] .avatar-toggle`)),
		chromedp.WaitVisible(chromedp.ID("avatar")),
		hasText("#status", "Your avatar is changed."),
		until(`document.querySelector('#avatar').src.includes('`+id+`') &&
			document.querySelector('#gallery .photo[data-id="`+id+`"] .avatar-toggle').getAttribute('aria-pressed') === 'true'`),
		until(avatarLabel))
	br.step("delete the other",
		chromedp.Click(chromedp.CSS(`#gallery .photo:not([data-id="`+id+`"]) .delete`)), // confirm() is accepted
		until(`document.querySelectorAll('#gallery .photo').length === 1`),
		hasText("#status", "Photo deleted."))
	avatarThere := chromedp.Steps(
		chromedp.WaitVisible(chromedp.ID("avatar")),
		until(`document.querySelector('#avatar').src.includes('`+id+`') && document.querySelector('#avatar').naturalWidth > 0 &&
			document.querySelector('#gallery .photo[data-status="ready"] .avatar-toggle[aria-pressed="true"]') !== null`),
		until(avatarLabel))
	br.step("reload: the avatar is still there, labelled", chromedp.Reload(), avatarThere)
	br.screenshot("screenshot-avatar")

	// The public page, reached from the gallery: the profile and ready
	// photos, not one still processing.
	br.step("a third upload stays processing",
		chromedp.SetUploadFiles(chromedp.ID("upload-file"), []string{other}),
		chromedp.WaitVisible(chromedp.CSS(`#gallery .photo[data-status="processing"] .photo-state`)))
	pending, err := chromedp.Run(br.ctx, chromedp.Evaluate[string](`document.querySelector('#gallery .photo[data-status="processing"]').dataset.id`))
	must(t, err)
	br.step("the gallery links to the public page",
		until(`document.querySelector('#public-link').getAttribute('href') === '/u/ada' &&
			!document.querySelector('#gallery .photo[data-id="`+pending+`"] a.open').checkVisibility()`),
		chromedp.Click(chromedp.CSS(`#gallery .photo[data-id="`+id+`"] a.open`)),
		loaded("public-profile"),
		until(`location.pathname === '/u/ada' && location.hash === '#photo-`+id+`'`),
		hasText("#public-name", "Ada Lovelace"),
		hasText("#public-bio", "Enchantress of numbers."),
		until(`(() => {
			const photos = document.querySelectorAll('#public-gallery .photo');
			const img = document.querySelector('#photo-`+id+` img');
			return photos.length === 1 && img.complete && img.naturalWidth > 0 &&
				document.getElementById('photo-`+pending+`') === null &&
				document.querySelector('#photo-`+id+` .badge')?.textContent === 'Avatar' &&
				document.querySelector('#public-avatar').src.includes('`+id+`');
		})()`))
	br.screenshot("screenshot-public")
	br.step("back to the page", chromedp.Navigate(b.url), loaded("profile-form"))
	br.step("log out", chromedp.Click(chromedp.CSS("#logout-form button")), loaded("login-form"))
	br.step("log in",
		chromedp.SendKeys(chromedp.ID("login-handle"), "ada"),
		chromedp.SendKeys(chromedp.ID("login-password"), "correct horse\n"),
		loaded("profile-form"), avatarThere)
	br.screenshot("screenshot")
	br.step("phone width: nothing wider than the screen",
		chromedp.EmulateViewport(390, 844),
		until(`document.documentElement.scrollWidth <= window.innerWidth &&
			document.querySelector('#gallery .photo[data-status="ready"] img').currentSrc !== ''`))
	br.screenshot("screenshot-phone")
	br.checkCSPIsWatched()
}

// TestPageGalleryMore pages the gallery with the "More photos" button
// (keyset: next_cursor).
func TestPageGalleryMore(t *testing.T) {
	t.Parallel()
	needImages(t)
	exe := needChromium(t)
	b := newBundle(t, func(s *setup) { s.noWorkers = true }) // the photos stay processing
	_, token := b.signup("babbage")
	tiny := mustRead(t, filepath.Join(images, "formats", "png_1x1_s01n3p01.png"))
	for range 13 {
		mustStatus(t, b.uploadBytes(token, tiny, true), http.StatusAccepted)
	}
	br := newBrowser(t, exe)
	br.step("log in", chromedp.Navigate(b.url),
		chromedp.SendKeys(chromedp.ID("login-handle"), "babbage"),
		chromedp.SendKeys(chromedp.ID("login-password"), "correct horse\n"),
		loaded("profile-form"),
		until(`document.querySelectorAll('#gallery .photo').length === 12`))
	br.step("more photos",
		chromedp.Click(chromedp.ID("more")),
		chromedp.WaitNotVisible(chromedp.ID("more")),
		until(`document.querySelectorAll('#gallery .photo[data-status="processing"]').length === 13`),
		hasText("#status", "1 more photo shown."))
}

// browser is one headless Chromium tab, with the console watched.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	messages []chromedp.ConsoleMessage
	allowed  map[int]bool // HTTP statuses the page may log as failed loads
	seen     int          // messages already checked
	shots    string       // where screenshots go
}

// needChromium returns the browser's path. Without chromium the test
// skips, except in CI, which installs it.
func needChromium(t *testing.T) string {
	t.Helper()
	exe, err := exec.LookPath("chromium")
	if err != nil {
		if _, ci := os.LookupEnv("CI"); ci {
			t.Fatal("chromium is not installed (.ci/run installs it)")
		}
		t.Skip("chromium is not installed; the browser test runs in CI")
	}
	return exe
}

// newBrowser starts headless Chromium with a fresh profile. Make it after
// the server: its cleanup must end the page's event stream first.
func newBrowser(t *testing.T, exe string) *browser {
	t.Helper()
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1200, 900))
	ctx, cancel := chromedp.NewContext(alloc)
	br := &browser{t: t, ctx: ctx, allowed: map[int]bool{}}
	if err := chromedp.Do(ctx); err != nil { // starts the browser, with no deadline
		cancel()
		cancelAlloc()
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		wg.Wait()
	})
	console := chromedp.Console(ctx)
	wg.Go(func() {
		for m, err := range console {
			if err != nil {
				return
			}
			br.mu.Lock()
			br.messages = append(br.messages, m)
			br.mu.Unlock()
		}
	})
	// The page asks before deleting a photo: say yes.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	wg.Go(func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	})
	return br
}

// step runs actions with a deadline, then fails on any console error.
func (br *browser) step(name string, actions ...chromedp.Action[chromedp.Void]) {
	br.t.Helper()
	ctx, cancel := context.WithTimeout(br.ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	defer func() { br.t.Logf("%s: %v", name, time.Since(start).Round(time.Millisecond)) }()
	if err := chromedp.Do(ctx, actions...); err != nil {
		ctx, cancel := context.WithTimeout(br.ctx, 5*time.Second)
		defer cancel()
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		br.screenshot("failed")
		br.t.Fatalf("%s: %v\npage text:\n%s\nconsole: %v", name, err, text, br.console())
	}
	br.checkConsole(name)
}

// until waits until the expression is true.
func until(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(25*time.Second)))
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", expr, err)
		}
		return nil
	})
}

// loaded waits for the element with this id on a page whose script has
// run: after a reload the script starts, and a load event follows it.
func loaded(id string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(chromedp.WaitVisible(chromedp.ID(id)), until(`document.readyState === 'complete'`))
}

// hasText waits until the element's text is want.
func hasText(sel, want string) chromedp.Action[chromedp.Void] {
	return until(fmt.Sprintf(`document.querySelector(%q)?.textContent.trim() === %q`, sel, want))
}

// expectNetworkError allows the page's failed loads with this status: an
// API refusal the page shows as a sentence is logged by the browser too.
func (br *browser) expectNetworkError(status int) {
	br.mu.Lock()
	defer br.mu.Unlock()
	br.allowed[status] = true
}

func (br *browser) console() []chromedp.ConsoleMessage {
	br.mu.Lock()
	defer br.mu.Unlock()
	return append([]chromedp.ConsoleMessage(nil), br.messages...)
}

var failedLoad = regexp.MustCompile(`status of (\d{3})`)

// errorsSince returns the console errors after the first n messages.
func (br *browser) errorsSince(n int) []chromedp.ConsoleMessage {
	br.mu.Lock()
	defer br.mu.Unlock()
	var errs []chromedp.ConsoleMessage
	for _, m := range br.messages[n:] {
		if m.Type != chromedp.ConsoleError && !m.IsException() {
			continue
		}
		if s := failedLoad.FindStringSubmatch(m.Text); m.Source == "network" && s != nil && br.allowed[mustAtoi(s[1])] {
			continue
		}
		errs = append(errs, m)
	}
	return errs
}

func (br *browser) checkConsole(step string) {
	br.t.Helper()
	br.mu.Lock()
	n := br.seen
	br.seen = len(br.messages)
	br.mu.Unlock()
	for _, m := range br.errorsSince(n) {
		br.t.Errorf("%s: console %s (source %q, %s:%d)", step, m, m.Source, m.URL, m.Line)
	}
}

// checkCSPIsWatched breaks the CSP on purpose (an inline style) and
// checks the violation reaches the console: so a clean console above
// means the page kept to its policy.
func (br *browser) checkCSPIsWatched() {
	br.t.Helper()
	br.mu.Lock()
	n := len(br.messages)
	br.mu.Unlock()
	ctx, cancel := context.WithTimeout(br.ctx, 10*time.Second)
	defer cancel()
	must(br.t, chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.body.insertAdjacentHTML('beforeend', '<p style="color: red">x</p>')`)))
	for ctx.Err() == nil {
		for _, m := range br.errorsSince(n) {
			if strings.Contains(m.Text, "Content Security Policy") {
				return
			}
		}
		time.Sleep(20 * time.Millisecond) // polling the collected messages, not a wait for the page
	}
	br.t.Error("an inline style broke no CSP rule the console reported: the console check would miss CSP violations")
}

// screenshot writes the page as PNG to $ONEBOX_SCREENSHOT_DIR, else to a
// temporary directory.
func (br *browser) screenshot(name string) {
	br.t.Helper()
	if br.shots == "" {
		br.shots = os.Getenv("ONEBOX_SCREENSHOT_DIR")
		if br.shots == "" {
			br.shots = br.t.TempDir()
		}
	}
	ctx, cancel := context.WithTimeout(br.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		br.t.Errorf("screenshot: %v", err)
		return
	}
	path := filepath.Join(br.shots, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		br.t.Errorf("screenshot: %v", err)
		return
	}
	br.t.Logf("screenshot: %s", path)
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s) // the regexp matched digits
	return n
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
