package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// ReplicaEnv names the variable the tests read the streaming replica's URL
// from; deploy/postgres/replica.sh start prints it.
const ReplicaEnv = "ONEBOX_TEST_POSTGRES_REPLICA_URL"

// Root is where private clusters live: outside any test's temp dir, since
// their data directories belong to the postgres user.
const Root = "/var/tmp/onebox-pg"

// ReplicaURL returns ONEBOX_TEST_POSTGRES_REPLICA_URL, skipping the test
// without it and failing it when the server there does not answer or is
// not a standby.
func ReplicaURL(tb testing.TB) string {
	tb.Helper()
	rawURL := os.Getenv(ReplicaEnv)
	if rawURL == "" {
		tb.Skipf("%s not set: skipping the PostgreSQL replica tests (deploy/postgres/replica.sh start sets it up)", ReplicaEnv)
	}
	ctx, cancel := context.WithTimeout(tb.Context(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, rawURL)
	if err != nil {
		tb.Fatalf("%s: connect: %v", ReplicaEnv, err)
	}
	defer conn.Close(context.Background())
	var standby bool
	if err := conn.QueryRow(ctx, "select pg_is_in_recovery()").Scan(&standby); err != nil {
		tb.Fatalf("%s: %v", ReplicaEnv, err)
	}
	if !standby {
		tb.Fatalf("%s: %s is not a standby (pg_is_in_recovery() is false)", ReplicaEnv, rawURL)
	}
	return rawURL
}

// A Cluster is a PostgreSQL server of a test's own, on a free port, for
// tests that stop or restart a server: never the shared one, which other
// packages use at the same time.
type Cluster struct {
	Dir  string // the data directory, owned by postgres
	Port int
	bin  string
}

// StartPrivate initdb's and starts a private cluster on a free port, as
// the postgres user, and returns the URL of its database postgres. It is
// stopped and removed when the test ends. It skips the test without
// root (or the postgres user) or PostgreSQL's binaries.
func StartPrivate(tb testing.TB) (string, *Cluster) {
	tb.Helper()
	c := newCluster(tb, "private-")
	ctx, cancel := context.WithTimeout(tb.Context(), 2*time.Minute)
	defer cancel()
	if err := asPostgres(ctx, filepath.Join(c.bin, "initdb"), "-D", c.Dir, "-U", "postgres",
		"-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	// Quick rather than durable: nothing here outlives the test.
	conf := fmt.Sprintf(`
port = %d
listen_addresses = '127.0.0.1'
unix_socket_directories = '%s'
max_connections = 30
shared_buffers = 8MB
fsync = off
synchronous_commit = off
full_page_writes = off
`, c.Port, c.Dir)
	if err := appendFile(filepath.Join(c.Dir, "postgresql.conf"), conf); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	if err := c.Start(ctx); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.Port), c
}

// StartReplica makes a private streaming replica of the server at
// primaryURL with deploy/postgres/replica.sh (pg_basebackup -R) on a free
// port, waits until it streams, and returns its URL (the primary URL's
// database, on the replica's port) with
// the Cluster to stop and start it. It is stopped and removed when the
// test ends.
func StartReplica(tb testing.TB, primaryURL string) (string, *Cluster) {
	tb.Helper()
	r := newReplica(tb, primaryURL)
	ctx, cancel := context.WithTimeout(tb.Context(), 2*time.Minute)
	defer cancel()
	if err := r.sh(ctx, "start"); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return r.url, r.Cluster
}

// A replica is a Cluster that deploy/postgres/replica.sh makes and
// removes, with the URL it will answer at.
type replica struct {
	*Cluster
	url string
	env []string // the script's
}

// newReplica picks the port and directory of a replica of primaryURL and
// registers the cleanup that runs replica.sh stop; it starts nothing.
func newReplica(tb testing.TB, primaryURL string) *replica {
	tb.Helper()
	c := newCluster(tb, "replica-")
	u, err := url.Parse(primaryURL)
	if err != nil {
		tb.Fatalf("pgtest: primary URL: %v", err)
	}
	// The script makes the replica in $ONEBOX_PG_DIR/replica.
	base := c.Dir
	c.Dir = filepath.Join(base, "replica")
	r := &replica{Cluster: c, env: append(os.Environ(),
		"ONEBOX_PG_DIR="+base,
		"ONEBOX_REPLICA_PORT="+strconv.Itoa(c.Port),
		"ONEBOX_PRIMARY_HOST="+u.Hostname(),
		"ONEBOX_PRIMARY_PORT="+orDefault(u.Port(), "5432"),
	)}
	// stop also drops the replica's slot, which would hold WAL on the
	// primary for good. (A stopped primary has nothing to drop.)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := r.sh(ctx, "stop"); err != nil {
			tb.Logf("pgtest: %v", err)
		}
	})
	u.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port))
	r.url = u.String()
	return r
}

// sh runs replica.sh command for this replica.
func (r *replica) sh(ctx context.Context, command string) error {
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "deploy", "postgres", "replica.sh")
	cmd := exec.CommandContext(ctx, script, command)
	cmd.Env = r.env
	// Killed at ctx's end, the script may leave a child holding its output.
	cmd.WaitDelay = 10 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("replica.sh %s: %w\n%s", command, err, out)
	}
	return nil
}

func orDefault(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

// newCluster picks the binaries, a free port and a fresh directory under
// Root owned by postgres, and registers the cleanup that stops the
// cluster and removes the directory.
func newCluster(tb testing.TB, prefix string) *Cluster {
	tb.Helper()
	bin, err := binDir()
	if err != nil {
		tb.Skipf("pgtest: no private PostgreSQL: %v", err)
	}
	if u, err := user.Current(); err != nil || (u.Uid != "0" && u.Username != "postgres") {
		tb.Skip("pgtest: a private PostgreSQL needs root (for runuser) or the postgres user")
	}
	port, err := freePort()
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	if err := os.MkdirAll(Root, 0o755); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	dir, err := os.MkdirTemp(Root, prefix)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	if err := chownPostgres(dir); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	c := &Cluster{Dir: dir, Port: port, bin: bin}
	tb.Cleanup(func() {
		// tb.Context is done by the time cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := os.Stat(filepath.Join(c.Dir, "postmaster.pid")); err == nil {
			if err := c.pgctl(ctx, "stop", "-m", "immediate"); err != nil {
				tb.Errorf("pgtest: %v", err)
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	return c
}

// Start starts the cluster and waits until it accepts connections.
func (c *Cluster) Start(ctx context.Context) error {
	return c.pgctl(ctx, "start", "-l", filepath.Join(c.Dir, "log"))
}

// Stop stops the cluster (fast: open sessions are ended) and waits until
// it is down.
func (c *Cluster) Stop(ctx context.Context) error {
	return c.pgctl(ctx, "stop", "-m", "fast")
}

// Restart stops and starts the cluster.
func (c *Cluster) Restart(ctx context.Context) error {
	return c.pgctl(ctx, "restart", "-m", "fast", "-l", filepath.Join(c.Dir, "log"))
}

func (c *Cluster) pgctl(ctx context.Context, args ...string) error {
	args = append([]string{args[0], "-D", c.Dir, "-w", "-t", "60"}, args[1:]...)
	return asPostgres(ctx, filepath.Join(c.bin, "pg_ctl"), args...)
}

// asPostgres runs a PostgreSQL tool as the postgres user, which must own
// every data directory.
func asPostgres(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	if u, err := user.Current(); err == nil && u.Username != "postgres" {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, out.Bytes())
	}
	return nil
}

// binDir is the bin directory of the newest PostgreSQL installed the
// Debian way (/usr/lib/postgresql/<major>/bin).
func binDir() (string, error) {
	dirs, err := filepath.Glob("/usr/lib/postgresql/*/bin")
	if err != nil {
		return "", err
	}
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("no initdb in /usr/lib/postgresql/*/bin")
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func chownPostgres(dir string) error {
	u, err := user.Lookup("postgres")
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(dir, uid, gid)
}

func appendFile(name, s string) error {
	f, err := os.OpenFile(name, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
