package pgtest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"onebox/internal/pgtest"
)

func TestSchemaIsOwnAndCapped(t *testing.T) {
	t.Parallel()
	u := pgtest.Schema(t, "pgtest")
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxConns != pgtest.MaxConns {
		t.Errorf("MaxConns %d, want %d", cfg.MaxConns, pgtest.MaxConns)
	}
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var schema string
	if err := pool.QueryRow(t.Context(), "select current_schema()").Scan(&schema); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(schema, "t_") {
		t.Fatalf("current schema %q, want the test's own", schema)
	}
	var b []byte
	if err := pool.QueryRow(context.Background(), "select gen_random_bytes(4)").Scan(&b); err != nil || len(b) != 4 {
		t.Fatalf("pgcrypto: %v %v", b, err)
	}
}
