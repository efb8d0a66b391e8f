package ratelimit_test

import (
	"testing"
	"time"

	"onebox/ratelimit"
)

func TestHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		p          ratelimit.Policy
		r          ratelimit.Result
		wantPolicy string
		wantState  string
	}{
		{
			name:       "whole seconds",
			p:          ratelimit.Policy{Name: "api", Limit: 300, Window: time.Minute},
			r:          ratelimit.Result{Allowed: true, Limit: 300, Remaining: 12, Reset: 30 * time.Second},
			wantPolicy: `"api";q=300;w=60`,
			wantState:  `"api";r=12;t=30`,
		},
		{
			name:       "reset rounds up",
			p:          ratelimit.Policy{Name: "api", Limit: 5, Window: time.Hour},
			r:          ratelimit.Result{Remaining: 0, Reset: 29*time.Second + time.Nanosecond},
			wantPolicy: `"api";q=5;w=3600`,
			wantState:  `"api";r=0;t=30`,
		},
		{
			name:       "sub-second window is one second",
			p:          ratelimit.Policy{Name: "burst", Limit: 2, Window: 200 * time.Millisecond},
			r:          ratelimit.Result{Allowed: true, Limit: 2, Remaining: 1, Reset: 100 * time.Millisecond},
			wantPolicy: `"burst";q=2;w=1`,
			wantState:  `"burst";r=1;t=1`,
		},
		{
			name:       "full bucket resets now",
			p:          ratelimit.Policy{Name: "api", Limit: 1, Window: 90 * time.Second},
			r:          ratelimit.Result{Allowed: true, Limit: 1, Remaining: 1},
			wantPolicy: `"api";q=1;w=90`,
			wantState:  `"api";r=1;t=0`,
		},
		{
			name:       "negative values clamp to zero",
			p:          ratelimit.Policy{Name: "api", Limit: 1, Window: time.Second},
			r:          ratelimit.Result{Remaining: -1, Reset: -time.Second},
			wantPolicy: `"api";q=1;w=1`,
			wantState:  `"api";r=0;t=0`,
		},
		{
			name:       "name is escaped",
			p:          ratelimit.Policy{Name: `a"b\c`, Limit: 10, Window: time.Second},
			r:          ratelimit.Result{Remaining: 3, Reset: time.Second},
			wantPolicy: `"a\"b\\c";q=10;w=1`,
			wantState:  `"a\"b\\c";r=3;t=1`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			policy, state := ratelimit.PolicyHeader(tt.p), ratelimit.StateHeader(tt.p, tt.r)
			if policy != tt.wantPolicy {
				t.Errorf("policy = %s, want %s", policy, tt.wantPolicy)
			}
			if state != tt.wantState {
				t.Errorf("state = %s, want %s", state, tt.wantState)
			}
		})
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		r    ratelimit.Result
		want int
	}{
		{"allowed", ratelimit.Result{Allowed: true, RetryAfter: 5 * time.Second}, 0},
		{"whole seconds", ratelimit.Result{RetryAfter: 12 * time.Minute}, 720},
		{"rounds up", ratelimit.Result{RetryAfter: 1500 * time.Millisecond}, 2},
		{"sub-second is one", ratelimit.Result{RetryAfter: time.Millisecond}, 1},
		{"zero is one", ratelimit.Result{}, 1},
		{"negative is one", ratelimit.Result{RetryAfter: -time.Second}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := ratelimit.RetryAfterSeconds(tt.r); got != tt.want {
				t.Errorf("RetryAfterSeconds(%+v) = %d, want %d", tt.r, got, tt.want)
			}
		})
	}
}
