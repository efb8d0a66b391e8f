package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"onebox/store/sqlite"
)

// runCLI runs the command line in process with only env set.
func runCLI(t *testing.T, args []string, env map[string]string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestHelp: onebox help, --help and each command's --help succeed and
// say what they should on stdout.
func TestHelp(t *testing.T) {
	t.Parallel()
	list := []string{"\n  serve ", "\n  migrate ", "\n  config ", "\n  jobs ", "\n  ops ", "\n  version ", "\n  help "}
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, list},
		{[]string{"-h"}, list},
		{[]string{"help"}, list},
		{[]string{"serve", "--help"}, []string{"usage: onebox [serve]", "\n  -addr host:port\n", "\n  -sse-max int\n", "(ONEBOX_SSE_MAX, default 1000)\n"}},
		{[]string{"serve", "--help"}, []string{"open event streams on one instance (503 past it); 0 is no bound\n"}}, // the default not in the usage too
		{[]string{"--addr=:9999", "--help"}, []string{"usage: onebox [serve]"}},
		{[]string{"migrate", "--help"}, []string{"usage: onebox migrate", "\n  -data-dir dir\n", "(ONEBOX_DATA_DIR, default ./data)"}},
		// Types and defaults, once each.
		{[]string{"config", "-help"}, []string{"usage: onebox config", "\n  -cache-ttl duration\n", "\n  -metrics bool\n", "\n  -rate-api rate\n", "\n  -alert-error-rate fraction\n", "(ONEBOX_CACHE_TTL, default 60s)\n"}},
		{[]string{"jobs", "--help"}, []string{"usage: onebox jobs", "retry -all", "\n  -all\n"}},
		{[]string{"jobs", "retry", "--help"}, []string{"usage: onebox jobs"}},
		{[]string{"help", "jobs"}, []string{"usage: onebox jobs"}},
		{[]string{"ops", "--help"}, []string{"usage: onebox ops diagnose", "\n  -admin-addr host:port\n", "\n  -ops-token string\n"}},
		{[]string{"ops", "diagnose", "--help"}, []string{"usage: onebox ops diagnose"}},
		{[]string{"version", "--help"}, []string{"usage: onebox version"}},
		{[]string{"backup", "--help"}, []string{"usage: onebox backup -to DIR|s3://bucket/prefix?endpoint=…&region=…", "AWS_ACCESS_KEY_ID"}},
		{[]string{"restore", "--help"}, []string{"usage: onebox restore -from DIR|s3://bucket/prefix?endpoint=…&region=…"}},
		{[]string{"help", "--help"}, list},
	}
	for _, tt := range tests {
		out, _, err := runCLI(t, tt.args, nil)
		if err != nil {
			t.Errorf("%v: %v", tt.args, err)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: output lacks %q:\n%s", tt.args, w, out)
			}
		}
		if strings.Contains(out, "default \"") {
			t.Errorf("%v: a default is shown quoted:\n%s", tt.args, out)
		}
	}
	// ops reads only its own settings: the others are no flags of it.
	if out, _, _ := runCLI(t, []string{"ops", "--help"}, nil); strings.Contains(out, "-cache-url") {
		t.Errorf("ops --help lists -cache-url:\n%s", out)
	}
}

// TestFlagsAnywhere: a setting's flag works before or after the
// subcommand's verb, as -flag X, -flag=X or --flag=X, and wins over
// the variable; an unreachable instance's error says what to set.
func TestFlagsAnywhere(t *testing.T) {
	t.Parallel()
	closed, other := freeAddr(t), freeAddr(t) // nothing listens at either
	env := map[string]string{"ONEBOX_ADMIN_ADDR": other}
	for _, args := range [][]string{
		{"ops", "diagnose", "-admin-addr", closed},
		{"ops", "diagnose", "--admin-addr", closed},
		{"ops", "-admin-addr", closed, "diagnose"},
		{"ops", "-admin-addr=" + closed, "diagnose"},
		{"ops", "--admin-addr=" + closed, "diagnose"},
		{"ops", "diagnose", "--admin-addr=" + closed},
	} {
		_, _, err := runCLI(t, args, env)
		want := "cannot reach the admin listener at " + closed + " (set ONEBOX_ADMIN_ADDR or -admin-addr"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", args, err, want)
		}
	}
	for _, tt := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"ops", "diagnose", "extra"}, "usage: onebox ops diagnose"},
		{[]string{"ops", "diagnose", "-cache-url", "none"}, "flag provided but not defined: -cache-url"},
		{[]string{"ops", "--", "-admin-addr", "diagnose"}, "usage: onebox ops diagnose"}, // after --, no flags
	} {
		if _, _, err := runCLI(t, tt.args, env); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%q: err %v, want %q", tt.args, err, tt.wantErr)
		}
	}
}

// TestBadValueNamesItsSource: a bad value is reported under the flag's
// name when given as a flag, under the variable's when in the
// environment.
func TestBadValueNamesItsSource(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args    []string
		env     map[string]string
		wantErr string
	}{
		{[]string{"config", "-sse-max", "x"}, nil, "-sse-max: want a whole number"},
		{[]string{"config", "--sse-max=-1"}, nil, "-sse-max: want a whole number"},
		{[]string{"config"}, map[string]string{"ONEBOX_SSE_MAX": "x"}, "ONEBOX_SSE_MAX: want a whole number"},
		{[]string{"config", "-sse-max", "x"}, map[string]string{"ONEBOX_SSE_MAX": "5"}, "-sse-max: want a whole number"},
		{[]string{"config", "-cache-url", "memcache://x"}, nil, "-cache-url: unknown scheme"},
		{[]string{"config"}, map[string]string{"ONEBOX_CACHE_URL": "memcache://x"}, "ONEBOX_CACHE_URL: unknown scheme"},
		{[]string{"config", "-cache-ttl", "0s"}, nil, "-cache-ttl: must be positive"},
		{[]string{"config", "-metrics=maybe"}, nil, "-metrics: want true or false"},
		{[]string{"serve", "-ops-token", "short"}, nil, "-ops-token: want at least 32 bytes"},
		// A command that takes no arguments names the first one it got.
		// (An address no one can listen on: serve must not start if the
		// check is ever lost.)
		{[]string{"serve", "-addr", "256.0.0.1:1", "now"}, nil, `serve: unexpected argument "now"`},
		{[]string{"migrate", "-data-dir", t.TempDir(), "up"}, nil, `migrate: unexpected argument "up"`},
		{[]string{"config", "all"}, nil, `config: unexpected argument "all"`},
		{[]string{"backup", "-to", t.TempDir(), "x"}, nil, `backup: unexpected argument "x"`},
		{[]string{"restore", "-from", t.TempDir(), "x"}, nil, `restore: unexpected argument "x"`},
	} {
		_, _, err := runCLI(t, tt.args, tt.env)
		if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
			t.Errorf("%q %v: err %v, want it to start %q", tt.args, tt.env, err, tt.wantErr)
		}
	}
}

// TestJobsNeverCreatesOrMigrates: onebox jobs, pointed at a missing
// database, says which path it looked for and leaves nothing behind;
// pointed at one not migrated, it refuses and leaves it so; migrate
// prints what it applied; an empty queue says "no jobs".
func TestJobsNeverCreatesOrMigrates(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "nowhere")
	for _, args := range [][]string{{"stats"}, {"dead"}, {"retry", "-all"}, {"retry", "some-id"}} {
		args = append([]string{"jobs"}, append(args, "-data-dir", missing)...)
		_, _, err := runCLI(t, args, nil)
		if want := "no database at " + filepath.Join(missing, "onebox.db"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", args, err, want)
		}
		if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%q created %s (%v)", args, missing, err)
		}
	}

	dir := t.TempDir()
	db := filepath.Join(dir, "onebox.db")
	if err := os.WriteFile(db, nil, 0o600); err != nil { // SQLite would make it a database
		t.Fatal(err)
	}
	if _, _, err := runCLI(t, []string{"jobs", "stats", "-data-dir", dir}, nil); err == nil || !strings.Contains(err.Error(), "no database at "+db) {
		t.Errorf("jobs stats on an empty file: %v", err)
	}
	if fi, err := os.Stat(db); err != nil || fi.Size() != 0 {
		t.Fatalf("jobs stats wrote to the empty file: %v %v", fi, err)
	}
	// A database without the schema stays without it.
	st, err := sqlite.New(t.Context(), sqlite.Options{Path: db, SkipMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, _, err := runCLI(t, []string{"jobs", "stats", "-data-dir", dir}, nil); err == nil || !strings.Contains(err.Error(), "lacks migrations 0001_init") {
		t.Errorf("jobs stats on an unmigrated database: %v", err)
	}
	if st, err = sqlite.New(t.Context(), sqlite.Options{Path: db, SkipMigrate: true}); err != nil {
		t.Fatal(err)
	}
	pending, err := st.Pending(t.Context())
	st.Close()
	if err != nil || len(pending) == 0 || pending[0] != "0001_init" {
		t.Fatalf("after jobs stats, pending migrations %v (%v), want all", pending, err)
	}

	steps := []struct {
		args            []string
		wantOut, notOut string
		wantErrOut      string
	}{
		{args: []string{"migrate", "-data-dir", dir}, wantOut: db + ": applied 0001_init\n", notOut: "up to date"},
		{args: []string{"migrate", "--data-dir=" + dir}, wantOut: db + ": up to date\n", notOut: "applied"},
		{args: []string{"jobs", "stats", "-data-dir", dir}, wantOut: "no jobs\n", notOut: "KIND"},
		{args: []string{"jobs", "-data-dir", dir, "dead"}, wantErrOut: "no jobs\n"},
		{args: []string{"jobs", "retry", "-all", "-data-dir", dir}, wantOut: "0 job(s) back in the queue\n"},
	}
	for _, st := range steps {
		out, errOut, err := runCLI(t, st.args, nil)
		if err != nil || !strings.Contains(out, st.wantOut) || st.notOut != "" && strings.Contains(out, st.notOut) || !strings.Contains(errOut, st.wantErrOut) {
			t.Errorf("%q: err %v\nstdout %q\nstderr %q", st.args, err, out, errOut)
		}
	}
}

// TestListenBeforeCreating: an address that cannot be listened on stops
// serve before it makes the data directory or a database, and the error
// names the setting as it was given.
func TestListenBeforeCreating(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	busy := taken.Addr().String()
	for _, tt := range []struct {
		args    []string
		env     map[string]string
		wantErr string
	}{
		{[]string{"serve"}, map[string]string{"ONEBOX_ADDR": busy, "ONEBOX_ADMIN_ADDR": ""}, "ONEBOX_ADDR: listen tcp " + busy},
		{[]string{"serve", "-addr", busy, "-admin-addr="}, nil, "-addr: listen tcp " + busy},
		{[]string{"serve", "-addr", "127.0.0.1:0", "-admin-addr", busy}, nil, "-admin-addr: listen tcp " + busy},
		{[]string{"serve", "-addr", "not an address", "-admin-addr="}, nil, "-addr: listen tcp"},
	} {
		data := filepath.Join(t.TempDir(), "data")
		args := append(tt.args, "-data-dir", data)
		_, _, err := runCLI(t, args, tt.env)
		if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
			t.Errorf("%q: err %v, want it to start %q", args, err, tt.wantErr)
		}
		if _, err := os.Stat(data); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%q: %s exists (%v)", args, data, err)
		}
	}
}
