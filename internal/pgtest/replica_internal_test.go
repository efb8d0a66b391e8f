package pgtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestConcurrentReplicaStartsKeepTheirSlots: a replica.sh start that runs
// while another one's replica is between its pg_basebackup, which made
// its slot, and its first connection with it must not drop that slot as
// a stale one; both replicas stream. The primary is the test's own, so
// no other package's replica is in the way.
func TestConcurrentReplicaStartsKeepTheirSlots(t *testing.T) {
	t.Parallel()
	primary, _ := StartPrivate(t)
	a, b := newReplica(t, primary), newReplica(t, primary)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	startedA := make(chan error, 1)
	go func() { startedA <- a.sh(ctx, "start") }()
	// The moment of risk: a's pg_basebackup is done (it writes
	// standby.signal last), and its replica has not connected with the
	// slot yet. (pg_basebackup's own WAL stream uses the slot before.)
	slot := fmt.Sprintf("onebox_replica_%d", a.Port)
	conn, err := pgx.Connect(ctx, primary)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for inactive := false; !inactive; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-startedA:
			t.Fatalf("a's start ended (%v) before the test saw its slot unused", err)
		default:
		}
		if _, err := os.Stat(filepath.Join(a.Dir, "standby.signal")); err != nil {
			continue
		}
		err := conn.QueryRow(ctx, `select exists (select from pg_replication_slots where slot_name = $1 and not active)`, slot).Scan(&inactive)
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := b.sh(ctx, "start"); err != nil {
		t.Fatalf("b: %v", err)
	}
	if err := <-startedA; err != nil {
		t.Fatalf("a, started while b's start ran: %v", err)
	}
}
