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

//go:embed web/page.html web/static
var webFiles embed.FS

// pageCSP is the policy of the page: only its own scripts, styles,
// images and API; no inline code or style, no framing, no plugins.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

const (
	galleryPage  = 12 // photos per gallery page (fills rows of 2, 3 or 4)
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
	page   *template.Template
	assets map[string]asset  // hashed name → file
	urls   map[string]string // file name → /static/ URL with the hash
}

// webRoutes adds the page and its static files.
func (a *App) webRoutes(e *echo.Echo) {
	s := newSite(a)
	e.Match(getHead, "/", s.servePage, a.timeout, a.guard(a.opts.Policies.API, false))
	e.Match(getHead, staticPrefix+":name", s.serveAsset)
}

// newSite hashes the embedded assets and parses the template. The files
// are part of the binary, so a failure is a programmer error: it panics.
func newSite(a *App) *site {
	s := &site{app: a, assets: map[string]asset{}, urls: map[string]string{}}
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
	}).ParseFS(webFiles, "web/page.html"))
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

// galleryItem is one photo of the gallery; Avatar marks the current one.
type galleryItem struct {
	photoJSON
	Avatar bool
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
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Frame-Options", "DENY") // for browsers without frame-ancestors
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set(echo.HeaderVary, "Cookie")
	// Revalidate every time; a page with someone's profile is theirs alone.
	if d.Me != nil {
		h.Set(echo.HeaderCacheControl, "private, no-cache")
	} else {
		h.Set(echo.HeaderCacheControl, "no-cache")
	}
	return c.HTMLBlob(http.StatusOK, buf.Bytes())
}

func (s *site) pageData(c echo.Context) (pageData, error) {
	a := s.app
	d := pageData{PageSize: galleryPage, MaxUploadBytes: a.opts.MaxUploadBytes, MaxUploadText: byteSize(a.opts.MaxUploadBytes)}
	who, _ := c.Get(identityKey).(identity)
	if who.userID == "" {
		return d, nil
	}
	ctx := c.Request().Context()
	u, err := a.store.User(ctx, store.UserParams{ID: who.userID, Freshness: store.MustBeFresh})
	if errors.Is(err, store.ErrNotFound) {
		return d, nil // deleted since the session was cached: a visitor
	}
	if err != nil {
		return d, err
	}
	me, err := a.fullProfile(ctx, u, store.MustBeFresh)
	if err != nil {
		return d, err
	}
	d.Me = &me
	photos, err := a.store.ListPhotos(ctx, store.ListPhotosParams{OwnerID: u.ID, Limit: galleryPage + 1, Freshness: store.MustBeFresh})
	if err != nil {
		return d, err
	}
	if len(photos) > galleryPage {
		photos = photos[:galleryPage]
		d.NextCursor = makeCursor(photos[galleryPage-1].ID)
	}
	for _, ph := range photos {
		d.Photos = append(d.Photos, galleryItem{photoJSON: a.photo(ph), Avatar: ph.ID == u.AvatarID})
	}
	return d, nil
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
