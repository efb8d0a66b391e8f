package ratelimit

import (
	"fmt"
	"strconv"
	"time"
)

// PolicyHeader returns the value of the RateLimit-Policy header field of
// draft-ietf-httpapi-ratelimit-headers for p, for example
// `"api";q=300;w=60`. It depends on p alone: compute it once. Seconds are
// rounded up, so a sub-second window is not announced as w=0. p must be
// valid.
func PolicyHeader(p Policy) string {
	return fmt.Sprintf("%s;q=%d;w=%d", sfString(p.Name), p.Limit, ceilSeconds(p.Window))
}

// StateHeader returns the value of the RateLimit header field for one
// Allow call under p, for example `"api";r=12;t=30`. t is rounded up, so
// a client that waits t never arrives early. It runs on every request:
// one allocation, no fmt.
func StateHeader(p Policy, r Result) string {
	var buf [64]byte // on the stack: the string is the one allocation
	b := buf[:0]
	b = appendSFString(b, p.Name)
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, int64(max(r.Remaining, 0)), 10)
	b = append(b, ";t="...)
	b = strconv.AppendInt(b, ceilSeconds(r.Reset), 10)
	return string(b)
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
	return string(appendSFString(nil, s))
}

func appendSFString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' || s[i] == '"' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}
