// Command backlog enqueues a backlog of jobs straight into a onebox
// SQLite database, running or not, as a second writer on the file (WAL,
// busy_timeout, BEGIN IMMEDIATE, as store/sqlite opens it): -n jobs,
// -batch a transaction. It is the enqueue half of bench/backlog.sh.
//
//	go run ./bench/backlog -db data/onebox.db -n 100000
//
// The jobs are media.delete jobs (photos.KindCleanup) for one key each,
// under the prefix "bench/backlog/", that no file has: onebox's own
// handler runs them (the key is checked, the delete finds nothing and
// returns), so each costs the queue's whole path (receive, the handler's
// goroutine, heartbeat, ack through the one writer) and almost nothing
// besides. What a backlog adds to a busy API beyond its jobs' own work is
// that path; a photo's own CPU is measured by bench/upload -pipeline.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite"

	"onebox/jobs"
	jobsqlite "onebox/jobs/sqlite"
	"onebox/photos"
)

func main() {
	path := flag.String("db", "data/onebox.db", "the SQLite database of onebox (migrated: start onebox once first)")
	n := flag.Int("n", 100_000, "jobs to enqueue")
	batch := flag.Int("batch", 1000, "jobs a transaction")
	flag.Parse()
	if err := run(context.Background(), *path, *n, *batch); err != nil {
		fmt.Fprintln(os.Stderr, "backlog:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, path string, n, batch int) error {
	if _, err := os.Stat(path); err != nil {
		return err // the driver would create an empty database
	}
	writer, err := sql.Open("sqlite", path+"?"+strings.Join([]string{
		"_pragma=busy_timeout(10000)", "_pragma=journal_mode(WAL)", "_pragma=synchronous(NORMAL)",
		"_pragma=foreign_keys(1)", "_txlock=immediate",
	}, "&"))
	if err != nil {
		return err
	}
	defer writer.Close()
	writer.SetMaxOpenConns(1)
	sender := jobsqlite.NewSender(writer)
	start := time.Now()
	for done := 0; done < n; {
		tx, err := writer.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		for range min(batch, n-done) {
			b, _ := json.Marshal(photos.CleanupPayload{Keys: []string{"bench/backlog/" + strconv.Itoa(done)}})
			if err := sender.SendTx(ctx, tx, jobs.Message{Kind: photos.KindCleanup, Payload: b}, jobs.SendOptions{}); err != nil {
				return errors.Join(err, tx.Rollback())
			}
			done++
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	fmt.Printf("enqueued %d %s jobs in %s\n", n, photos.KindCleanup, time.Since(start).Round(time.Millisecond))
	return nil
}
