package pgtest_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"onebox/internal/pgtest"
)

func ping(ctx context.Context, rawURL string) error {
	conn, err := pgx.Connect(ctx, rawURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

func TestStartPrivateStopsAndStarts(t *testing.T) {
	t.Parallel()
	u, c := pgtest.StartPrivate(t)
	ctx := t.Context()
	if err := ping(ctx, u); err != nil {
		t.Fatalf("after start: %v", err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ping(ctx, u); err == nil {
		t.Fatal("stopped cluster still answers")
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ping(ctx, u); err != nil {
		t.Fatalf("after start again: %v", err)
	}
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ping(ctx, u); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

// Not parallel: it sets ReplicaEnv for ReplicaURL.
func TestStartReplicaStreams(t *testing.T) {
	primary := pgtest.URL(t, "replica")
	u, _ := pgtest.StartReplica(t, primary)
	t.Setenv(pgtest.ReplicaEnv, u) // ReplicaURL checks it is a standby
	if got := pgtest.ReplicaURL(t); got != u {
		t.Fatalf("ReplicaURL %q, want %q", got, u)
	}
}
