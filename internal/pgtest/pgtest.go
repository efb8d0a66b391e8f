// Package pgtest is what the tests of onebox's PostgreSQL backends share:
// the server at ONEBOX_TEST_POSTGRES_URL (unset: the test skips; set but
// not answering: it fails) and a schema of each test's own, dropped when
// the test ends.
package pgtest

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Env names the variable the tests read the server's URL from.
const Env = "ONEBOX_TEST_POSTGRES_URL"

// URL returns ONEBOX_TEST_POSTGRES_URL, skipping the test without it;
// what names the tests in the skip message ("store", "queue").
func URL(tb testing.TB, what string) string {
	tb.Helper()
	rawURL := os.Getenv(Env)
	if rawURL == "" {
		tb.Skipf("%s not set: skipping the PostgreSQL %s tests", Env, what)
	}
	return rawURL
}

// MaxConns caps each test's pool: the server allows 100 connections,
// shared by every test package that runs at once.
const MaxConns = 4

// Schema makes a schema of the test's own on the server at
// ONEBOX_TEST_POSTGRES_URL and returns a URL whose connections use it
// (search_path=<schema>,public) with pools capped at MaxConns. The
// schema is dropped when the test ends. pgcrypto, which goqite's table
// needs, is created in public once per database, since an extension
// belongs to the database and would go with the first schema it was
// created in.
func Schema(tb testing.TB, what string) string {
	tb.Helper()
	rawURL := URL(tb, what)
	ctx, cancel := context.WithTimeout(tb.Context(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, rawURL)
	if err != nil {
		tb.Fatalf("%s: connect: %v", Env, err)
	}
	defer conn.Close(context.Background())

	name := "t_" + strings.ToLower(rand.Text())
	// Two tests creating the extension at once race on its catalog row;
	// an advisory lock makes them take turns.
	for _, q := range []string{
		"select pg_advisory_lock(8437501)",
		"create extension if not exists pgcrypto with schema public",
		"select pg_advisory_unlock(8437501)",
		"create schema " + name,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			tb.Fatalf("%s: %s: %v", Env, q, err)
		}
	}
	tb.Cleanup(func() { Drop(tb, rawURL, name) })
	return WithParams(tb, rawURL, map[string]string{
		"search_path":    name + ",public",
		"pool_max_conns": fmt.Sprint(MaxConns),
	})
}

// Drop drops schema name and everything in it.
func Drop(tb testing.TB, rawURL, name string) {
	tb.Helper()
	// tb.Context is done by the time cleanups run.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, rawURL)
	if err != nil {
		tb.Errorf("drop schema %s: %v", name, err)
		return
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "drop schema "+name+" cascade"); err != nil {
		tb.Errorf("drop schema %s: %v", name, err)
	}
}

// WithParams returns rawURL with the query parameters set.
func WithParams(tb testing.TB, rawURL string, params map[string]string) string {
	tb.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		tb.Fatalf("%s: %v", Env, err)
	}
	q := u.Query()
	for k, v := range params {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	return u.String()
}
