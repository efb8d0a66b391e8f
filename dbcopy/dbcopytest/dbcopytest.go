// Package dbcopytest is the conformance suite of dbcopy.Database: it
// seeds a store with a row in every table, copies it to another backend
// and back, and checks what arrives. Every backend's tests call Run.
package dbcopytest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"onebox/dbcopy"
	"onebox/jobs"
	"onebox/store"
)

// Database is a store that is also a copy end and holds the job queue.
type Database interface {
	store.Store
	dbcopy.Database
}

// Backend opens a new, empty, migrated database and its queue, closed
// when the test ends.
type Backend func(t *testing.T) (Database, jobs.Queue)

// Run seeds a database from from, copies it to one from to and back to
// a second from from, and checks row counts and checksums each way; then
// that a rerun resumes, that a destination holding other data is
// refused untouched, and that new events get new ids after a copy.
func Run(t *testing.T, from, to Backend) {
	t.Helper()
	src, srcQ := from(t)
	Seed(t, src, srcQ)
	mid, _ := to(t)
	back, _ := from(t)

	there := mustCopy(t, src, mid)
	again := mustCopy(t, mid, back)
	for i := range there {
		if there[i].Rows == 0 {
			t.Errorf("%s: no rows seeded", there[i].Name)
		}
		if there[i].Inserted != there[i].Rows || there[i].Checksum != again[i].Checksum || again[i].Rows != there[i].Rows {
			t.Errorf("%s: there %+v, back %+v", there[i].Name, there[i], again[i])
		}
	}

	// A rerun inserts nothing and agrees.
	rerun := mustCopy(t, src, mid)
	for i := range rerun {
		if rerun[i].Inserted != 0 || rerun[i].Checksum != there[i].Checksum {
			t.Errorf("%s: rerun %+v, want nothing inserted and checksum %.12s", rerun[i].Name, rerun[i], there[i].Checksum)
		}
	}

	// What the store reads back from the round trip is what it wrote,
	// to PostgreSQL's microsecond.
	checkSame(t, src, back)

	// The copy is usable: a new event gets an id past the copied ones,
	// and what was queued can be received.
	checkUsable(t, src, mid)

	// A copy cut short half-way through a table resumes: the rerun
	// inserts only the rows the first run did not, and both sides agree.
	part, _ := to(t)
	ctx, cancel := context.WithCancel(t.Context())
	_, err := dbcopy.Copy(ctx, src, part, dbcopy.Options{Batch: 2, Progress: func(table string, copied, _ int64) {
		if table == "photos" && copied == 2 {
			cancel()
		}
	}})
	cancel()
	if err == nil {
		t.Fatal("a copy cancelled after its first batch of photos: got nil error")
	}
	for i, r := range mustCopy(t, src, part) {
		want := int64(0) // users and sessions were copied before the cut
		switch r.Name {
		case "photos":
			want = r.Rows - 2
		case "photo_idempotency", "events", "goqite", "jobs_errors", "jobs_dead":
			want = r.Rows
		}
		if r.Inserted != want || r.Checksum != there[i].Checksum {
			t.Errorf("%s: the resumed copy inserted %d of %d rows (checksum %.12s), want %d (checksum %.12s)",
				r.Name, r.Inserted, r.Rows, r.Checksum, want, there[i].Checksum)
		}
	}

	// A destination holding some of the source's rows, not the first
	// ones, is a copy too: the rest is inserted.
	some, _ := to(t)
	dead := TableNamed(t, "jobs_dead")
	deadRows, err := src.ReadRows(t.Context(), dead, nil, 100)
	if err != nil || len(deadRows) < 2 {
		t.Fatalf("read the source's dead jobs: %v %v", deadRows, err)
	}
	mustWrite(t, some, dead, deadRows[len(deadRows)-1])
	for i, r := range mustCopy(t, src, some) {
		want := r.Rows
		if r.Name == "jobs_dead" {
			want--
		}
		if r.Inserted != want || r.Checksum != there[i].Checksum {
			t.Errorf("%s: a copy onto one of the source's rows inserted %d of %d, want %d", r.Name, r.Inserted, r.Rows, want)
		}
	}

	// A destination that holds other data is refused before anything is
	// written: a row whose key the source lacks, in the last table (so
	// every table is checked before the first is written), and a row
	// under one of the source's keys with other content.
	foreign, _ := to(t)
	mustWrite(t, foreign, dead, []any{"zz-not-the-source", "q", "k", []byte("x"), int64(1), "e", int64(1), time.Now(), time.Now()})
	refused(t, src, foreign, `jobs_dead has key [zz-not-the-source], which the source lacks`)

	conflict, _ := to(t)
	usersT := TableNamed(t, "users")
	first, err := src.ReadRows(t.Context(), usersT, nil, 1)
	if err != nil || len(first) != 1 {
		t.Fatalf("read the source's first user: %v %v", first, err)
	}
	row := append([]any(nil), first[0]...)
	row[4] = "changed in the destination" // bio
	mustWrite(t, conflict, usersT, row)
	refused(t, src, conflict, fmt.Sprintf("users has key [%s] with other content", row[0]))
}

// refused copies src onto dst, wants ErrForeign naming what want says,
// and checks dst's every table is as it was.
func refused(t *testing.T, src, dst dbcopy.Database, want string) {
	t.Helper()
	before := checksums(t, dst)
	_, err := dbcopy.Copy(t.Context(), src, dst, dbcopy.Options{Batch: 2})
	if !errors.Is(err, dbcopy.ErrForeign) || !strings.Contains(err.Error(), want) {
		t.Errorf("copy onto a destination with other data: %v, want ErrForeign: …%s", err, want)
	}
	if after := checksums(t, dst); !reflect.DeepEqual(after, before) {
		t.Errorf("a refused copy changed the destination:\n%v\nwas\n%v", after, before)
	}
}

// checksums is every table's row count and checksum.
func checksums(t *testing.T, db dbcopy.Database) []string {
	t.Helper()
	var out []string
	for _, tb := range dbcopy.Tables() {
		n, sum, err := dbcopy.Checksum(t.Context(), db, tb, 100)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %d %.12s", tb.Name, n, sum))
	}
	return out
}

// TableNamed is the table of dbcopy.Tables named name; the test fails
// without one.
func TableNamed(t *testing.T, name string) dbcopy.Table {
	t.Helper()
	for _, tb := range dbcopy.Tables() {
		if tb.Name == name {
			return tb
		}
	}
	t.Fatalf("no table %s", name)
	return dbcopy.Table{}
}

func mustWrite(t *testing.T, db dbcopy.Database, tb dbcopy.Table, row []any) {
	t.Helper()
	if n, err := db.WriteRows(t.Context(), tb, [][]any{row}); err != nil || n != 1 {
		t.Fatalf("write a row into %s: %d %v", tb.Name, n, err)
	}
}

// checkSame compares every user, photo and event as the stores read them.
func checkSame(t *testing.T, a, b store.Store) {
	t.Helper()
	ctx := t.Context()
	all := func(s store.Store) []any {
		users, err := s.ListUsers(ctx, store.ListUsersParams{Limit: 100, Freshness: store.MustBeFresh})
		if err != nil {
			t.Fatal(err)
		}
		var out []any
		for _, u := range users {
			u.CreatedAt, u.UpdatedAt = micro(u.CreatedAt), micro(u.UpdatedAt)
			out = append(out, u)
			phs, err := s.ListPhotos(ctx, store.ListPhotosParams{OwnerID: u.ID, Limit: 100, Freshness: store.MustBeFresh})
			if err != nil {
				t.Fatal(err)
			}
			for _, ph := range phs {
				ph.CreatedAt, ph.UpdatedAt = micro(ph.CreatedAt), micro(ph.UpdatedAt)
				out = append(out, ph)
			}
			evs, err := s.Events(ctx, store.EventsParams{UserID: u.ID, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs {
				ev.CreatedAt = micro(ev.CreatedAt)
				out = append(out, ev)
			}
		}
		return out
	}
	want, got := all(a), all(b)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("after a round trip the store reads\n%+v\nwant\n%+v", got, want)
	}
}

func micro(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

func mustCopy(t *testing.T, from, to dbcopy.Database) []dbcopy.TableReport {
	t.Helper()
	// A small batch, so every table takes several.
	r, err := dbcopy.Copy(t.Context(), from, to, dbcopy.Options{Batch: 2})
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	if len(r) != len(dbcopy.Tables()) {
		t.Fatalf("%d table reports, want %d", len(r), len(dbcopy.Tables()))
	}
	return r
}

// Seed writes several rows into every table, through the store and the
// queue as the service does: three users with a session, three photos
// and their idempotency keys each, events, queued jobs (keyed, at
// several turns, and one without a key), failing and dead jobs.
func Seed(t *testing.T, st store.Store, q jobs.Queue) {
	t.Helper()
	ctx := t.Context()
	now := time.Date(2026, 1, 2, 3, 4, 5, 678912345, time.UTC)
	job := func(kind string) jobs.Message {
		return jobs.Message{Kind: kind, Payload: []byte(`{"n":1}`), RequestID: "req"}
	}
	keyed := func(m jobs.Message, key string) jobs.Message { m.FairKey = key; return m }
	for i := range 3 {
		u, err := st.CreateUser(ctx, store.CreateUserParams{ID: newID(t), Handle: fmt.Sprintf("Copy%d", i), DisplayName: "Copy", PasswordHash: "h", Now: now})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.CreateSession(ctx, store.Session{TokenHash: fmt.Sprintf("%064d", i), UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		var last store.Photo
		for j := range 3 {
			ph, _, err := st.CreatePhoto(ctx, store.CreatePhotoParams{
				Photo: store.Photo{ID: newID(t), OwnerID: u.ID, Status: store.PhotoProcessing, OriginalKey: fmt.Sprintf("orig/%d-%d", i, j),
					ContentType: "image/png", Size: 10, CreatedAt: now, UpdatedAt: now},
				Idempotency: store.Idempotency{Key: fmt.Sprintf("k%d", j), Digest: "sha256:x", ExpiresAt: now.Add(24 * time.Hour)},
				Job:         keyed(job("copy.process"), u.ID), // as the service keys photo jobs: turns 0, 1, 2
			})
			if err != nil {
				t.Fatal(err)
			}
			last = ph
		}
		if _, err := st.FinishPhoto(ctx, store.FinishPhotoParams{ID: last.ID, Status: store.PhotoReady, Width: 4, Height: 3, Now: now,
			Variants: []store.Variant{{Name: "w128", Key: "v/" + last.ID, Width: 4, Height: 3, Size: 9, ContentType: "image/webp"}}}); err != nil {
			t.Fatal(err)
		}
		avatar := last.ID
		if _, err := st.UpdateUser(ctx, store.UpdateUserParams{ID: u.ID, AvatarID: &avatar, Now: now.Add(time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	// A job without a key, in the same queue: the current turn.
	if err := q.Send(ctx, job("copy.process"), jobs.SendOptions{}); err != nil {
		t.Fatal(err)
	}
	// A failing job (jobs_errors) and dead ones (jobs_dead).
	for _, kind := range []string{"copy.fail", "copy.dead", "copy.dead"} {
		if err := q.Send(ctx, job(kind), jobs.SendOptions{Priority: 2}); err != nil {
			t.Fatal(err)
		}
		ms, err := q.Receive(ctx, kind, 1, time.Minute)
		if err != nil || len(ms) != 1 {
			t.Fatalf("receive %s: %v %v", kind, ms, err)
		}
		if kind == "copy.fail" {
			err = q.Retry(ctx, ms[0].Receipt(), now.Add(time.Hour), "it failed")
		} else {
			err = q.DeadLetter(ctx, ms[0].Receipt(), "it died")
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func checkUsable(t *testing.T, src, dst Database) {
	t.Helper()
	ctx := t.Context()
	users, err := dst.ListUsers(ctx, store.ListUsersParams{Limit: 1, Freshness: store.MustBeFresh})
	if err != nil || len(users) == 0 {
		t.Fatalf("ListUsers: %v %v", users, err)
	}
	last, err := src.LastEventID(ctx, users[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	copied, err := dst.LastEventID(ctx, users[0].ID)
	if err != nil || copied != last {
		t.Fatalf("LastEventID in the copy %d %v, want the source's %d", copied, err, last)
	}
	ph, _, err := dst.CreatePhoto(ctx, store.CreatePhotoParams{
		Photo: store.Photo{ID: newID(t), OwnerID: users[0].ID, Status: store.PhotoProcessing, OriginalKey: "orig/new",
			ContentType: "image/png", Size: 1, CreatedAt: time.Now(), UpdatedAt: time.Now()},
		Job: jobs.Message{Kind: "copy.after"},
	})
	if err != nil {
		t.Fatalf("CreatePhoto in the copy: %v", err)
	}
	evs, err := dst.Events(ctx, store.EventsParams{UserID: users[0].ID, PhotoID: ph.ID, Limit: 10})
	if err != nil || len(evs) != 1 {
		t.Fatalf("Events of the new photo: %v %v", evs, err)
	}
	if evs[0].ID <= last {
		t.Errorf("a new event in the copy got id %d, not past the copied %d", evs[0].ID, last)
	}
}

func newID(t *testing.T) string {
	t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}
