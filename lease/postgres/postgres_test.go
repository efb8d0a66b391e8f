package postgres_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"onebox/internal/pgtest"
	"onebox/lease"
	"onebox/lease/leasetest"
	leasepg "onebox/lease/postgres"
)

// TestConformance runs the suite with holders on one schema; a holder
// dies when the server ends its connection, as it does when the holder's
// process is killed and its socket closes.
func TestConformance(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t, "lease")
	leasetest.Run(t, func(t *testing.T) (lease.Locker, func()) {
		app := "lease-" + rand.Text()
		l, err := leasepg.New(url, leasepg.Options{Retry: 50 * time.Millisecond, Check: 200 * time.Millisecond, ApplicationName: app})
		if err != nil {
			t.Fatal(err)
		}
		return l, func() { terminate(t, url, app) }
	}, leasetest.Options{Handover: time.Second})
}

// TestSchemasDoNotContend: two deployments on schemas of one database
// each hold a lease of the same name.
func TestSchemasDoNotContend(t *testing.T) {
	t.Parallel()
	for range 2 {
		l, err := leasepg.New(pgtest.Schema(t, "lease"), leasepg.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		h, err := l.Acquire(ctx, "relay")
		if err != nil {
			t.Fatal(err)
		}
		defer h.Release(context.Background())
	}
}

func terminate(t *testing.T, url, app string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pc, err := pgxpool.ParseConfig(url) // strips pool_max_conns
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ConnectConfig(ctx, pc.ConnConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "select count(pg_terminate_backend(pid)) from pg_stat_activity where application_name = $1", app).Scan(&n); err != nil || n == 0 {
		t.Fatalf("terminating the holder's connection: %d ended, %v", n, err)
	}
}
