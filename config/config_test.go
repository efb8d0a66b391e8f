package config_test

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"onebox/config"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoadDefaults(t *testing.T) {
	t.Parallel()
	c, err := config.Load(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":8080" || c.AdminAddr != "127.0.0.1:8081" || c.DatabaseURL != "sqlite:data/onebox.db" ||
		c.CacheURL != "memory://" || c.RateAPI != (config.Rate{Limit: 300, Window: time.Minute}) || c.ShutdownDelay != 0 ||
		!c.Metrics || !c.Tracing || c.SlowQuery != 100*time.Millisecond || c.JobDeadRetention != 30*24*time.Hour || c.JobDeadMax != 100000 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestFlagBeatsEnv(t *testing.T) {
	t.Parallel()
	c, err := config.Load([]string{"-addr", ":9000"}, env(map[string]string{"ONEBOX_ADDR": ":7000", "ONEBOX_DATA_DIR": "/srv/x"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":9000" || c.DatabaseURL != "sqlite:/srv/x/onebox.db" {
		t.Fatalf("got addr %q db %q", c.Addr, c.DatabaseURL)
	}
}

// onebox is the serve command with a table of backends' schemes, as
// main gives it.
var onebox = config.Command{Name: "onebox", Schemes: map[string][]string{
	"ONEBOX_DATABASE_URL": {"sqlite", "postgres"}, "ONEBOX_CACHE_URL": {"memory", "none"},
	"ONEBOX_QUEUE_URL": {"", "nats"}, "ONEBOX_MEDIA_URL": {"file", "s3"},
}}

func TestLoadErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	tests := []struct{ key, val string }{
		{"ONEBOX_CACHE_URL", "memcached://x"},
		{"ONEBOX_CACHE_URL", "://bad"},
		{"ONEBOX_DATABASE_URL", "mysql://x"},
		{"ONEBOX_DATABASE_URL", "sqlite:"},
		{"ONEBOX_LIMITER_URL", "redis://%zz"},
		{"ONEBOX_RATE_API", "300"},
		{"ONEBOX_RATE_API", "0/1m"},
		{"ONEBOX_DRAIN_TIMEOUT", "soon"},
		{"ONEBOX_JOB_DEAD_RETENTION", "-1h"},
		{"ONEBOX_JOB_DEAD_RETENTION", "a month"},
		{"ONEBOX_JOB_DEAD_MAX", "-1"},
		{"ONEBOX_JOB_DEAD_MAX", "lots"},
		{"ONEBOX_TRUSTED_PROXIES", "10.0.0.0/33"},
		{"ONEBOX_LOG_LEVEL", "loud"},
		{"ONEBOX_METRICS", "maybe"},
		{"ONEBOX_SLOW_QUERY", "slow"},
		{"ONEBOX_CACHE_SIZE", "-1"},
		{"ONEBOX_OPS_TOKEN", "s3cret"},
		{"ONEBOX_OPS_TOKEN", strings.Repeat("x", 31)},
		{"ONEBOX_DEVICE_KEY", strings.Repeat("x", 31)},
		{"ONEBOX_DEVICE_TTL", "0s"},
		{"ONEBOX_RATE_AUTH_DEVICE", "10"},
		{"ONEBOX_RATE_JOB_PROCESS", "600"},
		{"ONEBOX_RATE_JOB_CLEANUP", "-1/1m"},
		{"ONEBOX_PUBLIC_URL", "photos.example.com"},
		{"ONEBOX_PUBLIC_URL", "ftp://photos.example.com"},
		{"ONEBOX_PUBLIC_URL", "https://"},
		{"ONEBOX_PUBLIC_URL", "https://photos.example.com/app"},
		{"ONEBOX_PUBLIC_URL", "https://photos.example.com/?x=1"},
		{"ONEBOX_PUBLIC_URL", "https://photos.example.com/#top"},
		{"ONEBOX_PUBLIC_URL", "https://user@photos.example.com"},
		{"ONEBOX_PUBLIC_URL", "https://photos.example.com:"},
		{"ONEBOX_PUBLIC_URL", "https://photos.example.com:99999"},
		{"ONEBOX_BODY_TIMEOUT", "0s"},
		{"ONEBOX_SSE_MAX", "-1"},
		{"ONEBOX_MEDIA_URL", "gs://bucket"},
		{"ONEBOX_MEDIA_PUBLIC_URL", "cdn.example.com/media/"},
		{"ONEBOX_MEDIA_PUBLIC_URL", "ftp://cdn.example.com/media/"},
		{"ONEBOX_MEDIA_PUBLIC_URL", "https://cdn.example.com/media/?v=1"},
		{"ONEBOX_MEDIA_PUBLIC_URL", "https://user@cdn.example.com/"},
	}
	for _, tt := range tests {
		_, _, err := config.Parse(onebox, nil, env(map[string]string{tt.key: tt.val}), io.Discard)
		if err == nil || !strings.HasPrefix(err.Error(), tt.key+":") {
			t.Errorf("%s=%q: err = %v, want one naming %s", tt.key, tt.val, err, tt.key)
		}
	}
}

func TestPrintRedacts(t *testing.T) {
	t.Parallel()
	c, err := config.Load(nil, env(map[string]string{"ONEBOX_DATABASE_URL": "sqlite:/tmp/x.db?token=hunter2", "ONEBOX_TRUSTED_PROXIES": "10.0.0.1/8, ::1/128"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	c.Print(&b)
	out := b.String()
	if strings.Contains(out, "hunter2") || !strings.Contains(out, "ONEBOX_TRUSTED_PROXIES=10.0.0.1/8, ::1/128") || !strings.Contains(out, "ONEBOX_DRAIN_TIMEOUT=30s") {
		t.Fatalf("config output:\n%s", out)
	}
	if got := len(c.TrustedProxies); got != 2 || c.TrustedProxies[0].String() != "10.0.0.0/8" {
		t.Fatalf("proxies %v", c.TrustedProxies)
	}
}

func TestEmptyAdminAddrTurnsItOff(t *testing.T) {
	t.Parallel()
	c, err := config.Load(nil, env(map[string]string{"ONEBOX_ADMIN_ADDR": "", "ONEBOX_ADDR": ""}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.AdminAddr != "" || c.Addr != ":8080" {
		t.Fatalf("admin %q addr %q: an empty ONEBOX_ADMIN_ADDR turns the listener off; other empty variables take their default", c.AdminAddr, c.Addr)
	}
}

// TestJobRates: a job kind's rate is off by default and with 0, and
// otherwise a policy like the API's.
func TestJobRates(t *testing.T) {
	t.Parallel()
	for val, want := range map[string]config.Rate{"": {}, "0": {}, "600/1m": {Limit: 600, Window: time.Minute}} {
		vars := map[string]string{}
		if val != "" {
			vars["ONEBOX_RATE_JOB_PROCESS"] = val
		}
		c, err := config.Load(nil, env(vars), io.Discard)
		if err != nil || c.RateJobProcess != want || c.RateJobCleanup != (config.Rate{}) {
			t.Errorf("ONEBOX_RATE_JOB_PROCESS=%q: %v and cleanup %v, %v; want %v and none", val, c.RateJobProcess, c.RateJobCleanup, err, want)
		}
	}
}

// TestDecodeMemory: 0, the default, leaves the budget to main (half the
// soft memory limit); a negative budget is an error.
func TestDecodeMemory(t *testing.T) {
	t.Parallel()
	for val, want := range map[string]int64{"": 0, "0": 0, "1073741824": 1 << 30} {
		vars := map[string]string{}
		if val != "" {
			vars["ONEBOX_DECODE_MEMORY"] = val
		}
		c, err := config.Load(nil, env(vars), io.Discard)
		if err != nil || c.DecodeMemory != want {
			t.Errorf("ONEBOX_DECODE_MEMORY=%q: %d, %v; want %d", val, c.DecodeMemory, err, want)
		}
	}
	_, err := config.Load(nil, env(map[string]string{"ONEBOX_DECODE_MEMORY": "-1"}), io.Discard)
	if err == nil || !strings.HasPrefix(err.Error(), "ONEBOX_DECODE_MEMORY:") {
		t.Errorf("ONEBOX_DECODE_MEMORY=-1: %v, want an error naming it", err)
	}
}

// TestJobDeadMax: 0 turns the count bound off; the flag sets it too.
func TestJobDeadMax(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		vars map[string]string
		want int
	}{
		{nil, map[string]string{"ONEBOX_JOB_DEAD_MAX": "0"}, 0},
		{nil, map[string]string{"ONEBOX_JOB_DEAD_MAX": "5000"}, 5000},
		{[]string{"-job-dead-max", "7"}, nil, 7},
	}
	for _, tt := range tests {
		c, err := config.Load(tt.args, env(tt.vars), io.Discard)
		if err != nil || c.JobDeadMax != tt.want {
			t.Errorf("Load(%q, %v): JobDeadMax %d, %v; want %d", tt.args, tt.vars, c.JobDeadMax, err, tt.want)
		}
	}
}

// TestSecretsNameTheFlag: a short secret is refused at start-up with an
// error naming both ways to set it; 32 bytes are enough.
func TestSecretsNameTheFlag(t *testing.T) {
	t.Parallel()
	for name, flag := range map[string]string{"ONEBOX_OPS_TOKEN": "-ops-token", "ONEBOX_DEVICE_KEY": "-device-key"} {
		_, err := config.Load(nil, env(map[string]string{name: "s3cret"}), io.Discard)
		if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), flag) {
			t.Errorf("%s=s3cret: err = %v, want one naming %s and %s", name, err, name, flag)
		}
		if _, err := config.Load(nil, env(map[string]string{name: strings.Repeat("x", 32)}), io.Discard); err != nil {
			t.Errorf("%s of 32 bytes: %v", name, err)
		}
	}
}

func TestPublicURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                                "",
		"https://photos.example.com":      "https://photos.example.com",
		"https://Photos.Example.COM/":     "https://photos.example.com",
		"HTTPS://photos.example.com:443":  "https://photos.example.com",
		"http://photos.example.com:80":    "http://photos.example.com",
		"https://photos.example.com:8443": "https://photos.example.com:8443",
		"http://[::1]:8080":               "http://[::1]:8080",
	} {
		c, err := config.Load(nil, env(map[string]string{"ONEBOX_PUBLIC_URL": in}), io.Discard)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if c.PublicURL != want {
			t.Errorf("%q: origin %q, want %q", in, c.PublicURL, want)
		}
	}
}

// TestParse: flags and arguments interleave ("--" ends the flags), a
// command reads only its settings, and a value's error names its flag
// or its variable, whichever gave it.
func TestParse(t *testing.T) {
	t.Parallel()
	ops := config.Command{Name: "onebox ops", Settings: []string{"ONEBOX_ADMIN_ADDR"}}
	tests := []struct {
		cmd      config.Command
		args     []string
		env      map[string]string
		wantRest string
		wantAddr string
		wantErr  string
	}{
		{cmd: ops, args: []string{"diagnose", "-admin-addr", "h:1"}, wantRest: "diagnose", wantAddr: "h:1"},
		{cmd: ops, args: []string{"-admin-addr", "h:1", "diagnose"}, wantRest: "diagnose", wantAddr: "h:1"},
		{cmd: ops, args: []string{"--admin-addr=h:1", "a", "b"}, env: map[string]string{"ONEBOX_ADMIN_ADDR": "e:2"}, wantRest: "a b", wantAddr: "h:1"},
		{cmd: ops, args: []string{"a"}, env: map[string]string{"ONEBOX_ADMIN_ADDR": "e:2"}, wantRest: "a", wantAddr: "e:2"},
		{cmd: ops, args: []string{"a", "--", "-admin-addr=h:1", "-admin-addr=h:2"}, wantRest: "a -admin-addr=h:1 -admin-addr=h:2", wantAddr: "127.0.0.1:8081"},
		// Not its setting: neither a flag nor read.
		{cmd: ops, args: []string{"-addr", ":1"}, wantErr: "flag provided but not defined: -addr"},
		{cmd: ops, env: map[string]string{"ONEBOX_SSE_MAX": "x", "ONEBOX_CACHE_URL": "bad://"}, wantAddr: "127.0.0.1:8081"},
		{cmd: config.Command{Name: "onebox"}, args: []string{"-sse-max", "x"}, wantErr: "-sse-max: want a whole number"},
		{cmd: config.Command{Name: "onebox"}, env: map[string]string{"ONEBOX_SSE_MAX": "x"}, wantErr: "ONEBOX_SSE_MAX: want a whole number"},
		{cmd: onebox, args: []string{"-database-url", "mysql://x"}, wantErr: "-database-url: unknown scheme"},
		{cmd: config.Command{Name: "onebox"}, args: []string{"-database-url", "mysql://x"}}, // no table: any scheme
		{cmd: config.Command{Name: "onebox"}, args: []string{"-session-ttl=0s"}, wantErr: "-session-ttl: must be positive"},
		{cmd: onebox, args: []string{"-queue-url", "nats://127.0.0.1:4222?stream=J"}, wantRest: ""},
		{cmd: onebox, args: []string{"-queue-url", "amqp://x"}, wantErr: "-queue-url: unknown scheme"},
		{cmd: config.Command{Name: "onebox"}, args: []string{"-database-url", "postgres:///db"}, wantErr: "-database-url: postgres: needs a host"},
		{cmd: config.Command{Name: "onebox"}, args: []string{"-database-replica-urls", "postgres://r1/db,redis://r2"}, env: map[string]string{"ONEBOX_DATABASE_URL": "postgres://p/db"}, wantErr: "-database-replica-urls: want postgres://"},
		{cmd: config.Command{Name: "onebox"}, env: map[string]string{"ONEBOX_DATABASE_REPLICA_URLS": "postgres://r1/db"}, wantErr: "ONEBOX_DATABASE_REPLICA_URLS: replicas need a PostgreSQL primary"},
		{cmd: config.Command{Name: "onebox"}, args: []string{"-database-replica-urls", " postgres://r1/db , postgresql://r2:5433/db,"}, env: map[string]string{"ONEBOX_DATABASE_URL": "postgres://p/db"}, wantRest: ""},
		{cmd: config.Command{Name: "onebox"}, args: []string{"-tracing", "x"}, wantRest: "x"}, // a bool flag takes no separate value
		{cmd: config.Command{Name: "onebox"}, args: []string{"-data-dir", "d", "-media-backup-dir", "d/media"}, wantErr: "-media-backup-dir: d/media overlaps"},
		{cmd: config.Command{Name: "onebox"}, env: map[string]string{"ONEBOX_MEDIA_BACKUP_DIR": "d/media/copy", "ONEBOX_DATA_DIR": "d"}, wantErr: "ONEBOX_MEDIA_BACKUP_DIR: d/media/copy overlaps"},
		{cmd: config.Command{Name: "onebox"}, args: []string{"-media-url", "file:m/x", "-media-backup-dir", "m"}, wantErr: "-media-backup-dir: m overlaps"},
		{cmd: config.Command{Name: "onebox"}, args: []string{"-data-dir", "d", "-media-backup-dir", "d/media-copy"}},
	}
	for _, tt := range tests {
		c, rest, err := config.Parse(tt.cmd, tt.args, env(tt.env), io.Discard)
		if tt.wantErr != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("%q %v: err %v, want it to start %q", tt.args, tt.env, err, tt.wantErr)
			}
			continue
		}
		if err != nil || strings.Join(rest, " ") != tt.wantRest || tt.wantAddr != "" && c.AdminAddr != tt.wantAddr {
			t.Errorf("%q %v: %q %q %v, want %q %q", tt.args, tt.env, rest, c.AdminAddr, err, tt.wantRest, tt.wantAddr)
		}
	}
}

// TestUsage: --help prints each flag with its type, and its variable
// and default once.
func TestUsage(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	_, _, err := config.Parse(config.Command{Name: "onebox", Usage: "usage: onebox"}, []string{"--help"}, env(nil), &out)
	if !errors.Is(err, config.ErrHelp) {
		t.Fatalf("err %v, want ErrHelp", err)
	}
	for _, want := range []string{
		"usage: onebox\n",
		"  -addr host:port\n    \tpublic HTTP listen address\n    \t(ONEBOX_ADDR, default :8080)\n",
		"  -sse-max int\n", "  -cache-ttl duration\n", "  -access-log bool\n", "  -rate-api rate\n",
		"  -alert-disk-free fraction\n", "  -cache-url url\n", "  -trusted-proxies cidrs\n",
		"  -ops-token string\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q", want)
		}
	}
	if n := strings.Count(out.String(), "default 8)\n") + strings.Count(out.String(), "\"8\""); n != 1 { // -sse-per-user
		t.Errorf("the default of -sse-per-user appears %d times:\n%s", n, out.String())
	}
}

// TestReplicaURLs: the list is split on commas, blanks dropped.
func TestReplicaURLs(t *testing.T) {
	t.Parallel()
	c, _, err := config.Parse(config.Command{Name: "onebox"}, []string{"-database-replica-urls", " postgres://r1/db , postgresql://r2:5433/db,"},
		env(map[string]string{"ONEBOX_DATABASE_URL": "postgres://p/db"}), io.Discard)
	want := []string{"postgres://r1/db", "postgresql://r2:5433/db"}
	if err != nil || !slices.Equal(c.DatabaseReplicaURLs, want) {
		t.Fatalf("replicas %q %v, want %q", c.DatabaseReplicaURLs, err, want)
	}
}

// TestMediaPublicURL: the base gets its final "/" (a key follows it) and
// the origin is what the page's Content-Security-Policy admits.
func TestMediaPublicURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ v, base, origin string }{
		{"", "", ""},
		{"https://cdn.example.com/media/", "https://cdn.example.com/media/", "https://cdn.example.com"},
		{"https://CDN.example.com:443/media", "https://cdn.example.com/media/", "https://cdn.example.com"},
		{"http://127.0.0.1:9000/bucket/prefix", "http://127.0.0.1:9000/bucket/prefix/", "http://127.0.0.1:9000"},
		{"https://cdn.example.com", "https://cdn.example.com/", "https://cdn.example.com"},
	}
	for _, tt := range tests {
		c, err := config.Load(nil, env(map[string]string{"ONEBOX_MEDIA_PUBLIC_URL": tt.v, "ONEBOX_MEDIA_URL": "s3://bucket/media?endpoint=http://127.0.0.1:9000"}), io.Discard)
		if err != nil {
			t.Fatalf("%q: %v", tt.v, err)
		}
		if c.MediaPublicURL != tt.base || c.MediaOrigin != tt.origin {
			t.Errorf("%q: base %q origin %q, want %q %q", tt.v, c.MediaPublicURL, c.MediaOrigin, tt.base, tt.origin)
		}
	}
}

// TestBackupVerifySettings: the schedule is off by default, needs
// SQLite and must outlast the recovery point each run waits.
func TestBackupVerifySettings(t *testing.T) {
	t.Parallel()
	c, err := config.Load(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.BackupVerifyEvery != 0 || c.BackupRecoveryPoint != 5*time.Second || c.BackupVerifySample != 100 || c.Litestream != "litestream" || c.LitestreamConfig != "litestream.yml" {
		t.Errorf("defaults: every %s, recovery point %s, sample %d, %q, %q", c.BackupVerifyEvery, c.BackupRecoveryPoint, c.BackupVerifySample, c.Litestream, c.LitestreamConfig)
	}
	for _, tt := range []struct {
		env  map[string]string
		want string // "" passes; else the error's start
	}{
		{map[string]string{"ONEBOX_BACKUP_VERIFY_EVERY": "1h"}, ""},
		{map[string]string{"ONEBOX_BACKUP_VERIFY_EVERY": "1h", "ONEBOX_DATABASE_URL": "postgres://db/onebox"}, "ONEBOX_BACKUP_VERIFY_EVERY:"},
		{map[string]string{"ONEBOX_BACKUP_VERIFY_EVERY": "5s"}, "ONEBOX_BACKUP_VERIFY_EVERY:"},
		{map[string]string{"ONEBOX_BACKUP_VERIFY_EVERY": "6s"}, ""},
		{map[string]string{"ONEBOX_BACKUP_VERIFY_EVERY": "-1m"}, "ONEBOX_BACKUP_VERIFY_EVERY:"},
		{map[string]string{"ONEBOX_BACKUP_RECOVERY_POINT": "0s"}, "ONEBOX_BACKUP_RECOVERY_POINT:"},
		{map[string]string{"ONEBOX_BACKUP_VERIFY_SAMPLE": "-1"}, "ONEBOX_BACKUP_VERIFY_SAMPLE:"},
		{map[string]string{"ONEBOX_BACKUP_VERIFY_SAMPLE": "0"}, ""},
	} {
		_, _, err := config.Parse(onebox, nil, env(tt.env), io.Discard)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.want)) {
			t.Errorf("%v: err = %v, want %q", tt.env, err, tt.want)
		}
	}
}
