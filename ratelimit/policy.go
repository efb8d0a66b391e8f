package ratelimit

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidPolicy is wrapped by Policy.Validate and by Allow when a policy
// cannot describe a token bucket.
var ErrInvalidPolicy = errors.New("ratelimit: invalid policy")

// Validate reports whether p describes a usable bucket. Configuration
// should call it at start-up; Allow calls it too, so a bad policy fails
// one request instead of dividing by zero.
func (p Policy) Validate() error {
	switch {
	case p.Name == "":
		return fmt.Errorf("%w: empty name", ErrInvalidPolicy)
	case !printableASCII(p.Name):
		// The name goes into a structured-field string in headers.
		return fmt.Errorf("%w: name %q is not printable ASCII", ErrInvalidPolicy, p.Name)
	case p.Limit < 1:
		return fmt.Errorf("%w %q: limit %d < 1", ErrInvalidPolicy, p.Name, p.Limit)
	case p.Window <= 0:
		return fmt.Errorf("%w %q: window %v <= 0", ErrInvalidPolicy, p.Name, p.Window)
	case p.Window/time.Duration(p.Limit) == 0:
		return fmt.Errorf("%w %q: limit %d is more than one per nanosecond of %v", ErrInvalidPolicy, p.Name, p.Limit, p.Window)
	}
	return nil
}

func printableASCII(s string) bool {
	for i := range len(s) {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
