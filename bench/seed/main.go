// Command seed fills a fresh onebox database (a SQLite file, or a
// PostgreSQL one when -db is a postgres:// URL) for bench/run.sh: N
// users through the store (all sharing one precomputed argon2id hash, as
// 100k real hashes would take an hour) and K long-lived sessions, and
// writes the user ids and the session tokens to files, one a line, for
// the wrk scripts.
//
// With -bump it instead changes the bio of the users listed in a file
// (one id a line), which bumps their version, and prints "id version" for
// each: run.sh uses it to prove that the cached-read scenario is served
// from the cache (a cached profile keeps its old ETag).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/google/uuid"

	"onebox/auth"
	"onebox/store"
	"onebox/store/postgres"
	"onebox/store/sqlite"
)

// seedStore is what seed needs of store/sqlite and store/postgres.
type seedStore interface {
	SeedUsers(ctx context.Context, users []store.CreateUserParams) error
	CreateSession(ctx context.Context, s store.Session) error
	UpdateUser(ctx context.Context, p store.UpdateUserParams) (store.User, error)
	Close() error
}

// open opens the SQLite file or, for a postgres:// URL, the PostgreSQL
// database db names, and applies the migrations.
func open(ctx context.Context, db string) (seedStore, error) {
	if strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://") {
		return postgres.New(ctx, postgres.Options{URL: db})
	}
	return sqlite.New(ctx, sqlite.Options{Path: db})
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "seed:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", "", "SQLite database file (created and migrated if missing), or a postgres:// URL")
	users := fs.Int("users", 100000, "users to insert")
	sessions := fs.Int("sessions", 1000, "users (spread evenly) that get one session each")
	batch := fs.Int("batch", 5000, "users per SeedUsers transaction")
	password := fs.String("password", "bench-password", "the password every seeded user shares")
	idsPath := fs.String("ids", "ids.txt", "where to write the user ids, one a line")
	tokensPath := fs.String("tokens", "tokens.txt", "where to write the session tokens, one a line")
	bump := fs.String("bump", "", "instead of seeding: change the bio of the users whose ids this file lists")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *db == "" {
		return errors.New("-db is required")
	}
	if *users < 1 || *batch < 1 || *sessions < 0 || *sessions > *users {
		return fmt.Errorf("want -users ≥ 1, -batch ≥ 1 and 0 ≤ -sessions ≤ -users; got %d, %d, %d", *users, *batch, *sessions)
	}
	st, err := open(ctx, *db)
	if err != nil {
		return err
	}
	defer st.Close()
	if *bump != "" {
		return bumpUsers(ctx, st, *bump, stdout)
	}

	start := time.Now()
	hash, err := auth.NewHasher(auth.DefaultParams, 1).Hash(ctx, *password)
	if err != nil {
		return err
	}
	ids, err := seedUsers(ctx, st, *users, *batch, hash)
	if err != nil {
		return err
	}
	if err := writeLines(*idsPath, ids); err != nil {
		return err
	}
	tokens, err := seedSessions(ctx, st, ids, *sessions)
	if err != nil {
		return err
	}
	if err := writeLines(*tokensPath, tokens); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "seeded %d users and %d sessions in %s\n", len(ids), len(tokens), time.Since(start).Round(time.Millisecond))
	return nil
}

// seedUsers inserts n users in batches and returns their ids in order.
func seedUsers(ctx context.Context, st seedStore, n, batch int, hash string) ([]string, error) {
	ids := make([]string, 0, n)
	now := time.Now().UTC()
	for len(ids) < n {
		ps := make([]store.CreateUserParams, 0, min(batch, n-len(ids)))
		for len(ps) < cap(ps) {
			id, err := uuid.NewV7()
			if err != nil {
				return nil, err
			}
			i := len(ids) + len(ps)
			ps = append(ps, store.CreateUserParams{
				ID:           id.String(),
				Handle:       fmt.Sprintf("user%07d", i),
				DisplayName:  fmt.Sprintf("Bench User %07d", i),
				PasswordHash: hash,
				Now:          now,
			})
		}
		if err := st.SeedUsers(ctx, ps); err != nil {
			return nil, fmt.Errorf("users %d to %d: %w", len(ids), len(ids)+len(ps), err)
		}
		for _, p := range ps {
			ids = append(ids, p.ID)
		}
	}
	return ids, nil
}

// seedSessions gives k users spread evenly over ids one session each,
// valid for ten years, and returns the tokens.
func seedSessions(ctx context.Context, st seedStore, ids []string, k int) ([]string, error) {
	tokens := make([]string, 0, k)
	now := time.Now().UTC()
	for i := range k {
		token, hash := auth.NewToken()
		s := store.Session{TokenHash: hash, UserID: ids[i*len(ids)/k], CreatedAt: now, ExpiresAt: now.AddDate(10, 0, 0)}
		if err := st.CreateSession(ctx, s); err != nil {
			return nil, fmt.Errorf("session %d: %w", i, err)
		}
		tokens = append(tokens, token)
	}
	return tokens, nil
}

func bumpUsers(ctx context.Context, st seedStore, path string, stdout io.Writer) error {
	ids, err := readLines(path)
	if err != nil {
		return err
	}
	bio := "bumped by bench/seed at " + time.Now().UTC().Format(time.RFC3339Nano)
	for _, id := range ids {
		u, err := st.UpdateUser(ctx, store.UpdateUserParams{ID: id, Bio: &bio, Now: time.Now().UTC()})
		if err != nil {
			return fmt.Errorf("bump %s: %w", id, err)
		}
		fmt.Fprintln(stdout, u.ID, u.Version)
	}
	return nil
}

func writeLines(path string, lines []string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, l := range lines {
		w.WriteString(l)
		w.WriteByte('\n')
	}
	return errors.Join(w.Flush(), f.Close())
}

func readLines(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
}
