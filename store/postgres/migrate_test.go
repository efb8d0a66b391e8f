package postgres_test

import (
	"testing"

	"onebox/store/internal/sqlutil"
	"onebox/store/postgres"
)

// TestMigrationsExpandOnly: every migration only expands the schema (or
// is marked as the contract step), since the previous release still
// serves on it while a deploy hands over (README, Deploy). applied are
// the migrations released before this check, which cannot change.
func TestMigrationsExpandOnly(t *testing.T) {
	t.Parallel()
	applied := map[string]string{
		// Its SET NOT NULL would fail the previous release's idempotent
		// uploads (which left expires_at null) until it drained.
		"0004_idempotency_digest": "alter table photo_idempotency alter column expires_at set not null",
	}
	ms, err := postgres.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if err := sqlutil.ExpandOnly(m); err != nil && applied[m.ID()] == "" {
			t.Error(err)
		}
	}
}
