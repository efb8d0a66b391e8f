package ratelimit

import (
	"fmt"
	"strings"
	"time"
)

// Headers returns the values of the RateLimit-Policy and RateLimit
// header fields of draft-ietf-httpapi-ratelimit-headers for one Allow
// call, for example `"api";q=300;w=60` and `"api";r=12;t=30`. Seconds
// are rounded up, so a client that waits t never arrives early and a
// sub-second window is not announced as w=0. p must be valid.
func Headers(p Policy, r Result) (policy, state string) {
	name := sfString(p.Name)
	policy = fmt.Sprintf("%s;q=%d;w=%d", name, p.Limit, ceilSeconds(p.Window))
	state = fmt.Sprintf("%s;r=%d;t=%d", name, max(r.Remaining, 0), ceilSeconds(r.Reset))
	return policy, state
}

// RetryAfterSeconds returns the Retry-After value for a denied call:
// r.RetryAfter rounded up and at least 1, since "Retry-After: 0" invites
// an immediate retry that would be denied again. It returns 0 when r was
// allowed.
func RetryAfterSeconds(r Result) int {
	if r.Allowed {
		return 0
	}
	return int(max(ceilSeconds(r.RetryAfter), 1))
}

// ceilSeconds rounds d up to whole seconds, and a negative d to 0.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	s := int64(d / time.Second)
	if d%time.Second != 0 {
		s++
	}
	return s
}

// sfString quotes s as a structured-field string (RFC 9651, section
// 3.3.3). Validate has already rejected bytes outside printable ASCII.
func sfString(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `"`, `\"`)
	return `"` + s + `"`
}
