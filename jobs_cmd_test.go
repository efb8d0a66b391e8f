package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"onebox/internal/pgtest"
	"onebox/jobs"
	jobpg "onebox/jobs/postgres"
	jobsqlite "onebox/jobs/sqlite"
	"onebox/store/postgres"
	"onebox/store/sqlite"
)

// TestMigrateAndJobsPostgres: with ONEBOX_DATABASE_URL=postgres://…,
// onebox jobs refuses a database without onebox's schema and leaves it
// so; onebox migrate applies store/postgres's migrations, printing each,
// then says up to date; onebox jobs stats, dead and retry read and
// redrive the queue in PostgreSQL.
func TestMigrateAndJobsPostgres(t *testing.T) {
	t.Parallel()
	pgURL := pgtest.Schema(t, "jobs command")
	env := map[string]string{"ONEBOX_DATABASE_URL": pgURL}

	_, _, err := runCLI(t, []string{"jobs", "stats"}, env)
	if err == nil || !strings.Contains(err.Error(), "lacks migrations 0001_init") || !strings.Contains(err.Error(), "onebox migrate applies them") {
		t.Errorf("jobs stats on an empty schema: %v, want it refused for lacking migrations", err)
	}
	st, err := postgres.New(t.Context(), postgres.Options{URL: pgURL, SkipMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	all, err := st.Pending(t.Context())
	if err != nil || len(all) < 4 || all[0] != "0001_init" {
		t.Fatalf("after jobs stats, pending migrations %v (%v), want all", all, err)
	}

	out, _, err := runCLI(t, []string{"migrate", "-database-url", pgURL}, nil)
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}
	for _, name := range all {
		if !strings.Contains(out, ": applied "+name+"\n") {
			t.Errorf("migrate output lacks %q:\n%s", name, out)
		}
	}
	if out, _, err := runCLI(t, []string{"migrate"}, env); err != nil || !strings.HasSuffix(out, ": up to date\n") || strings.Contains(out, "applied") {
		t.Errorf("migrate again: %v\n%s", err, out)
	}
	if pending, err := st.Pending(t.Context()); err != nil || len(pending) != 0 {
		t.Errorf("after migrate, pending %v (%v)", pending, err)
	}
	if out, _, err := runCLI(t, []string{"jobs", "stats"}, env); err != nil || out != "no jobs\n" {
		t.Errorf("jobs stats of an empty queue: %v %q", err, out)
	}

	// One job queued, one dead.
	q := st.Queue(jobpg.Options{})
	for _, kind := range []string{"pg.queued", "pg.dead"} {
		if err := q.Send(t.Context(), jobs.Message{Kind: kind, Payload: []byte(`{}`)}, jobs.SendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ms, err := q.Receive(t.Context(), "pg.dead", 1, time.Minute)
	if err != nil || len(ms) != 1 {
		t.Fatalf("receive: %v %v", ms, err)
	}
	if err := q.DeadLetter(t.Context(), ms[0].Receipt(), "it died"); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		args []string
		want string // a regexp on stdout
	}{
		{[]string{"jobs", "stats"}, `(?m)^pg\.dead\s+0\s+0\s+1\s.*\n^pg\.queued\s+1\s+0\s+0\s`},
		{[]string{"jobs", "dead"}, `^\{.*"` + regexp.QuoteMeta(ms[0].ID) + `".*"it died".*\}\n$`},
		{[]string{"jobs", "retry", ms[0].ID}, `^1 job\(s\) back in the queue\n$`},
		{[]string{"jobs", "stats"}, `(?m)^pg\.dead\s+1\s+0\s+0\s`},
	}
	for _, s := range steps {
		out, errOut, err := runCLI(t, s.args, env)
		if err != nil || !regexp.MustCompile(s.want).MatchString(out) {
			t.Errorf("%q: err %v\nstdout %q, want it to match %q\nstderr %q", s.args, err, out, s.want, errOut)
		}
	}
}

// TestJobsDeadFilter: onebox jobs dead and retry pick dead jobs by kind
// and by a text of their last error; retry takes exactly one of IDs,
// -kind/-error and -all.
func TestJobsDeadFilter(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := sqlite.New(t.Context(), sqlite.Options{Path: filepath.Join(dir, "onebox.db")})
	if err != nil {
		t.Fatal(err)
	}
	q := st.Queue(jobsqlite.Options{})
	ids := map[string]string{}
	for _, d := range [][2]string{{"a", "timeout talking to storage"}, {"a", "corrupt"}, {"b", "timeout talking to storage"}} {
		if err := q.Send(t.Context(), jobs.Message{Kind: d[0]}, jobs.SendOptions{}); err != nil {
			t.Fatal(err)
		}
		ms, err := q.Receive(t.Context(), d[0], 1, time.Minute)
		if err != nil || len(ms) != 1 {
			t.Fatalf("receive: %v %v", ms, err)
		}
		if err := q.DeadLetter(t.Context(), ms[0].Receipt(), d[1]); err != nil {
			t.Fatal(err)
		}
		ids[d[0]+"/"+d[1]] = ms[0].ID
	}
	st.Close()

	for _, args := range [][]string{
		{"retry"}, {"retry", "-all", "-kind", "a"}, {"retry", "some-id", "-error", "x"}, {"stats", "-kind", "a"},
	} {
		if _, _, err := runCLI(t, append(append([]string{"jobs"}, args...), "-data-dir", dir), nil); err == nil || !strings.Contains(err.Error(), "usage") {
			t.Errorf("jobs %q: %v, want a usage error", args, err)
		}
	}
	steps := []struct {
		args []string
		want string // a regexp on stdout
	}{
		{[]string{"dead", "-kind", "a"}, `^(\{.*"Kind":"a".*\}\n){2}$`},
		{[]string{"dead", "-kind", "a", "-error", "timeout"}, `^\{.*"` + ids["a/timeout talking to storage"] + `".*\}\n$`},
		{[]string{"retry", "-kind", "a", "-error", "timeout"}, `^1 job\(s\) back in the queue\n$`},
		{[]string{"retry", "-error", "timeout"}, `^1 job\(s\) back in the queue\n$`},
		{[]string{"dead"}, `^\{.*"` + ids["a/corrupt"] + `".*\}\n$`},
		{[]string{"stats"}, `(?m)^a\s+1\s+0\s+1\s.*\n^b\s+1\s+0\s+0\s`},
	}
	for _, s := range steps {
		out, errOut, err := runCLI(t, append(append([]string{"jobs"}, s.args...), "-data-dir", dir), nil)
		if err != nil || !regexp.MustCompile(s.want).MatchString(out) {
			t.Errorf("jobs %q: err %v\nstdout %q, want it to match %q\nstderr %q", s.args, err, out, s.want, errOut)
		}
	}
}
