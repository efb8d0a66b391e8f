package postgres_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"onebox/internal/pgtest"
	"onebox/notify"
	"onebox/notify/notifytest"
	"onebox/notify/postgres"
)

// channels gives each test's hubs a channel of their own: NOTIFY is
// database-wide, and the tests run at once.
var channels atomic.Int64

func newChannel(t *testing.T) string {
	return fmt.Sprintf("onebox_test_%d_%d", time.Now().UnixNano(), channels.Add(1))
}

// open opens a hub on channel and waits until it listens.
func open(t *testing.T, url, channel string) *postgres.Hub {
	t.Helper()
	h, err := postgres.Open(url, postgres.Options{Channel: channel, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	notifytest.WaitConnected(t, h)
	return h
}

func TestConformance(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t, "notify hub")
	notifytest.Run(t, func(t *testing.T) notify.Hub { return open(t, url, newChannel(t)) })
}

func TestShared(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t, "notify hub")
	notifytest.RunShared(t, func(t *testing.T) (notify.Hub, notify.Hub) {
		ch := newChannel(t)
		return open(t, url, ch), open(t, url, ch)
	})
}

// TestReconnect ends the listening connection from the server's side: the
// hub drops its subscribers, since notifications may have been lost, then
// listens again, and a new subscription is woken.
func TestReconnect(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t, "notify hub")
	channel := newChannel(t)
	h := open(t, url, channel)
	notifytest.Reconnect(t, h, func(t *testing.T) {
		conn, err := pgx.Connect(t.Context(), url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var ended int
		err = conn.QueryRow(t.Context(), `select count(pg_terminate_backend(pid)) from pg_stat_activity
			where pid <> pg_backend_pid() and query = $1`, "listen "+pgx.Identifier{channel}.Sanitize()).Scan(&ended)
		if err != nil || ended != 1 {
			t.Fatalf("terminated %d listeners (%v), want 1", ended, err)
		}
	}, nil)
}
