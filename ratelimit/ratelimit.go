// Package ratelimit defines the token-bucket Limiter that guards the
// HTTP API, implemented in process (ratelimit/memory) and, for many
// instances sharing one budget, in Redis (ratelimit/redis).
package ratelimit

import (
	"context"
	"time"
)

// Policy is a named token bucket: Limit requests per Window, refilled
// continuously, starting full. The name appears in RateLimit-Policy
// headers and metrics, so it comes from a closed set.
type Policy struct {
	Name   string
	Limit  int           // bucket size and refill per Window (the q= of the header)
	Window time.Duration // the w= of the header
}

// Result is the outcome of one Allow call.
type Result struct {
	Allowed    bool
	Limit      int           // the policy's quota, for headers
	Remaining  int           // whole tokens left after this call
	RetryAfter time.Duration // when denied: wait this long for one token
	Reset      time.Duration // time until the bucket is full again
}

// Limiter takes one token from the bucket named by (policy, key).
type Limiter interface {
	// Allow takes one token if there is one. A distributed backend may
	// fail and return an error; the caller decides to fail open or shut.
	// An error wrapping ErrInvalidPolicy means p fails p.Validate.
	// Memory use must stay bounded however many distinct keys arrive.
	Allow(ctx context.Context, p Policy, key string) (Result, error)
}
