package ratelimit_test

import (
	"errors"
	"testing"
	"time"

	"onebox/ratelimit"
)

func TestPolicyValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		p       ratelimit.Policy
		wantErr bool
	}{
		{"valid", ratelimit.Policy{Name: "api", Limit: 300, Window: time.Minute}, false},
		{"one per nanosecond", ratelimit.Policy{Name: "api", Limit: 1000, Window: time.Microsecond}, false},
		{"empty name", ratelimit.Policy{Limit: 1, Window: time.Second}, true},
		{"non-ASCII name", ratelimit.Policy{Name: "åpi", Limit: 1, Window: time.Second}, true},
		{"control byte in name", ratelimit.Policy{Name: "a\nb", Limit: 1, Window: time.Second}, true},
		{"zero limit", ratelimit.Policy{Name: "api", Window: time.Second}, true},
		{"negative limit", ratelimit.Policy{Name: "api", Limit: -1, Window: time.Second}, true},
		{"zero window", ratelimit.Policy{Name: "api", Limit: 1}, true},
		{"negative window", ratelimit.Policy{Name: "api", Limit: 1, Window: -time.Second}, true},
		{"more than one per nanosecond", ratelimit.Policy{Name: "api", Limit: 1001, Window: time.Microsecond}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.p.Validate()
			if tt.wantErr != (err != nil) {
				t.Fatalf("Validate() = %v, want error %t", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ratelimit.ErrInvalidPolicy) {
				t.Errorf("Validate() = %v, want it to wrap ErrInvalidPolicy", err)
			}
		})
	}
}
