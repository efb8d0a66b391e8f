package config_test

import (
	"bytes"
	"io"
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
		!c.Metrics || !c.Tracing || c.SlowQuery != 100*time.Millisecond {
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
		{"ONEBOX_TRUSTED_PROXIES", "10.0.0.0/33"},
		{"ONEBOX_LOG_LEVEL", "loud"},
		{"ONEBOX_METRICS", "maybe"},
		{"ONEBOX_SLOW_QUERY", "slow"},
		{"ONEBOX_CACHE_SIZE", "-1"},
		{"ONEBOX_BODY_TIMEOUT", "0s"},
		{"ONEBOX_SSE_MAX", "-1"},
	}
	for _, tt := range tests {
		_, err := config.Load(nil, env(map[string]string{tt.key: tt.val}), io.Discard)
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
