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
type keyReader struct {
	open  func() (driver.Conn, error)
	idle  chan *keyConn
	slots chan struct{} // one token per open connection

	mu     sync.Mutex
	closed bool
}

// keyConn is one connection and its prepared statements. Only the
// goroutine that took it from the pool uses it.
type keyConn struct {
	conn  driver.Conn
	stmts map[string]driver.Stmt
	dest  []driver.Value
	args  [4]driver.NamedValue
}

func newKeyReader(max int, open func() (driver.Conn, error)) *keyReader {
	return &keyReader{open: open, idle: make(chan *keyConn, max), slots: make(chan struct{}, max)}
}

var errKeyReaderClosed = errors.New("sqlite: store is closed")

// read runs query with args on a pooled connection and hands its one row
// to scan; no row is sql.ErrNoRows.
func (k *keyReader) read(ctx context.Context, query string, args []any, scan func(scanner) error) (err error) {
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
	err = c.read(query, args, scan)
	returned = true
	k.put(c, err)
	return err
}

func (k *keyReader) get(ctx context.Context) (*keyConn, error) {
	select {
	case c := <-k.idle:
		return c, nil
	default:
	}
	// Only now ask for Done: a request's deadline makes its timer then.
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case c := <-k.idle:
		return c, nil
	case k.slots <- struct{}{}:
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
	k.closed = true
	k.mu.Unlock()
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

func (c *keyConn) read(query string, args []any, scan func(scanner) error) error {
	st, ok := c.stmts[query]
	if !ok {
		var err error
		if st, err = c.conn.Prepare(query); err != nil {
			return err
		}
		c.stmts[query] = st
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
