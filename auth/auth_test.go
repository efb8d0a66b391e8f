package auth_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"onebox/auth"
)

var fast = auth.Params{Memory: 64, Time: 1, Threads: 1}

func TestHashVerify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := auth.NewHasher(fast, 2)
	enc, err := h.Hash(ctx, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=64,t=1,p=1$") || strings.Contains(enc, "correct horse") {
		t.Fatalf("unexpected encoding %q", enc)
	}
	other, _ := h.Hash(ctx, "correct horse")
	if other == enc {
		t.Fatal("two hashes of one password are equal: salt is not random")
	}
	tests := []struct {
		name, password, encoded string
		want                    bool
	}{
		{"right password", "correct horse", enc, true},
		{"wrong password", "battery staple", enc, false},
		{"unknown user", "correct horse", "", false},
	}
	for _, tt := range tests {
		got, err := h.Verify(ctx, tt.password, tt.encoded)
		if err != nil || got != tt.want {
			t.Errorf("%s: Verify = %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
	// A hash made with other parameters still verifies: they travel in it.
	h2 := auth.NewHasher(auth.Params{Memory: 128, Time: 2, Threads: 1}, 1)
	if ok, err := h2.Verify(ctx, "correct horse", enc); !ok || err != nil {
		t.Fatalf("cross-parameter Verify = %v, %v", ok, err)
	}
}

func TestVerifyMalformed(t *testing.T) {
	t.Parallel()
	h := auth.NewHasher(fast, 1)
	for _, enc := range []string{"x", "$argon2i$v=19$m=1,t=1,p=1$AA$AA", "$argon2id$v=18$m=1,t=1,p=1$AA$AA", "$argon2id$v=19$m=1,t=1,p=1$!!$AA", "$argon2id$v=19$m=1,t=1,p=1$AA$"} {
		if _, err := h.Verify(context.Background(), "pw", enc); !errors.Is(err, auth.ErrMalformedHash) {
			t.Errorf("Verify(%q) err = %v, want ErrMalformedHash", enc, err)
		}
	}
}

func TestConcurrencyCap(t *testing.T) {
	t.Parallel()
	h := auth.NewHasher(auth.Params{Memory: 1024, Time: 3, Threads: 1}, 1)
	// One goroutine keeps the only slot busy; a caller whose context is
	// already done must then be refused rather than run a second hash.
	var busyDone atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		defer busyDone.Store(true)
		for range 50 {
			if _, err := h.Hash(context.Background(), "pw"); err != nil {
				t.Error(err)
			}
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	refused := false
	for !refused && !busyDone.Load() {
		_, err := h.Hash(ctx, "pw")
		switch {
		case errors.Is(err, context.Canceled):
			refused = true
		case err != nil:
			t.Fatalf("err = %v, want nil or context.Canceled", err)
		}
	}
	wg.Wait()
	if !refused {
		t.Fatal("a second hash always found a slot: the cap does not hold")
	}
	// With the slot free again, even a done context gets one.
	if _, err := h.Hash(ctx, "pw"); err != nil {
		t.Fatalf("free slot refused: %v", err)
	}
}

func TestToken(t *testing.T) {
	t.Parallel()
	tok, hash := auth.NewToken()
	if len(tok) != 43 || hash != auth.HashToken(tok) || len(hash) != 64 {
		t.Fatalf("token %q hash %q", tok, hash)
	}
	tok2, _ := auth.NewToken()
	if tok == tok2 {
		t.Fatal("tokens repeat")
	}
}
