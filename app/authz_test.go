package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"onebox/ratelimit"
)

// TestLoginAppliesSignupHandleRules: login does not fold a handle sign-up
// would refuse into one it accepted ("al\u0130ce" lowered is "alice"):
// every such handle is unknown, answered exactly as a wrong password, and
// takes nothing from the real handle's login budget.
func TestLoginAppliesSignupHandleRules(t *testing.T) {
	t.Parallel()
	b := newBundle(t, func(s *setup) {
		s.opts.Policies.AuthHandle = ratelimit.Policy{Name: "auth-handle", Limit: 2, Window: time.Hour}
	})
	for _, h := range []string{"alice", "kelvin", "sam"} {
		mustStatus(t, b.do("POST", "/v1/users", `{"handle":"`+h+`","password":"correct horse"}`), http.StatusCreated)
	}
	wrong := b.do("POST", "/v1/sessions", `{"handle":"nobody","password":"correct horse"}`)
	mustStatus(t, wrong, http.StatusUnauthorized)
	for _, h := range []string{
		"al\u0130ce",            // İ, lower-cased by Unicode to i
		"AL\u0130CE",            // and upper-case around it
		"\u212Aelvin",           // K, the Kelvin sign, lower-cased to k
		"\u017Fam",              // ſ, long s, which folds to s
		"ａｌｉｃｅ",                 // fullwidth letters
		"alice\u200b",           // a zero-width space
		"alic\u0065\u0301",      // a combining accent
		"alice ",                // a trailing space
		" alice",                // a leading one
		"alice\u0000",           // a NUL
		"ali-ce",                // punctuation sign-up refuses
		"al",                    // too short
		strings.Repeat("a", 31), // too long
		"admin",                 // reserved
	} {
		body, _ := json.Marshal(map[string]string{"handle": h, "password": "correct horse"})
		// Sign-up refuses it...
		mustStatus(t, b.do("POST", "/v1/users", string(body)), http.StatusUnprocessableEntity)
		// ...so login knows no such handle.
		r := b.do("POST", "/v1/sessions", string(body))
		mustStatus(t, r, http.StatusUnauthorized)
		got, want := r.json(t), wrong.json(t)
		delete(got, "request_id")
		delete(want, "request_id")
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("handle %q: %v, want the unknown-handle answer %v", h, got, want)
		}
	}
	// None of that took from the real handles' budgets of two.
	for _, h := range []string{"alice", "ALICE", "kelvin", "sam"} {
		b.login(h, "correct horse")
	}
}

// deviceBundle has device tokens on, an injectable clock, and small
// login budgets: handle hl, device dl, client IP ipl per hour.
func deviceBundle(t *testing.T, hl, dl, ipl int) (*bundle, *atomic.Int64) {
	t.Helper()
	var offset atomic.Int64 // added to the real time
	b := newBundle(t, func(s *setup) {
		s.clock = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		s.opts.DeviceKey = []byte("0123456789abcdef0123456789abcdef")
		s.opts.DeviceTTL = 24 * time.Hour
		s.opts.Policies.AuthHandle = ratelimit.Policy{Name: "auth-handle", Limit: hl, Window: time.Hour}
		s.opts.Policies.AuthDevice = ratelimit.Policy{Name: "auth-device", Limit: dl, Window: time.Hour}
		s.opts.Policies.Auth = ratelimit.Policy{Name: "auth", Limit: ipl, Window: time.Hour}
	})
	return b, &offset
}

func cookieNamed(r response, name string) *http.Cookie {
	for _, c := range r.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// loginDevice logs in and returns the device token, checking the cookie
// carries the same.
func loginDevice(t *testing.T, b *bundle, handle string) string {
	t.Helper()
	r := b.do("POST", "/v1/sessions", `{"handle":"`+handle+`","password":"correct horse"}`)
	mustStatus(t, r, http.StatusCreated)
	tok, _ := r.json(t)["device_token"].(string)
	ck := cookieNamed(r, "onebox_device")
	if tok == "" || ck == nil || ck.Value != tok {
		t.Fatalf("device token %q, cookie %+v", tok, ck)
	}
	if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Secure || ck.Path != "/v1/sessions" || ck.Expires.IsZero() {
		t.Fatalf("device cookie %+v", ck)
	}
	return tok
}

// TestDeviceTokenSurvivesHandleLockout: someone guessing a handle's
// password from anywhere exhausts its login budget, and its owner without
// a device token is refused too; but on a device that logged in before,
// the owner gets in, on the device's own budget. A device token that is
// forged, tampered with, another handle's or expired buys nothing.
func TestDeviceTokenSurvivesHandleLockout(t *testing.T) {
	t.Parallel()
	b, offset := deviceBundle(t, 3, 3, 1000)
	for _, h := range []string{"owner", "other"} {
		mustStatus(t, b.do("POST", "/v1/users", `{"handle":"`+h+`","password":"correct horse"}`), http.StatusCreated)
	}
	device := loginDevice(t, b, "owner") // 1 of the handle's 3
	spare := loginDevice(t, b, "owner")  // 2 of 3
	otherDevice := loginDevice(t, b, "other")
	login := func(password string, headers ...string) response {
		return b.do("POST", "/v1/sessions", `{"handle":"owner","password":"`+password+`"}`, headers...)
	}
	// The attacker uses the handle's last attempt, then is refused.
	mustStatus(t, login("guess guess"), http.StatusUnauthorized)
	mustStatus(t, login("guess again"), http.StatusTooManyRequests)
	// So is the owner, on a new device.
	mustStatus(t, login("correct horse"), http.StatusTooManyRequests)

	flip := []byte(device)
	flip[10] ^= 1
	for name, tok := range map[string]string{
		"tampered":       string(flip),
		"another user's": otherDevice,
		"garbage":        "v1.nonsense",
		"session token":  strings.Repeat("A", 43),
	} {
		for _, h := range [][]string{{"Onebox-Device", tok}, {"Cookie", "onebox_device=" + tok}} {
			if r := login("correct horse", h...); r.StatusCode != http.StatusTooManyRequests {
				t.Errorf("%s device token in %s: %d, want 429", name, h[0], r.StatusCode)
			}
		}
	}
	// The owner's device gets in, by header and by cookie.
	r := login("correct horse", "Onebox-Device", device)
	mustStatus(t, r, http.StatusCreated)
	if got := r.Header.Get("RateLimit"); !strings.HasPrefix(got, `"auth-device";r=2;`) {
		t.Errorf("RateLimit %q, want the device's budget with 2 left", got)
	}
	mustStatus(t, login("correct horse", "Cookie", "onebox_device="+device), http.StatusCreated)
	// Wrong passwords on the device take from its own budget, and only
	// that device is then refused.
	mustStatus(t, login("guess guess", "Onebox-Device", device), http.StatusUnauthorized)
	mustStatus(t, login("correct horse", "Onebox-Device", device), http.StatusTooManyRequests)
	mustStatus(t, login("correct horse", "Onebox-Device", spare), http.StatusCreated)
	// An expired token is ignored.
	offset.Store(int64(25 * time.Hour))
	mustStatus(t, login("correct horse", "Onebox-Device", spare), http.StatusTooManyRequests)
}

// TestLoginRateLimitHeaders: a login answer carries the RateLimit headers
// of whichever budget is closest to running out: the client IP's, the
// handle's, or the device's.
func TestLoginRateLimitHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		hl, dl, ip int
		withDevice bool
		want       string
	}{
		{"client IP closest", 10, 10, 5, false, `"auth";r=2;`}, // sign-up took one
		{"handle closest", 3, 10, 100, false, `"auth-handle";r=1;`},
		{"device closest", 10, 3, 100, true, `"auth-device";r=2;`},
		{"client IP closer than the device", 10, 3, 4, true, `"auth";r=1;`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, _ := deviceBundle(t, tt.hl, tt.dl, tt.ip)
			mustStatus(t, b.do("POST", "/v1/users", `{"handle":"henry","password":"correct horse"}`), http.StatusCreated)
			device := loginDevice(t, b, "henry")
			var h []string
			if tt.withDevice {
				h = []string{"Onebox-Device", device}
			}
			r := b.do("POST", "/v1/sessions", `{"handle":"henry","password":"correct horse"}`, h...)
			mustStatus(t, r, http.StatusCreated)
			state, policy := r.Header.Get("RateLimit"), r.Header.Get("RateLimit-Policy")
			name, _, _ := strings.Cut(tt.want, ";")
			if !strings.HasPrefix(state, tt.want) || !strings.HasPrefix(policy, name+";") {
				t.Errorf("RateLimit %q, RateLimit-Policy %q, want %s…", state, policy, tt.want)
			}
		})
	}
}

// TestForwardedProtoFromTrustedProxiesOnly: X-Forwarded-Proto decides the
// session cookie's Secure flag and the scheme the Origin check expects,
// but only from ONEBOX_TRUSTED_PROXIES; the test client is on loopback,
// which echo would otherwise trust.
func TestForwardedProtoFromTrustedProxiesOnly(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		proxies []string
		https   bool // whether the forwarded https is believed
	}{
		{"no proxy configured", nil, false},
		{"another proxy", []string{"10.0.0.0/8"}, false},
		{"the peer is the proxy", []string{"127.0.0.0/8", "::1/128"}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBundle(t, func(s *setup) { s.opts.TrustedProxies = mustPrefixes(t, tt.proxies...) })
			mustStatus(t, b.do("POST", "/v1/users", `{"handle":"ivan","password":"correct horse"}`), http.StatusCreated)
			xfp := []string{"X-Forwarded-Proto", "https"}
			r := b.do("POST", "/v1/sessions", `{"handle":"ivan","password":"correct horse"}`, xfp...)
			mustStatus(t, r, http.StatusCreated)
			ck := cookieNamed(r, "onebox_session")
			if ck == nil || ck.Secure != tt.https {
				t.Fatalf("session cookie %+v, want Secure %v", ck, tt.https)
			}
			u, _ := url.Parse(b.url)
			httpsOrigin, httpOrigin := "https://"+u.Host, "http://"+u.Host
			want := map[string]int{httpsOrigin: http.StatusForbidden, httpOrigin: http.StatusOK}
			if tt.https {
				want = map[string]int{httpsOrigin: http.StatusOK, httpOrigin: http.StatusForbidden}
			}
			for origin, status := range want {
				r := b.do("PATCH", "/v1/users/me", `{"bio":"x"}`, "Cookie", "onebox_session="+ck.Value, "Origin", origin, xfp[0], xfp[1])
				if r.StatusCode != status {
					t.Errorf("Origin %s: %d, want %d: %s", origin, r.StatusCode, status, r.body)
				}
			}
		})
	}
}

// TestPublicURLOrigin: with ONEBOX_PUBLIC_URL set, a cookie-authenticated
// write must carry exactly its origin; the request's Host no longer
// counts.
func TestPublicURLOrigin(t *testing.T) {
	t.Parallel()
	b := newBundle(t, func(s *setup) { s.opts.PublicOrigin = "https://photos.example.com" })
	ck := cookieSession(t, b, "judy")
	for origin, want := range map[string]int{
		"https://photos.example.com":      http.StatusOK,
		b.url:                             http.StatusForbidden,
		"http://photos.example.com":       http.StatusForbidden,
		"https://photos.example.com:443":  http.StatusForbidden, // browsers never send the default port
		"https://photos.example.com.evil": http.StatusForbidden,
		"https://evil.photos.example.com": http.StatusForbidden,
	} {
		r := b.do("PATCH", "/v1/users/me", `{"bio":"x"}`, "Cookie", ck, "Origin", origin)
		if r.StatusCode != want {
			t.Errorf("Origin %s: %d, want %d: %s", origin, r.StatusCode, want, r.body)
		}
	}
}

// cookieSession signs handle up and returns its session as a Cookie
// header value.
func cookieSession(t *testing.T, b *bundle, handle string) string {
	t.Helper()
	mustStatus(t, b.do("POST", "/v1/users", `{"handle":"`+handle+`","password":"correct horse"}`), http.StatusCreated)
	r := b.do("POST", "/v1/sessions", `{"handle":"`+handle+`","password":"correct horse"}`)
	mustStatus(t, r, http.StatusCreated)
	ck := cookieNamed(r, "onebox_session")
	if ck == nil {
		t.Fatal("no session cookie")
	}
	return "onebox_session=" + ck.Value
}

// TestOriginCheckOnEveryCookieWrite: every state-changing route, as the
// router lists them (a route added later is covered too), refuses a
// cookie-authenticated request whose Origin is not exactly the site's:
// one the site's origin is a prefix or a suffix of, "null", or none. The
// exact origin passes the check (the handler may then answer anything
// but 403). Both ways of knowing the site's origin are tried: the
// request's own scheme and Host, and ONEBOX_PUBLIC_URL.
func TestOriginCheckOnEveryCookieWrite(t *testing.T) {
	t.Parallel()
	for _, public := range []string{"", "https://example.com"} {
		t.Run("public="+public, func(t *testing.T) {
			t.Parallel()
			b := newBundle(t, func(s *setup) { s.opts.PublicOrigin = public; s.noWorkers = true })
			site := public
			if site == "" {
				site = b.url
			}
			scheme, host, _ := strings.Cut(site, "://")
			refused := []struct{ name, origin string }{
				{"prefix of it", site + ".evil"},
				{"prefix with a port", site + ":1"},
				{"prefix with a path", site + "/"},
				{"suffix of it", scheme + "://evil" + host},
				{"subdomain", scheme + "://evil." + host},
				{"other scheme", map[string]string{"http": "https", "https": "http"}[scheme] + "://" + host},
				{"null", "null"},
				{"absent", ""},
			}
			var writes int
			for i, rt := range b.app.Routes() {
				switch rt.Method {
				case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
				default:
					continue
				}
				writes++
				// A fresh user per route: the exact origin may delete it
				// or its session.
				ck := cookieSession(t, b, fmt.Sprintf("route%d", i))
				path := strings.NewReplacer(":id", "x", "*", "x").Replace(rt.Path)
				for _, o := range refused {
					h := []string{"Cookie", ck}
					if o.origin != "" {
						h = append(h, "Origin", o.origin)
					}
					r := b.do(rt.Method, path, `{}`, h...)
					if r.StatusCode != http.StatusForbidden || r.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(r.body), "bad-origin") {
						t.Errorf("%s %s, Origin %s (%s): %d %s, want a 403 bad-origin problem", rt.Method, rt.Path, o.origin, o.name, r.StatusCode, r.body)
					}
				}
				if r := b.do(rt.Method, path, `{}`, "Cookie", ck, "Origin", site); r.StatusCode == http.StatusForbidden {
					t.Errorf("%s %s with the site's own Origin %s: 403 %s", rt.Method, rt.Path, site, r.body)
				}
			}
			if writes < 8 {
				t.Fatalf("only %d state-changing routes in %v", writes, b.app.Routes())
			}
		})
	}
}

// TestDeviceTokensOffWithoutKey: with no ONEBOX_DEVICE_KEY, login issues
// no device token, and every login counts against its handle.
func TestDeviceTokensOffWithoutKey(t *testing.T) {
	t.Parallel()
	b := newBundle(t, func(s *setup) {
		s.opts.Policies.AuthHandle = ratelimit.Policy{Name: "auth-handle", Limit: 1, Window: time.Hour}
	})
	mustStatus(t, b.do("POST", "/v1/users", `{"handle":"kate","password":"correct horse"}`), http.StatusCreated)
	r := b.do("POST", "/v1/sessions", `{"handle":"kate","password":"correct horse"}`)
	mustStatus(t, r, http.StatusCreated)
	if _, ok := r.json(t)["device_token"]; ok || cookieNamed(r, "onebox_device") != nil {
		t.Fatalf("device token issued without a key: %s %v", r.body, r.Cookies())
	}
	mustStatus(t, b.do("POST", "/v1/sessions", `{"handle":"kate","password":"correct horse"}`, "Onebox-Device", "v1.x"), http.StatusTooManyRequests)
}

// TestDeviceTokenIsPerAccount: device tokens name the account, not the
// handle: after an account is deleted and its handle taken by someone
// else, the old owner's device tokens no longer escape the handle's
// budget.
func TestDeviceTokenIsPerAccount(t *testing.T) {
	t.Parallel()
	b, _ := deviceBundle(t, 3, 100, 1000)
	mustStatus(t, b.do("POST", "/v1/users", `{"handle":"zed","password":"correct horse"}`), http.StatusCreated)
	old := loginDevice(t, b, "zed")
	r := b.do("POST", "/v1/sessions", `{"handle":"zed","password":"correct horse"}`, "Onebox-Device", old)
	mustStatus(t, r, http.StatusCreated)
	mustStatus(t, b.do("DELETE", "/v1/users/me", "", bearer(r.json(t)["token"].(string))...), http.StatusNoContent)
	mustStatus(t, b.do("POST", "/v1/users", `{"handle":"zed","password":"other horse"}`), http.StatusCreated)
	// The handle's budget of three had one taken by the first login; the
	// old token buys no more than the two left.
	for _, want := range []int{http.StatusUnauthorized, http.StatusUnauthorized, http.StatusTooManyRequests} {
		mustStatus(t, b.do("POST", "/v1/sessions", `{"handle":"zed","password":"guess guess"}`, "Onebox-Device", old), want)
	}
}
