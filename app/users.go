package app

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"onebox/cache"
	"onebox/photos"
	"onebox/store"
)

// profileJSON is a profile as the API shows it.
type profileJSON struct {
	ID          string  `json:"id"`
	Handle      string  `json:"handle"`
	DisplayName string  `json:"display_name"`
	Bio         string  `json:"bio"`
	AvatarID    *string `json:"avatar_id"`
	// Avatar lists the avatar's variants (for srcset) on single-profile
	// answers; lists carry only avatar_id.
	Avatar    []variantJSON `json:"avatar,omitempty"`
	CreatedAt time.Time     `json:"created_at"`
	UpdatedAt time.Time     `json:"updated_at"`
	Version   int64         `json:"version"`
}

func profile(u store.User) profileJSON {
	p := profileJSON{ID: u.ID, Handle: u.Handle, DisplayName: u.DisplayName, Bio: u.Bio,
		CreatedAt: u.CreatedAt.UTC(), UpdatedAt: u.UpdatedAt.UTC(), Version: u.Version}
	if u.AvatarID != "" {
		p.AvatarID = &u.AvatarID
	}
	return p
}

// absent marks a store miss as one the cache may remember (negative
// caching).
func absent(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %w", cache.ErrAbsent, err)
	}
	return err
}

// fullProfile is profile plus the avatar's variant URLs, read with f
// (and at least at token at).
func (a *App) fullProfile(ctx context.Context, u store.User, f store.Freshness, at store.Token) (profileJSON, error) {
	p, keys, err := a.keyedProfile(ctx, u, f, at)
	if err != nil {
		return p, err
	}
	for i, key := range keys {
		if p.Avatar[i].URL, err = a.media.URL(ctx, key); err != nil {
			return p, fmt.Errorf("url of %s: %w", key, err)
		}
	}
	return p, nil
}

// keyedProfile is profile plus the avatar's variants without their URLs,
// read with f (and at least at token at): keys[i] is the media key of
// p.Avatar[i].
func (a *App) keyedProfile(ctx context.Context, u store.User, f store.Freshness, at store.Token) (p profileJSON, keys []string, err error) {
	p = profile(u)
	if u.AvatarID == "" {
		return p, nil, nil
	}
	ph, err := a.store.Photo(ctx, store.PhotoParams{ID: u.AvatarID, Freshness: f, AtLeast: at})
	if errors.Is(err, store.ErrNotFound) {
		return p, nil, nil // deleted a moment ago; the profile's next version drops it
	}
	if err != nil {
		return p, nil, err
	}
	p.Avatar = make([]variantJSON, 0, len(ph.Variants))
	keys = make([]string, 0, len(ph.Variants))
	for _, v := range ph.Variants {
		p.Avatar = append(p.Avatar, variantJSON{Name: v.Name, Width: v.Width, Height: v.Height})
		keys = append(keys, v.Key)
	}
	return p, keys, nil
}

func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// createUser is sign-up: POST /v1/users {handle, password, display_name?}.
func (a *App) createUser(c echo.Context) error {
	o, err := readObject(c, a.opts.MaxBodyBytes, echo.MIMEApplicationJSON)
	if err != nil {
		return err
	}
	handle, password := o.required("handle"), o.required("password")
	name, _, _ := o.str("display_name", true)
	if msg := checkHandle(handle); msg != "" && o.members["handle"] != nil {
		o.fail("handle", msg)
	}
	if msg := checkPassword(password); msg != "" && o.members["password"] != nil {
		o.fail("password", msg)
	}
	if msg := checkDisplayName(name); msg != "" {
		o.fail("display_name", msg)
	}
	if err := o.done(); err != nil {
		return err
	}
	ctx := c.Request().Context()
	hash, err := a.hasher.Hash(ctx, password)
	if err != nil {
		return err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	if name == "" {
		name = handle
	}
	u, err := a.store.CreateUser(ctx, store.CreateUserParams{ID: id.String(), Handle: handle, DisplayName: name, PasswordHash: hash, Now: a.now().UTC()})
	if err != nil {
		return err
	}
	// A "not found" for this id may sit in the negative cache if someone
	// asked before it existed; ids are fresh UUIDs, but be exact anyway.
	_ = a.profiles.Invalidate(ctx, profileKey(u.ID))
	c.Response().Header().Set(echo.HeaderLocation, "/v1/users/"+u.ID)
	c.Response().Header().Set("ETag", etag(u.Version))
	return jsonBlob(c, http.StatusCreated, mustJSON(profile(u)))
}

// getUser is the public profile read, served cache-aside:
// GET /v1/users/{id}. The cached form holds the ETag and the body with
// media keys in place of URLs (profilecache.go).
func (a *App) getUser(c echo.Context) error {
	id := c.Param("id")
	if !validID(id) {
		return problem(http.StatusNotFound, "not-found", "no such user")
	}
	ctx := c.Request().Context()
	p, err := a.cachedProfile(ctx, id)
	if errors.Is(err, cache.ErrAbsent) {
		return problem(http.StatusNotFound, "not-found", "no such user")
	}
	if err != nil {
		return err
	}
	tag := string(p.tag)
	h := c.Response().Header()
	h[headerETag] = []string{tag}
	h[echo.HeaderCacheControl] = a.publicCacheControl
	if match := c.Request().Header.Get("If-None-Match"); match != "" && etagMatches(match, tag, true) {
		return c.NoContent(http.StatusNotModified)
	}
	body, err := p.writeBody(ctx, a.media.URL)
	if err != nil {
		return err
	}
	return jsonBlob(c, http.StatusOK, body)
}

// cachedProfile reads user id's profile through the cache. An entry of
// another format is a miss: it is dropped and loaded again, once. An
// older onebox's cannot be one (profileKey names the format); this is
// for an entry that is cut or corrupt.
func (a *App) cachedProfile(ctx context.Context, id string) (cachedProfile, error) {
	key := profileKey(id)
	load := func(ctx context.Context) ([]byte, error) {
		u, err := a.store.User(ctx, store.UserParams{ID: id, Freshness: a.loadFreshness})
		if err != nil {
			return nil, absent(err)
		}
		p, keys, err := a.keyedProfile(ctx, u, a.loadFreshness, "")
		if err != nil {
			return nil, err
		}
		return encodeCachedProfile(etag(u.Version), p, keys)
	}
	for range 2 {
		b, err := a.profiles.Get(ctx, key, load)
		if err != nil {
			return cachedProfile{}, err
		}
		p, err := decodeCachedProfile(b)
		if !errors.Is(err, errProfileFormat) {
			return p, err
		}
		if err := invalidate(ctx, a.profiles, key); err != nil {
			return cachedProfile{}, err
		}
	}
	return cachedProfile{}, fmt.Errorf("%w: %q, twice", errProfileFormat, key)
}

// getMe is the caller's own profile, read at least at the session's
// token (read-your-own-writes).
func (a *App) getMe(c echo.Context) error {
	who, err := requireUser(c)
	if err != nil {
		return err
	}
	f, at := who.own()
	u, err := a.store.User(c.Request().Context(), store.UserParams{ID: who.userID, Freshness: f, AtLeast: at})
	if err != nil {
		return err
	}
	return a.writeMe(c, http.StatusOK, u, who)
}

func (a *App) writeMe(c echo.Context, status int, u store.User, who identity) error {
	f, at := who.own()
	p, err := a.fullProfile(c.Request().Context(), u, f, at)
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("ETag", etag(u.Version))
	h.Set(echo.HeaderCacheControl, "private, no-store")
	return jsonBlob(c, status, mustJSON(p))
}

// patchMe applies a JSON merge patch (RFC 7396) to the caller's profile:
// a member set to null clears the field. If-Match is optional; a stale
// one gets 412.
func (a *App) patchMe(c echo.Context) error {
	who, err := requireUser(c)
	if err != nil {
		return err
	}
	o, err := readObject(c, a.opts.MaxBodyBytes, echo.MIMEApplicationJSON, "application/merge-patch+json")
	if err != nil {
		return err
	}
	p := store.UpdateUserParams{ID: who.userID, Now: a.now().UTC()}
	if v, present, _ := o.str("display_name", true); present {
		if msg := checkDisplayName(v); msg != "" {
			o.fail("display_name", msg)
		}
		p.DisplayName = &v
	}
	if v, present, _ := o.str("bio", true); present {
		if msg := checkBio(v); msg != "" {
			o.fail("bio", msg)
		}
		p.Bio = &v
	}
	if v, present, _ := o.str("avatar_id", true); present {
		if v != "" && !validID(v) {
			o.fail("avatar_id", "must be the id of one of your ready photos")
		}
		p.AvatarID = &v
	}
	if err := o.done(); err != nil {
		return err
	}
	ctx := c.Request().Context()
	ifMatch := c.Request().Header.Get("If-Match")
	if ifMatch != "" && strings.TrimSpace(ifMatch) != "*" {
		v, ok := parseVersionTag(ifMatch)
		if !ok {
			return problem(http.StatusPreconditionFailed, "precondition-failed", "If-Match must be a strong ETag such as \"3\"")
		}
		p.IfVersion = v
	}
	var u store.User
	if p.DisplayName == nil && p.Bio == nil && p.AvatarID == nil {
		// An empty patch changes nothing, so it must not bump the version.
		if u, err = a.store.User(ctx, store.UserParams{ID: who.userID, Freshness: store.MustBeFresh}); err == nil && p.IfVersion != 0 && p.IfVersion != u.Version {
			err = store.ErrVersionMismatch
		}
	} else {
		if u, err = a.store.UpdateUser(ctx, p); err == nil {
			who = a.markWritten(ctx, who)
		}
	}
	if errors.Is(err, store.ErrInvalid) {
		return invalid(FieldError{Pointer: "/avatar_id", Detail: "must be the id of one of your ready photos"})
	}
	if err != nil {
		return err
	}
	if err := invalidate(ctx, a.profiles, profileKey(u.ID)); err != nil {
		return err
	}
	return a.writeMe(c, http.StatusOK, u, who)
}

// changePassword: PUT /v1/users/me/password {current_password,
// new_password}. Every other session of the user is revoked.
func (a *App) changePassword(c echo.Context) error {
	who, err := requireUser(c)
	if err != nil {
		return err
	}
	o, err := readObject(c, a.opts.MaxBodyBytes, echo.MIMEApplicationJSON)
	if err != nil {
		return err
	}
	current, next := o.required("current_password"), o.required("new_password")
	if msg := checkPassword(next); msg != "" && o.members["new_password"] != nil {
		o.fail("new_password", msg)
	}
	if err := o.done(); err != nil {
		return err
	}
	ctx := c.Request().Context()
	u, err := a.store.User(ctx, store.UserParams{ID: who.userID, Freshness: store.MustBeFresh})
	if err != nil {
		return err
	}
	cred, err := a.store.Credentials(ctx, u.Handle)
	if err != nil {
		return err
	}
	if ok, err := a.hasher.Verify(ctx, current, cred.PasswordHash); err != nil {
		return err
	} else if !ok {
		return invalid(FieldError{Pointer: "/current_password", Detail: "is wrong"})
	}
	hash, err := a.hasher.Hash(ctx, next)
	if err != nil {
		return err
	}
	others, err := a.otherSessions(ctx, who)
	if err != nil {
		return err
	}
	if err := a.revoke(ctx, func(ctx context.Context) error {
		return a.store.SetPassword(ctx, store.SetPasswordParams{UserID: who.userID, PasswordHash: hash, KeepTokenHash: who.tokenHash, Now: a.now().UTC()})
	}, others...); err != nil {
		return err
	}
	a.markWritten(ctx, who)
	return c.NoContent(http.StatusNoContent)
}

func (a *App) otherSessions(ctx context.Context, who identity) ([]string, error) {
	all, err := a.store.UserSessions(ctx, who.userID)
	if err != nil {
		return nil, err
	}
	others := all[:0]
	for _, h := range all {
		if h != who.tokenHash {
			others = append(others, h)
		}
	}
	return others, nil
}

// deleteMe deletes the caller's account and every session of it.
func (a *App) deleteMe(c echo.Context) error {
	who, err := requireUser(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	all, err := a.store.UserSessions(ctx, who.userID)
	if err != nil {
		return err
	}
	if err := a.revoke(ctx, func(ctx context.Context) error {
		ctx, end := a.tracing.Child(ctx, "enqueue "+photos.KindCleanup)
		err := a.store.DeleteUser(ctx, store.DeleteUserParams{ID: who.userID, Cleanup: photos.CleanupJob(ctx)})
		end(err)
		return err
	}, all...); err != nil {
		return err
	}
	a.jobs.Notify()
	if err := invalidate(ctx, a.profiles, profileKey(who.userID)); err != nil {
		return err
	}
	a.clearCookie(c)
	return c.NoContent(http.StatusNoContent)
}

const (
	defaultPage = 20
	maxPage     = 100
)

// listUsers: GET /v1/users?limit=&cursor=, keyset-paged by id.
func (a *App) listUsers(c echo.Context) error {
	limit, after, err := pageParams(c)
	if err != nil {
		return err
	}
	users, err := a.store.ListUsers(c.Request().Context(), store.ListUsersParams{AfterID: after, Limit: limit + 1, Freshness: store.MayBeStale})
	if err != nil {
		return err
	}
	page := makePage(users, limit, func(u store.User) string { return u.ID }, profile)
	return jsonBlob(c, http.StatusOK, mustJSON(page))
}

// pageParams reads ?limit= and ?cursor=.
func pageParams(c echo.Context) (limit int, afterID string, err error) {
	limit = defaultPage
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPage {
			return 0, "", badParam("limit", "must be an integer from 1 to 100")
		}
		limit = n
	}
	afterID, err = parseCursor(c.QueryParam("cursor"))
	return limit, afterID, err
}

// page is one page of a keyset-paged list.
type page[J any] struct {
	Items      []J     `json:"items"`
	NextCursor *string `json:"next_cursor"`
}

// makePage renders rows fetched with limit+1: the extra row only says
// that another page follows, and the cursor points after the last shown.
func makePage[T, J any](rows []T, limit int, id func(T) string, render func(T) J) page[J] {
	p := page[J]{Items: make([]J, 0, min(len(rows), limit))}
	for i, r := range rows {
		if i == limit {
			next := makeCursor(id(rows[limit-1]))
			p.NextCursor = &next
			break
		}
		p.Items = append(p.Items, render(r))
	}
	return p
}

const cursorPrefix = "u1:" // versioned, so the format can change

func makeCursor(lastID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + lastID))
}

// parseCursor returns the id after which the page starts; "" → start.
func parseCursor(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	id, ok := strings.CutPrefix(string(b), cursorPrefix)
	if err != nil || !ok || !validID(id) {
		return "", badParam("cursor", "is not a cursor this API returned")
	}
	return id, nil
}

func badParam(name, detail string) *Problem {
	p := problem(http.StatusBadRequest, "bad-parameter", "a query parameter is invalid")
	p.Errors = []FieldError{{Parameter: name, Detail: detail}}
	return p
}

// validID accepts only the canonical lower-case UUID form onebox mints.
func validID(id string) bool {
	// What uuid.Parse accepts in 36 characters, in lower case only, as
	// we write them (one spelling per id), in one pass: it runs on
	// every profile read.
	if len(id) != 36 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// parseVersionTag reads a strong ETag `"N"`.
func parseVersionTag(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if len(s) < 3 || s[0] != '"' || s[len(s)-1] != '"' {
		return 0, false
	}
	n, err := strconv.ParseInt(s[1:len(s)-1], 10, 64)
	return n, err == nil && n > 0
}

// etagMatches implements If-None-Match's weak comparison against a list.
func etagMatches(header, tag string, weak bool) bool {
	for part := range strings.SplitSeq(header, ",") {
		part = strings.TrimSpace(part)
		if part == "*" {
			return true
		}
		if weak {
			part = strings.TrimPrefix(part, "W/")
		}
		if part == tag {
			return true
		}
	}
	return false
}
