package redis_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"onebox/cache"
	"onebox/cache/cachetest"
	rediscache "onebox/cache/redis"
	"onebox/internal/redisconn"
	"onebox/internal/redisconn/redistest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	client := redistest.Client(t, "cache")
	cachetest.Run(t, func(t *testing.T) cache.Cache {
		return rediscache.New(client, rediscache.Options{Prefix: redistest.Prefix(t, client)})
	})
}

// The prefix is applied: the entry is a Redis key under it, with the TTL.
func TestPrefix(t *testing.T) {
	t.Parallel()
	client := redistest.Client(t, "cache")
	prefix := redistest.Prefix(t, client)
	c := rediscache.New(client, rediscache.Options{Prefix: prefix})
	if err := c.Set(t.Context(), "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := client.Get(t.Context(), prefix+"k").Bytes(); err != nil || !bytes.Equal(v, []byte("v")) {
		t.Fatalf("GET %sk = %q, %v; want v", prefix, v, err)
	}
	if ttl := client.PTTL(t.Context(), prefix+"k").Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("PTTL %sk = %v, want in (0, 1m]", prefix, ttl)
	}
	if n := client.Exists(t.Context(), "k").Val(); n != 0 {
		t.Fatal("the key was also stored without the prefix")
	}
}

func TestDefaultPrefix(t *testing.T) {
	t.Parallel()
	client := redistest.Client(t, "cache")
	c := rediscache.New(client, rediscache.Options{})
	key := "test-default-prefix:" + rand.Text()
	t.Cleanup(func() { client.Del(context.Background(), rediscache.DefaultPrefix+key) })
	if err := c.Set(t.Context(), key, []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if n := client.Exists(t.Context(), rediscache.DefaultPrefix+key).Val(); n != 1 {
		t.Fatalf("%s%s does not exist", rediscache.DefaultPrefix, key)
	}
}

func TestSetRejectsNonPositiveTTL(t *testing.T) {
	t.Parallel()
	client := redistest.Client(t, "cache")
	c := rediscache.New(client, rediscache.Options{Prefix: redistest.Prefix(t, client)})
	for _, ttl := range []time.Duration{0, -time.Second} {
		if err := c.Set(t.Context(), "k", []byte("v"), ttl); err == nil {
			t.Fatalf("Set with ttl %v succeeded", ttl)
		}
	}
	if _, err := c.Get(t.Context(), "k"); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Get after rejected Sets: %v, want ErrNotFound", err)
	}
}

// A TTL under Redis's millisecond is kept for a millisecond, not forever.
func TestSubMillisecondTTL(t *testing.T) {
	t.Parallel()
	client := redistest.Client(t, "cache")
	prefix := redistest.Prefix(t, client)
	c := rediscache.New(client, rediscache.Options{Prefix: prefix})
	if err := c.Set(t.Context(), "k", []byte("v"), time.Microsecond); err != nil {
		t.Fatal(err)
	}
	if ttl := client.PTTL(t.Context(), prefix+"k").Val(); ttl == -1 {
		t.Fatal("the key has no expiry")
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	rawURL := redistest.URL(t, "cache")
	prefix := "onebox-test:" + rand.Text() + ":"
	c, err := rediscache.Open(t.Context(), rawURL, rediscache.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	// A failure below leaves the key for its minute.
	if err := c.Set(t.Context(), "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(t.Context(), "k"); err != nil || string(v) != "v" {
		t.Fatalf("Get = %q, %v; want v", v, err)
	}
	if err := c.Delete(t.Context(), "k"); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.Get(t.Context(), "k"); err == nil {
		t.Fatal("Get after Close succeeded")
	}
}

// New leaves the client to its owner: Close does not close it.
func TestCloseLeavesClientOfNew(t *testing.T) {
	t.Parallel()
	client := redistest.Client(t, "cache")
	if err := rediscache.New(client, rediscache.Options{}).Close(); err != nil {
		t.Fatal(err)
	}
	if err := client.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("the client was closed: %v", err)
	}
}

func BenchmarkGet(b *testing.B) {
	client := redistest.Client(b, "cache")
	cachetest.BenchGet(b, rediscache.New(client, rediscache.Options{Prefix: redistest.Prefix(b, client)}))
}

// Open on a Redis that does not answer returns a value whose calls fail
// (so a service can start during an outage) and an error saying so. No
// Redis is needed.
func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	x, err := rediscache.Open(t.Context(), "redis://127.0.0.1:1/0", rediscache.Options{})
	if !errors.Is(err, redisconn.ErrUnreachable) || x == nil {
		t.Fatalf("Open: %v, %v; want a value and ErrUnreachable", x, err)
	}
	defer x.Close()
	_, err = x.Get(t.Context(), "k")
	if err == nil {
		t.Fatal("a call to an unreachable Redis succeeded")
	}
}
