package lazyctx

import (
	"context"
	"errors"
	"testing"
	"time"
)

type ctxKey struct{}

func armed(ctx context.Context) bool { return ctx.(*Deadline).armed.Load() != nil }

func TestWithDeadline(t *testing.T) {
	t.Parallel()
	base := context.WithValue(t.Context(), ctxKey{}, "v")
	tests := []struct {
		name    string
		timeout time.Duration
		act     func(ctx context.Context, end, cancelParent context.CancelFunc)
		wantErr error
	}{
		{"expires while waited on", 5 * time.Millisecond, func(ctx context.Context, _, _ context.CancelFunc) {
			<-ctx.Done()
		}, context.DeadlineExceeded},
		{"expires unwatched", 5 * time.Millisecond, func(ctx context.Context, end, _ context.CancelFunc) {
			time.Sleep(10 * time.Millisecond)
			if err := ctx.Err(); !errors.Is(err, context.DeadlineExceeded) || armed(ctx) {
				t.Errorf("Err() past the deadline = %v (armed %v), want DeadlineExceeded unarmed", err, armed(ctx))
			}
			end() // later, as a handler returns: Err must not change
		}, context.DeadlineExceeded},
		{"ended before use", time.Hour, func(_ context.Context, end, _ context.CancelFunc) {
			end()
		}, context.Canceled},
		{"ended after use", time.Hour, func(ctx context.Context, end, _ context.CancelFunc) {
			<-time.After(time.Millisecond)
			_ = ctx.Done()
			end()
		}, context.Canceled},
		{"parent cancelled", time.Hour, func(_ context.Context, _, cancelParent context.CancelFunc) {
			cancelParent()
		}, context.Canceled},
		{"live", time.Hour, func(context.Context, context.CancelFunc, context.CancelFunc) {}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			parent, cancelParent := context.WithCancel(base)
			defer cancelParent()
			deadline := time.Now().Add(tt.timeout)
			ctx, end := WithDeadline(parent, deadline)
			defer end()
			if d, ok := ctx.Deadline(); !ok || !d.Equal(deadline) {
				t.Errorf("Deadline() = %v, %v; want %v", d, ok, deadline)
			}
			if err := ctx.Err(); err != nil {
				t.Fatalf("Err() at the start = %v", err)
			}
			if armed(ctx) {
				t.Fatal("armed before Done was called")
			}
			tt.act(ctx, end, cancelParent)
			if err := ctx.Err(); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Err() = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				select {
				case <-ctx.Done():
				case <-time.After(5 * time.Second):
					t.Fatal("Done not closed")
				}
				if err := ctx.Err(); !errors.Is(err, tt.wantErr) {
					t.Fatalf("Err() once armed = %v, want %v", err, tt.wantErr)
				}
			}
			if v := ctx.Value(ctxKey{}); v != "v" {
				t.Errorf("Value = %v, want the parent's", v)
			}
		})
	}
}

// A child of the armed context is cancelled with it: the link that
// database/sql relies on.
func TestChildIsCancelled(t *testing.T) {
	t.Parallel()
	ctx, end := WithTimeout(t.Context(), time.Hour)
	child, cancel := context.WithCancel(ctx)
	defer cancel()
	end()
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("child not cancelled when the request ended")
	}
}

// The earlier of the parent's deadline and its own is the deadline.
func TestParentDeadlineEarlier(t *testing.T) {
	t.Parallel()
	early := time.Now().Add(time.Minute)
	parent, cancel := context.WithDeadline(t.Context(), early)
	defer cancel()
	ctx, end := WithTimeout(parent, time.Hour)
	defer end()
	if d, _ := ctx.Deadline(); !d.Equal(early) {
		t.Fatalf("Deadline() = %v, want the parent's %v", d, early)
	}
}

// Once Err has said something, it says it for good, whatever happens
// after and whether or not Done is called: the contract of Err.
func TestErrDoesNotChange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		first error
		then  func(ctx context.Context, end, cancelParent context.CancelFunc)
	}{
		{"deadline, then the parent is cancelled", context.DeadlineExceeded, func(_ context.Context, _, cancelParent context.CancelFunc) {
			cancelParent()
		}},
		{"ended, then the deadline passes", context.Canceled, func(context.Context, context.CancelFunc, context.CancelFunc) {
			time.Sleep(10 * time.Millisecond)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			parent, cancelParent := context.WithCancel(t.Context())
			defer cancelParent()
			ctx, end := WithTimeout(parent, 5*time.Millisecond)
			defer end()
			if tt.first == context.DeadlineExceeded {
				time.Sleep(10 * time.Millisecond)
			} else {
				end()
			}
			if err := ctx.Err(); !errors.Is(err, tt.first) {
				t.Fatalf("Err() = %v, want %v", err, tt.first)
			}
			tt.then(ctx, end, cancelParent)
			if err := ctx.Err(); !errors.Is(err, tt.first) {
				t.Fatalf("Err() later = %v, want still %v", err, tt.first)
			}
			<-ctx.Done()
			if err := ctx.Err(); !errors.Is(err, tt.first) {
				t.Fatalf("Err() once Done = %v, want still %v", err, tt.first)
			}
		})
	}
}

// TestTimeout: Timeout is WithTimeout with the context as its own
// CancelFunc.
func TestTimeout(t *testing.T) {
	t.Parallel()
	before := time.Now()
	ctx := Timeout(t.Context(), time.Hour)
	if d, ok := ctx.Deadline(); !ok || d.Before(before.Add(time.Hour)) || d.After(time.Now().Add(time.Hour)) {
		t.Errorf("deadline %v, %v: want an hour from now", d, ok)
	}
	if ctx.Err() != nil {
		t.Fatalf("Err %v before Cancel", ctx.Err())
	}
	ctx.Cancel()
	ctx.Cancel()
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("Err %v after Cancel, want Canceled", ctx.Err())
	}
	<-ctx.Done()
}
