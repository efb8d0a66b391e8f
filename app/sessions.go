package app

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"onebox/auth"
	"onebox/cache"
	"onebox/store"
)

const (
	sessionCookie = "onebox_session"
	identityKey   = "onebox.identity"
	// deviceCookie and headerDevice carry a device token (createSession).
	deviceCookie = "onebox_device"
	headerDevice = "Onebox-Device"
)

// identity is who made the request.
type identity struct {
	userID    string
	tokenHash string
	viaCookie bool
	// token is the store's position of the session's latest write; ""
	// where the store keeps one copy.
	token store.Token
}

// own is how the caller reads their own account: at least at the
// session's token, so a replica serves the read only once it holds the
// session's writes (read-your-own-writes). A store without tokens
// (SQLite) hands out none, and the read is then simply fresh.
func (who identity) own() (store.Freshness, store.Token) {
	if who.token == "" {
		return store.MustBeFresh, ""
	}
	return store.MayBeStale, who.token
}

// markWritten moves the session's token past the write that just
// committed and returns the caller with it, for the reads that answer
// the write. Its cached entry goes, so the next request, on any instance
// sharing the cache, reads the new token. A store without tokens does
// nothing here, at no cost. A failure is logged, not returned: the write
// is done, and the session's next reads are only as fresh as its older
// token.
func (a *App) markWritten(ctx context.Context, who identity) identity {
	tok, err := a.store.MarkWritten(ctx, who.tokenHash)
	if err == nil && tok != "" {
		who.token = tok
		err = invalidate(ctx, a.sessions, "s:"+who.tokenHash)
	}
	if err != nil {
		a.log.WarnContext(ctx, "keep the session's read token", "err", err)
	}
	return who
}

var errBadCredentials = problem(http.StatusUnauthorized, "unauthorized", "missing, invalid or expired credentials")

// identify finds the caller from a bearer token or the session cookie.
// No credentials is the anonymous identity; a bad bearer token is an
// error; a bad cookie counts as anonymous, so a stale cookie does not
// break public pages.
func (a *App) identify(c echo.Context) (identity, error) {
	req := c.Request()
	if h := req.Header.Get(echo.HeaderAuthorization); h != "" {
		token, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return identity{}, errBadCredentials
		}
		return a.session(req.Context(), token, false)
	}
	ck, err := req.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return identity{}, nil
	}
	who, err := a.session(req.Context(), ck.Value, true)
	if errors.Is(err, errBadCredentials) {
		return identity{}, nil
	}
	return who, err
}

// session resolves a token through the session cache. Logout and password
// changes invalidate the entry, so a revoked token stops working at once.
func (a *App) session(ctx context.Context, token string, viaCookie bool) (identity, error) {
	if len(token) != 43 { // auth.NewToken's length; anything else is not ours
		return identity{}, errBadCredentials
	}
	hash := auth.HashToken(token)
	b, err := a.sessions.Get(ctx, "s:"+hash, func(ctx context.Context) ([]byte, error) {
		s, err := a.store.Session(ctx, hash, a.now())
		if err != nil {
			return nil, absent(err)
		}
		return sessionValue(s.UserID, s.ExpiresAt, s.Token), nil
	})
	if errors.Is(err, cache.ErrAbsent) {
		return identity{}, errBadCredentials
	}
	if err != nil {
		return identity{}, err
	}
	userID, rest, _ := strings.Cut(string(b), " ")
	exp, tok, _ := strings.Cut(rest, " ")
	if n, err := strconv.ParseInt(exp, 10, 64); err != nil || !a.now().Before(time.Unix(0, n)) {
		return identity{}, errBadCredentials
	}
	return identity{userID: userID, tokenHash: hash, viaCookie: viaCookie, token: store.Token(tok)}, nil
}

// sessionValue is a session's cached form: "<user id> <expiry ns>", then
// " <token>" only when the store hands out tokens. Without one it is the
// form of the releases before tokens, whose parser reads the whole rest as
// the expiry: a trailing space would make every session a 401 to them
// while they share the cache during a rolling upgrade.
func sessionValue(userID string, expires time.Time, tok store.Token) []byte {
	b := make([]byte, 0, len(userID)+21+len(tok))
	b = append(b, userID...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, expires.UnixNano(), 10)
	if tok != "" {
		b = append(b, ' ')
		b = append(b, tok...)
	}
	return b
}

// requireUser returns the caller or a 401.
func requireUser(c echo.Context) (identity, error) {
	who, ok := c.Get(identityKey).(identity)
	if !ok {
		return identity{}, errBadCredentials
	}
	return who, nil
}

// createSession is login: POST /v1/sessions {handle, password}.
//
// Besides the client IP's budget (the route's guard), a login takes from
// its handle's budget, against password guessing spread over many
// addresses; but a client presenting a device token for the handle's user
// (see auth.Devices), issued by an earlier successful login, takes from
// that device's budget instead, so whoever exhausts the handle's budget does
// not lock its owner out on a known device. The response carries the
// RateLimit headers of the budget closest to running out.
func (a *App) createSession(c echo.Context) error {
	o, err := readObject(c, a.opts.MaxBodyBytes, echo.MIMEApplicationJSON)
	if err != nil {
		return err
	}
	handle, password := o.required("handle"), o.required("password")
	if err := o.done(); err != nil {
		return err
	}
	ctx := c.Request().Context()
	// A handle sign-up would refuse is unknown, and is never folded into
	// one it would accept: Unicode case folding maps "al\u0130ce" (and the
	// Kelvin sign, and more) onto ASCII letters.
	valid := checkHandle(handle) == ""
	key := handle // its own bucket; no user has it
	var cred store.Credentials
	if valid {
		key = strings.ToLower(handle) // ASCII only
		// Looked up before the limit, for the device check: an indexed
		// read, which the client IP's budget already bounds.
		cred, err = a.store.Credentials(ctx, handle)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	l, bucket := a.authHandle, "h:"+key
	if device := a.device(c, cred.UserID); device != "" {
		l, bucket = a.authDevice, "d:"+device
	}
	if err := a.allowAlso(c, l, bucket); err != nil {
		return err
	}
	// Verify runs even for an unknown handle (against a dummy hash), so the
	// answer takes as long either way and does not reveal which handles exist.
	ok, err := a.hasher.Verify(ctx, password, cred.PasswordHash)
	if err != nil {
		return err
	}
	if !ok {
		return problem(http.StatusUnauthorized, "unauthorized", "wrong handle or password")
	}
	token, hash := auth.NewToken()
	now := a.now().UTC()
	s := store.Session{TokenHash: hash, UserID: cred.UserID, CreatedAt: now, ExpiresAt: now.Add(a.opts.SessionTTL)}
	if err := a.store.CreateSession(ctx, s); err != nil {
		return err
	}
	secure := c.Scheme() == "https"
	c.SetCookie(&http.Cookie{
		Name: sessionCookie, Value: token, Path: "/", Expires: s.ExpiresAt,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: secure,
	})
	body := map[string]any{"token": token, "expires_at": s.ExpiresAt}
	if a.devices != nil {
		dev, exp := a.devices.Issue(cred.UserID, now)
		// Only login reads it: the cookie goes nowhere else.
		c.SetCookie(&http.Cookie{
			Name: deviceCookie, Value: dev, Path: "/v1/sessions", Expires: exp,
			HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: secure,
		})
		body["device_token"], body["device_expires_at"] = dev, exp
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return jsonBlob(c, http.StatusCreated, mustJSON(body))
}

// device returns the id of a valid device token for the user, from the
// Onebox-Device header (API clients) or the onebox_device cookie
// (browsers), or "". A token that is forged, expired or another user's
// is ignored: the login is then limited per handle. Tokens name the user
// id, not the handle, so those of a deleted account do not carry over to
// whoever takes its handle next.
func (a *App) device(c echo.Context, userID string) string {
	if a.devices == nil || userID == "" {
		return ""
	}
	now := a.now()
	req := c.Request()
	if v := req.Header.Get(headerDevice); v != "" {
		if id, ok := a.devices.Check(v, userID, now); ok {
			return id
		}
	}
	for i, ck := range req.CookiesNamed(deviceCookie) {
		if i == 4 { // a browser sends one; no work for a flood
			break
		}
		if id, ok := a.devices.Check(ck.Value, userID, now); ok {
			return id
		}
	}
	return ""
}

// deleteSession is logout: DELETE /v1/sessions/current.
func (a *App) deleteSession(c echo.Context) error {
	who, err := requireUser(c)
	if err != nil {
		return err
	}
	if err := a.revoke(c.Request().Context(), func(ctx context.Context) error {
		return a.store.DeleteSession(ctx, who.tokenHash)
	}, who.tokenHash); err != nil {
		return err
	}
	a.clearCookie(c)
	return c.NoContent(http.StatusNoContent)
}

// revoke runs the store change, then drops the cached sessions, so no
// request can see a revoked token after revoke returns.
func (a *App) revoke(ctx context.Context, change func(context.Context) error, tokenHashes ...string) error {
	if err := change(ctx); err != nil {
		return err
	}
	for _, h := range tokenHashes {
		if err := invalidate(ctx, a.sessions, "s:"+h); err != nil {
			return err
		}
	}
	return nil
}

func (a *App) clearCookie(c echo.Context) {
	c.SetCookie(&http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: c.Scheme() == "https"})
}
