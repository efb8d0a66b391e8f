package slowquery_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"onebox/correlation"
	"onebox/internal/syncbuf"
	"onebox/ops/slowquery"
	"onebox/store"
)

// lines decodes the JSON lines written to b.
func lines(t *testing.T, b *syncbuf.Buffer) []map[string]any {
	t.Helper()
	out, err := b.JSONLines()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type clock struct{ now atomic.Int64 }

func (c *clock) Now() time.Time      { return time.Unix(0, c.now.Load()) }
func (c *clock) Add(d time.Duration) { c.now.Add(int64(d)) }
func newClock() *clock {
	c := &clock{}
	c.now.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func ev(name string, d time.Duration) store.QueryEvent {
	return store.QueryEvent{Name: name, SQL: "SELECT * FROM " + name + " WHERE id = ?", Duration: d}
}

// TestRateLimitedLines: a storm of one slow query logs one line (with
// its plan) per interval, and the next line counts what was left out;
// fast queries are ignored; every slow one is kept in Recent.
func TestRateLimitedLines(t *testing.T) {
	t.Parallel()
	var logs syncbuf.Buffer
	var explained atomic.Int32
	clk := newClock()
	l := slowquery.New(slowquery.Options{
		Threshold: 100 * time.Millisecond, Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Now: clk.Now,
		Explain: func(_ context.Context, sql string) (string, error) {
			explained.Add(1)
			return "SEARCH " + strings.Fields(sql)[3] + " USING INTEGER PRIMARY KEY (rowid=?)", nil
		},
	})
	ctx := correlation.WithRequestID(context.Background(), "req-7")
	l.Observe(ctx, ev("users", 99*time.Millisecond)) // fast
	for range 20 {
		l.Observe(ctx, ev("users", 150*time.Millisecond))
	}
	l.Observe(ctx, ev("photos", time.Second))
	l.Wait()
	clk.Add(time.Minute)
	l.Observe(ctx, ev("users", 200*time.Millisecond))
	l.Wait()

	lines := lines(t, &logs)
	if len(lines) != 3 || explained.Load() != 3 {
		t.Fatalf("%d lines, %d plans; want 3 and 3: %v", len(lines), explained.Load(), lines)
	}
	var users []map[string]any // the photos line may come first: lines are written by goroutines
	for _, l := range lines {
		if l["query"] == "users" {
			users = append(users, l)
		}
	}
	first, last := users[0], users[1]
	if first["msg"] != "slow query" || first["level"] != "WARN" || first["query"] != "users" || first["request_id"] != "req-7" ||
		first["duration_us"] != 150000.0 || first["sql"] != "SELECT * FROM users WHERE id = ?" || !strings.HasPrefix(first["plan"].(string), "SEARCH users") {
		t.Errorf("first line %v", first)
	}
	if last["suppressed"] != 19.0 || last["duration_us"] != 200000.0 {
		t.Errorf("line after the interval %v: want suppressed 19", last)
	}
	recent := l.Recent()
	if len(recent) != 22 || recent[0].Duration != 200*time.Millisecond || recent[1].Name != "photos" ||
		recent[0].Plan == "" || recent[0].RequestID != "req-7" {
		t.Fatalf("recent: %d, first %+v", len(recent), recent[:2])
	}
}

func TestRecentIsBounded(t *testing.T) {
	t.Parallel()
	l := slowquery.New(slowquery.Options{Threshold: time.Nanosecond, Keep: 5})
	for i := range 12 {
		l.Observe(context.Background(), ev(fmt.Sprint("q", i), time.Millisecond))
	}
	l.Wait()
	recent := l.Recent()
	if len(recent) != 5 || recent[0].Name != "q11" || recent[4].Name != "q7" {
		t.Fatalf("recent %+v", recent)
	}
}

// TestNoPlanFor: statements without a plan are not explained; a failed
// explain is logged as such; the query's error is kept.
func TestNoPlanFor(t *testing.T) {
	t.Parallel()
	var logs syncbuf.Buffer
	l := slowquery.New(slowquery.Options{Threshold: time.Nanosecond, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	l.SetExplain(func(context.Context, string) (string, error) { return "", errors.New("no such table") })
	l.Observe(context.Background(), store.QueryEvent{Name: "tx_begin", SQL: "BEGIN IMMEDIATE", Duration: time.Second, Err: store.ErrBusy})
	l.Observe(context.Background(), ev("gone", time.Second))
	l.Wait()
	byQuery := map[any]map[string]any{}
	for _, m := range lines(t, &logs) {
		byQuery[m["query"]] = m
	}
	if m := byQuery["tx_begin"]; m == nil || m["plan"] != nil || m["plan_error"] != nil || m["error"] != store.ErrBusy.Error() {
		t.Errorf("BEGIN line %v", m)
	}
	if m := byQuery["gone"]; m == nil || m["plan_error"] != "no such table" {
		t.Errorf("failed explain line %v", m)
	}
}

func TestOff(t *testing.T) {
	t.Parallel()
	l := slowquery.New(slowquery.Options{}) // threshold 0
	if l != nil {
		t.Fatal("New with no threshold is not nil")
	}
	l.Observe(context.Background(), ev("q", time.Hour))
	l.SetExplain(nil)
	l.Wait()
	if l.Recent() != nil {
		t.Fatal("a nil Log kept something")
	}
}
