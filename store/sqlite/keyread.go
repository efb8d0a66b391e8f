package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
)

// keyReader runs reads of one row by key on driver connections of its
// own, each with its statements prepared once, without database/sql. Such
// a read is most of what the service does (a profile, a session per
// authenticated request), and database/sql's bookkeeping around it (a
// connection-statement lookup under locks, Rows, context watchers and
// value conversion) cost as much CPU as the lookup in SQLite.
//
// A read that finds every connection busy waits for one until its
// context ends; at most max connections are open.
//
// Reads that may be stale (store.MayBeStale; read's share) share
// snapshots while this process is not writing: a connection keeps its
// read transaction open across them until this process writes, or
// snapshotAge has passed; any other read ends the connection's snapshot
// and has a transaction of its own. Taking and ending a read
// transaction for each read (WAL read locks through fcntl, the WAL index
// header, page 1) was a fifth of an uncached profile read's CPU: about
// +15 % req/s under wrk with 100k users. A read sees every write this
// process finished before the read began, and a write of another process
// (a second instance during a deploy, a CLI command) within snapshotAge.
//
// Only while no write of this process has finished for quietFor: a
// snapshot held between reads keeps the writer from restarting the WAL
// at the front of its file, and under a steady mix of reads and writes
// there was always one open, so the WAL grew by 12 MB a second. Once
// writes come, reads go back to a transaction each, and a sweep ends the
// snapshots of idle connections.
type keyReader struct {
	open  func() (driver.Conn, error)
	marks *writeMarks      // this process's writes
	now   func() time.Time // the reads' clock (tests stop it); the sweep keeps its ticker's
	idle  chan *keyConn
	slots chan struct{} // one token per open connection

	mu     sync.Mutex
	closed bool
	stop   chan struct{} // closed by close: the sweep ends
	swept  chan struct{} // closed when the sweep has ended

	// The waits for a connection, for Stats.
	waits    atomic.Int64
	waitedNs atomic.Int64
}

// writeMarks are what the key reader knows of this process's writes.
type writeMarks struct {
	count atomic.Uint64 // finished writes (or failed ones: either may have changed rows)
	last  atomic.Int64  // when the last one finished, in Unix nanoseconds
}

func (m *writeMarks) done(now time.Time) {
	m.last.Store(now.UnixNano())
	m.count.Add(1)
}

const (
	// snapshotAge is how long a connection may read from one snapshot.
	snapshotAge = 100 * time.Millisecond
	// quietFor is how long after this process's last write snapshots
	// are shared again.
	quietFor = 100 * time.Millisecond
	// sweepEvery is how often the snapshots of idle connections are
	// ended once older than snapshotAge, or once writes have come.
	sweepEvery = 100 * time.Millisecond
)

// keyConn is one connection and its prepared statements. Only the
// goroutine that took it from the pool uses it.
type keyConn struct {
	conn  driver.Conn
	stmts map[string]driver.Stmt
	dest  []driver.Value
	args  [4]driver.NamedValue

	snap   bool      // a read transaction is open
	snapAt time.Time // when it began
	snapW  uint64    // writeMarks.count then
}

func newKeyReader(max int, marks *writeMarks, open func() (driver.Conn, error)) *keyReader {
	k := &keyReader{
		open: open, marks: marks, now: time.Now, idle: make(chan *keyConn, max), slots: make(chan struct{}, max),
		stop: make(chan struct{}), swept: make(chan struct{}),
	}
	go k.sweeper()
	return k
}

func (k *keyReader) sweeper() {
	defer close(k.swept)
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-k.stop:
			return
		case now := <-t.C:
			k.sweep(now)
		}
	}
}

// sweep ends the snapshots of the connections idle now that are older
// than snapshotAge or older than this process's last write; those in use
// end theirs at their next read.
func (k *keyReader) sweep(now time.Time) {
	writes := k.marks.count.Load()
	for range len(k.idle) {
		select {
		case c := <-k.idle:
			var err error
			if c.snap && (c.snapW != writes || now.Sub(c.snapAt) >= snapshotAge) {
				err = c.endSnapshot()
			}
			k.put(c, err)
		default:
			return
		}
	}
}

var errKeyReaderClosed = errors.New("sqlite: store is closed")

// read runs query with args on a pooled connection and hands its one row
// to scan; no row is sql.ErrNoRows.
//
// With share (a store.MayBeStale read) it may read from the connection's
// snapshot; without, it reads in a transaction of its own, which sees
// every write committed before it, by any process.
func (k *keyReader) read(ctx context.Context, share bool, query string, args []any, scan func(scanner) error) (err error) {
	// Before the connection: a write finished before this read must be
	// counted in what the snapshot is checked against.
	writes, last, now := k.marks.count.Load(), k.marks.last.Load(), k.now()
	share = share && now.UnixNano()-last >= int64(quietFor)
	c, err := k.get(ctx)
	if err != nil {
		return err
	}
	returned := false
	defer func() {
		if !returned {
			// scan panicked with the statement mid-read: drop the
			// connection rather than lose its slot, or pool it unreset.
			k.put(c, driver.ErrBadConn)
		}
	}()
	err = c.read(query, args, scan, writes, now, share)
	returned = true
	k.put(c, err)
	return err
}

func (k *keyReader) get(ctx context.Context) (*keyConn, error) {
	select {
	case c := <-k.idle:
		return c, nil
	case k.slots <- struct{}{}:
		return k.openConn()
	default:
	}
	// Every connection is busy: wait, and count the wait for Stats. Only
	// now ask for Done: a request's deadline makes its timer then.
	start := time.Now()
	defer func() {
		k.waits.Add(1)
		k.waitedNs.Add(int64(time.Since(start)))
	}()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case c := <-k.idle:
		return c, nil
	case k.slots <- struct{}{}:
		return k.openConn()
	}
}

// openConn opens a connection in the slot its caller has taken.
func (k *keyReader) openConn() (*keyConn, error) {
	k.mu.Lock()
	closed := k.closed
	k.mu.Unlock()
	if closed {
		<-k.slots
		return nil, errKeyReaderClosed
	}
	conn, err := k.open()
	if err != nil {
		<-k.slots
		return nil, err
	}
	return &keyConn{conn: conn, stmts: make(map[string]driver.Stmt)}, nil
}

// waited returns how many reads had to wait for a connection, and for
// how long in all.
func (k *keyReader) waited() (int64, time.Duration) {
	return k.waits.Load(), time.Duration(k.waitedNs.Load())
}

// put returns c to the pool, or closes it when the store is closed or
// the driver said the connection is broken.
func (k *keyReader) put(c *keyConn, err error) {
	k.mu.Lock()
	closed := k.closed
	if !closed && !errors.Is(err, driver.ErrBadConn) {
		k.idle <- c // never blocks: at most cap(idle) connections exist
		k.mu.Unlock()
		return
	}
	k.mu.Unlock()
	_ = c.close()
	<-k.slots
}

// close closes the idle connections; those in use close when they come
// back.
func (k *keyReader) close() error {
	k.mu.Lock()
	if !k.closed {
		close(k.stop)
	}
	k.closed = true
	k.mu.Unlock()
	<-k.swept
	var errs []error
	for {
		select {
		case c := <-k.idle:
			errs = append(errs, c.close())
			<-k.slots
		default:
			return errors.Join(errs...)
		}
	}
}

// read runs query. With share, it does so in the connection's snapshot,
// first replacing one that began before the last write counted in writes
// or snapshotAge before now; without, in a transaction of its own.
func (c *keyConn) read(query string, args []any, scan func(scanner) error, writes uint64, now time.Time, share bool) error {
	if c.snap && (!share || c.snapW != writes || now.Sub(c.snapAt) >= snapshotAge) {
		if err := c.endSnapshot(); err != nil {
			return err
		}
	}
	if share && !c.snap {
		if err := c.exec("BEGIN"); err != nil {
			return err
		}
		c.snap, c.snapAt, c.snapW = true, now, writes
	}
	err := c.query(query, args, scan)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		// Whatever failed, the next read starts afresh.
		err = errors.Join(err, c.endSnapshot())
	}
	return err
}

// endSnapshot ends the read transaction. A connection that cannot is
// broken (driver.ErrBadConn): the pool closes it.
func (c *keyConn) endSnapshot() error {
	if !c.snap {
		return nil
	}
	c.snap = false
	if err := c.exec("COMMIT"); err != nil {
		return fmt.Errorf("sqlite: end a read snapshot: %w (%w)", driver.ErrBadConn, err)
	}
	return nil
}

func (c *keyConn) exec(query string) error {
	st, err := c.stmt(query)
	if err != nil {
		return err
	}
	_, err = st.(driver.StmtExecContext).ExecContext(context.Background(), nil)
	return err
}

func (c *keyConn) stmt(query string) (driver.Stmt, error) {
	st, ok := c.stmts[query]
	if !ok {
		var err error
		if st, err = c.conn.Prepare(query); err != nil {
			return nil, err
		}
		c.stmts[query] = st
	}
	return st, nil
}

func (c *keyConn) query(query string, args []any, scan func(scanner) error) error {
	st, err := c.stmt(query)
	if err != nil {
		return err
	}
	named := c.args[:0]
	for i, a := range args {
		// What database/sql does for a driver without a converter of
		// its own: an int, a named string type or a Valuer becomes a
		// driver.Value.
		v, err := driver.DefaultParameterConverter.ConvertValue(a)
		if err != nil {
			return fmt.Errorf("argument %d: %w", i+1, err)
		}
		named = append(named, driver.NamedValue{Ordinal: i + 1, Value: v})
	}
	// A background context: the driver starts no goroutine to watch it.
	rows, err := st.(driver.StmtQueryContext).QueryContext(context.Background(), named)
	clear(named)
	if err != nil {
		return err
	}
	n := len(rows.Columns())
	if cap(c.dest) < n {
		c.dest = make([]driver.Value, n)
	}
	dest := c.dest[:n]
	err = rows.Next(dest)
	switch {
	case errors.Is(err, io.EOF):
		err = sql.ErrNoRows
	case err == nil:
		err = scan(values(dest))
	}
	clear(dest)
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	return err
}

func (c *keyConn) close() error {
	var errs []error
	for _, st := range c.stmts {
		errs = append(errs, st.Close())
	}
	return errors.Join(append(errs, c.conn.Close())...)
}

// values is a row as the driver gives it, scanned as database/sql would
// for the destinations onebox's scan functions use: TEXT into a string
// kind, INTEGER into an int kind or a bool, anything into a sql.Scanner
// or an *any. Others (REAL, BLOB, NULL into a pointer) are an error that
// names them: a read that needs one belongs on the database/sql pool or
// gets its case here.
type values []driver.Value

func (v values) Scan(dest ...any) error {
	if len(dest) != len(v) {
		return fmt.Errorf("scan: %d destinations for %d columns", len(dest), len(v))
	}
	for i, d := range dest {
		if err := assign(d, v[i]); err != nil {
			return fmt.Errorf("scan column %d: %w", i, err)
		}
	}
	return nil
}

func assign(dest any, src driver.Value) error {
	switch d := dest.(type) {
	case sql.Scanner:
		return d.Scan(src)
	case *any:
		*d = src
		return nil
	case *string:
		if s, ok := src.(string); ok {
			*d = s
			return nil
		}
	case *int64:
		if n, ok := src.(int64); ok {
			*d = n
			return nil
		}
	case *bool:
		if n, ok := src.(int64); ok && (n == 0 || n == 1) {
			*d = n == 1
			return nil
		}
	default:
		// Named string types and other integer widths.
		rv := reflect.ValueOf(dest)
		if rv.Kind() != reflect.Pointer || rv.IsNil() {
			break
		}
		e := rv.Elem()
		switch s := src.(type) {
		case string:
			if e.Kind() == reflect.String {
				e.SetString(s)
				return nil
			}
		case int64:
			switch e.Kind() {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
				if e.OverflowInt(s) {
					return fmt.Errorf("%d overflows %s", s, e.Type())
				}
				e.SetInt(s)
				return nil
			}
		}
	}
	return fmt.Errorf("cannot store %T into %T", src, dest)
}
