package nats_test

import (
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
