package app

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"onebox/store"
)

// The page: GET / is one server-rendered HTML document with a little
// plain JavaScript that talks to the API with the session cookie. Its
// assets are embedded and served under content-hashed names, so they can
// be cached for a year and a deploy still takes effect at once.

//go:embed web/page.html web/user.html web/static
var webFiles embed.FS

// pageCSP is the policy of the page for media served from mediaOrigin
// ("" is this service's own /media/): only its own scripts, styles, API
// and images, plus the media's; no inline code or style, no framing, no
// plugins.
func pageCSP(mediaOrigin string) string {
	img := "'self'"
	if mediaOrigin != "" {
		img += " " + mediaOrigin
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src " + img + "; " +
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
}

const (
	galleryPage  = 12 // photos per gallery page (fills rows of 2, 3 or 4)
	publicPage   = 24 // photos per page of a public page
	immutable    = "public, max-age=31536000, immutable"
	staticPrefix = "/static/"
)

// asset is one embedded static file under its hashed name.
type asset struct {
	data        []byte
	contentType string
	etag        string
}

// site serves the page and its assets; it is built once, at start-up.
type site struct {
	app    *App
	csp    string // pageCSP of the configured media origin
	page   *template.Template
	assets map[string]asset  // hashed name → file
	urls   map[string]string // file name → /static/ URL with the hash
}

// webRoutes adds the page and its static files.
func (a *App) webRoutes(e *echo.Echo) {
	s := newSite(a)
	e.Match(getHead, "/", chain(s.servePage, a.timeout, a.guard(a.opts.Policies.API, false)))
	e.Match(getHead, staticPrefix+":name", s.serveAsset)
	e.Match(getHead, "/u/:handle", chain(s.serveUser, a.timeout, a.guard(a.opts.Policies.API, false)))
}

// newSite hashes the embedded assets and parses the template. The files
// are part of the binary, so a failure is a programmer error: it panics.
func newSite(a *App) *site {
	s := &site{app: a, csp: pageCSP(a.opts.MediaOrigin), assets: map[string]asset{}, urls: map[string]string{}}
	err := fs.WalkDir(webFiles, "web/static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := webFiles.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		hash := hex.EncodeToString(sum[:5])
		name := path.Base(p)
		ext := path.Ext(name)
		hashed := strings.TrimSuffix(name, ext) + "." + hash + ext
		ct := mime.TypeByExtension(ext)
		if ct == "" {
			return errors.New("no content type for " + name)
		}
		s.assets[hashed] = asset{data: data, contentType: ct, etag: `"` + hash + `"`}
		s.urls[name] = staticPrefix + hashed
		return nil
	})
	if err != nil {
		panic("app: web assets: " + err.Error())
	}
	s.page = template.Must(template.New("page.html").Funcs(template.FuncMap{
		"asset":    s.assetURL,
		"srcset":   srcset,
		"fallback": fallbackVariant,
		"thumb":    thumbURL,
		"when":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
	}).ParseFS(webFiles, "web/page.html", "web/user.html"))
	return s
}

func (s *site) assetURL(name string) (string, error) {
	u, ok := s.urls[name]
	if !ok {
		return "", errors.New("no static file " + name)
	}
	return u, nil
}

// serveAsset: GET /static/{name.hash.ext}. Only the current hashed names
// exist, so a cached copy can never be stale.
func (s *site) serveAsset(c echo.Context) error {
	f, ok := s.assets[c.Param("name")]
	if !ok {
		return problem(http.StatusNotFound, "not-found", "no such file")
	}
	h := c.Response().Header()
	h.Set(echo.HeaderCacheControl, immutable)
	h.Set(echo.HeaderContentType, f.contentType)
	h.Set("ETag", f.etag)
	serveContent(c, time.Time{}, bytes.NewReader(f.data), int64(len(f.data)))
	return nil
}

// pageData is what the template renders. Me is nil for a visitor.
type pageData struct {
	Me             *profileJSON
	Photos         []galleryItem
	NextCursor     string
	Blank          galleryItem // the gallery item the script clones
	PageSize       int
	MaxUploadBytes int64
	MaxUploadText  string
}

// galleryItem is one photo of the gallery; Avatar marks the current one
// and Owner is its owner's handle, whose public page it links to.
type galleryItem struct {
	photoJSON
	Avatar bool
	Owner  string
}

// servePage: GET /. What is known now is rendered now: a valid session
// cookie gets the profile form and the first page of the gallery instead
// of the sign-up and login forms.
func (s *site) servePage(c echo.Context) error {
	d, err := s.pageData(c)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := s.page.Execute(&buf, d); err != nil {
		return err
	}
	h := c.Response().Header()
	s.pageHeaders(h)
	h.Set(echo.HeaderVary, "Cookie")
	// Revalidate every time; a page with someone's profile is theirs alone.
	if d.Me != nil {
		h.Set(echo.HeaderCacheControl, "private, no-cache")
	} else {
		h.Set(echo.HeaderCacheControl, "no-cache")
	}
	return c.HTMLBlob(http.StatusOK, buf.Bytes())
}

// pageHeaders are the security headers of every HTML page.
func (s *site) pageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", s.csp)
	h.Set("X-Frame-Options", "DENY") // for browsers without frame-ancestors
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

func (s *site) pageData(c echo.Context) (pageData, error) {
	a := s.app
	d := pageData{PageSize: galleryPage, MaxUploadBytes: a.opts.MaxUploadBytes, MaxUploadText: byteSize(a.opts.MaxUploadBytes)}
	who, _ := c.Get(identityKey).(identity)
	if who.userID == "" {
		return d, nil
	}
	ctx := c.Request().Context()
	f, at := who.own()
	u, err := a.store.User(ctx, store.UserParams{ID: who.userID, Freshness: f, AtLeast: at})
	if errors.Is(err, store.ErrNotFound) {
		return d, nil // deleted since the session was cached: a visitor
	}
	if err != nil {
		return d, err
	}
	me, err := a.fullProfile(ctx, u, f, at)
	if err != nil {
		return d, err
	}
	d.Me = &me
	d.Blank.Owner = u.Handle
	photos, err := a.store.ListPhotos(ctx, store.ListPhotosParams{OwnerID: u.ID, Limit: galleryPage + 1, Freshness: f, AtLeast: at})
	if err != nil {
		return d, err
	}
	if len(photos) > galleryPage {
		photos = photos[:galleryPage]
		d.NextCursor = makeCursor(photos[galleryPage-1].ID)
	}
	for _, ph := range photos {
		j, err := a.photo(ctx, ph)
		if err != nil {
			return d, err
		}
		d.Photos = append(d.Photos, galleryItem{photoJSON: j, Avatar: ph.ID == u.AvatarID, Owner: u.Handle})
	}
	return d, nil
}

// userData is what the public page renders: only what the public API
// shows of a user (the profile and ready photos), never the session's.
// User is nil for an unknown handle.
type userData struct {
	Handle string // as asked for
	User   *profileJSON
	Photos []galleryItem
	Older  string // the next page's URL, "" on the last
}

// serveUser: GET /u/{handle}, a user's public page: their profile and
// ready photos, newest first, with a link to older ones (?cursor=).
//
// It is rendered on the server with html/template rather than by the
// script from the public API: it then works without JavaScript, is one
// request, escapes in one place, and is the same for every visitor, so
// a shared cache may keep it. The session is never read. The ETag is the
// hash of the bytes: the profile's version alone would not change when
// a photo becomes ready. Cache-Control is the public profile's.
func (s *site) serveUser(c echo.Context) error {
	a := s.app
	d := userData{Handle: c.Param("handle")}
	status := http.StatusOK
	before, err := parseCursor(c.QueryParam("cursor"))
	if err != nil {
		return err
	}
	// Sign-up's rules first: a handle no one can have is not looked up.
	if checkHandle(d.Handle) != "" {
		status = http.StatusNotFound
	} else if err := s.userData(c, &d, before); errors.Is(err, store.ErrNotFound) {
		status = http.StatusNotFound
	} else if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := s.page.ExecuteTemplate(&buf, "user.html", d); err != nil {
		return err
	}
	h := c.Response().Header()
	s.pageHeaders(h)
	h[echo.HeaderCacheControl] = a.publicCacheControl
	if status != http.StatusOK {
		return c.HTMLBlob(status, buf.Bytes())
	}
	sum := sha256.Sum256(buf.Bytes())
	tag := `"` + hex.EncodeToString(sum[:12]) + `"`
	h.Set("ETag", tag)
	if match := c.Request().Header.Get("If-None-Match"); match != "" && etagMatches(match, tag, true) {
		return c.NoContent(http.StatusNotModified)
	}
	return c.HTMLBlob(status, buf.Bytes())
}

// userData reads the profile and one page of ready photos, as the public
// profile reads them (possibly from a replica). store.ErrNotFound for an
// unknown handle.
func (s *site) userData(c echo.Context, d *userData, before string) error {
	a := s.app
	ctx := c.Request().Context()
	u, err := a.store.UserByHandle(ctx, store.UserByHandleParams{Handle: d.Handle, Freshness: a.loadFreshness})
	if err != nil {
		return err
	}
	p, err := a.fullProfile(ctx, u, a.loadFreshness, "")
	if err != nil {
		return err
	}
	d.User = &p
	photos, err := a.store.ListPhotos(ctx, store.ListPhotosParams{
		OwnerID: u.ID, BeforeID: before, Limit: publicPage + 1, ReadyOnly: true, Freshness: a.loadFreshness,
	})
	if err != nil {
		return err
	}
	if len(photos) > publicPage {
		photos = photos[:publicPage]
		d.Older = "/u/" + url.PathEscape(u.Handle) + "?cursor=" + url.QueryEscape(makeCursor(photos[publicPage-1].ID))
	}
	for _, ph := range photos {
		j, err := a.photo(ctx, ph)
		if err != nil {
			return err
		}
		d.Photos = append(d.Photos, galleryItem{photoJSON: j, Avatar: ph.ID == u.AvatarID, Owner: u.Handle})
	}
	return nil
}

// byteSize writes a limit the way a person reads it: "20 MB", "512 KB".
func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return itoa(n>>20) + " MB"
	case n >= 1<<10:
		return itoa(n>>10) + " KB"
	}
	return itoa(n) + " bytes"
}

// widthVariants are the "w…" variants, narrowest first; the square
// thumbnail is not one of them.
func widthVariants(vs []variantJSON) []variantJSON {
	var out []variantJSON
	for _, v := range vs {
		if strings.HasPrefix(v.Name, "w") {
			out = append(out, v)
		}
	}
	slices.SortStableFunc(out, func(a, b variantJSON) int { return a.Width - b.Width })
	return out
}

// srcset lists the width variants with their real widths; a narrow image
// has fewer, so the same width never appears twice.
func srcset(vs []variantJSON) string {
	var parts []string
	seen := map[int]bool{}
	for _, v := range widthVariants(vs) {
		if !seen[v.Width] {
			seen[v.Width] = true
			parts = append(parts, v.URL+" "+itoa(int64(v.Width))+"w")
		}
	}
	return strings.Join(parts, ", ")
}

// fallbackVariant is the src for browsers without srcset, and gives the
// width and height attributes that reserve the space: the first variant
// at least 512 wide, else the widest.
func fallbackVariant(vs []variantJSON) variantJSON {
	ws := widthVariants(vs)
	for _, v := range ws {
		if v.Width >= 512 {
			return v
		}
	}
	if len(ws) == 0 {
		return variantJSON{}
	}
	return ws[len(ws)-1]
}

// thumbURL is the avatar image: the square thumbnail.
func thumbURL(vs []variantJSON) string {
	for _, v := range vs {
		if v.Name == "thumb" {
			return v.URL
		}
	}
	return fallbackVariant(vs).URL
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
