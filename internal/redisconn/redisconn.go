// Package redisconn opens the go-redis client that onebox's Redis
// backends (cache/redis, ratelimit/redis) share their settings for: fail
// fast on the request path, errors that never show the password.
package redisconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// pingTimeout bounds the check that Dial makes before returning.
const pingTimeout = 5 * time.Second

// ErrUnreachable is wrapped by Dial's error when the URL is good but Redis
// did not answer the ping: the client it returns with it connects when
// Redis comes back. A service may start on it and run degraded (a cache
// that misses, a limiter that fails open) rather than not start.
var ErrUnreachable = errors.New("redis does not answer")

// Dial makes a client for rawURL (redis://[user:password@]host[:port][/db]
// or rediss:// for TLS, with go-redis's query options) and pings it. Its
// errors name the address, never the password. A bad URL returns no
// client; a ping that fails returns the client and an error wrapping
// ErrUnreachable.
func Dial(ctx context.Context, rawURL string) (*goredis.Client, error) {
	opt, err := goredis.ParseURL(rawURL)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // a *url.Error quotes the URL, password and all
		}
		return nil, fmt.Errorf("redis: parse URL: %w", err)
	}
	// On the request path a failure costs a miss or an unlimited request,
	// but a wait costs every request while Redis is away: fail within
	// about a second rather than go-redis's several (five dial attempts,
	// three retries, 5s timeouts). The URL's dial_timeout, read_timeout,
	// write_timeout (which follows read_timeout) and max_retries win.
	if opt.DialTimeout == 0 {
		opt.DialTimeout = time.Second
	}
	if opt.ReadTimeout == 0 {
		opt.ReadTimeout = time.Second
	}
	if opt.MaxRetries == 0 {
		opt.MaxRetries = 1 // a pooled connection that the server closed
	}
	opt.DialerRetries = 1 // one attempt per dial; MaxRetries retries
	// Socket deadlines also follow the caller's context, so a call ends
	// with the request that made it.
	opt.ContextTimeoutEnabled = true
	client := goredis.NewClient(opt)
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		return client, fmt.Errorf("redis: ping %s: %w: %w", opt.Addr, ErrUnreachable, err)
	}
	return client, nil
}

// SetLogger sends go-redis's own log lines (pool and reconnection
// notices it otherwise prints to stderr as plain text) to log, as
// warnings, so that they come out as JSON with the rest. go-redis's
// logger is process-wide: main calls this once, at wiring.
func SetLogger(log *slog.Logger) { goredis.SetLogger(slogAdapter{log}) }

// slogAdapter is go-redis's Logging interface on a slog.Logger.
type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) Printf(ctx context.Context, format string, v ...any) {
	a.log.WarnContext(ctx, fmt.Sprintf(format, v...), slog.String("component", "go-redis"))
}
