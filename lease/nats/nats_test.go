package nats_test

import (
	"context"
	"crypto/rand"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"onebox/lease"
	"onebox/lease/leasetest"
	leasenats "onebox/lease/nats"
)

// TestConformance runs the suite with each holder on a connection of its
// own; a holder dies when its connection closes without releasing, and
// its lease passes when the bucket's TTL removes its key.
func TestConformance(t *testing.T) {
	t.Parallel()
	url := os.Getenv("ONEBOX_TEST_NATS_URL")
	if url == "" {
		t.Skip("ONEBOX_TEST_NATS_URL not set: skipping the NATS lease tests")
	}
	const ttl = 2 * time.Second
	leasetest.Run(t, func(t *testing.T) (lease.Locker, func()) {
		nc, err := nats.Connect(url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		l, err := leasenats.New(nc, leasenats.Options{Bucket: "onebox_leasetest", TTL: ttl, Retry: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return l, nc.Close
	}, leasetest.Options{Handover: ttl})
}

// TestReleaseDoesNotWaitForTTL: a released lease passes at once, not when
// the key would expire (an hour here).
func TestReleaseDoesNotWaitForTTL(t *testing.T) {
	t.Parallel()
	url := os.Getenv("ONEBOX_TEST_NATS_URL")
	if url == "" {
		t.Skip("ONEBOX_TEST_NATS_URL not set: skipping the NATS lease tests")
	}
	var holders []lease.Locker
	for range 2 {
		nc, err := nats.Connect(url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		l, err := leasenats.New(nc, leasenats.Options{Bucket: "onebox_leasetest_long", TTL: time.Hour, Retry: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		holders = append(holders, l)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	name := "release-" + rand.Text()
	h, err := holders[0].Acquire(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	h, err = holders[1].Acquire(ctx, name)
	if err != nil {
		t.Fatalf("the released lease not taken within 10s (its TTL is an hour): %v", err)
	}
	h.Release(context.Background())
}
