// Package stmtcache keeps a database/sql driver's prepared statements per
// connection, keyed by their SQL text, so that a statement run by its
// text (tx.QueryRowContext(ctx, "INSERT …")) is parsed once per
// connection instead of on every call.
//
// onebox prepares its own hot statements, but goqite's Send, which the
// design requires in production, runs its INSERT by text: on SQLite,
// parsing that statement (and compiling goqite's trigger with it) was a
// third of an enqueue's CPU. database/sql cannot cache it (it caches
// only statements prepared through *sql.DB), so the cache sits under
// database/sql, in the driver's connection. On modernc.org/sqlite a
// prepared single statement keeps its compiled form and is reset, not
// finalized, when its rows close, so a cached statement runs without
// parsing.
//
// A statement whose rows are still open when its text runs again on the
// same connection, or one past the cache's size, runs uncached, as the
// driver would have run it.
package stmtcache

import (
	"context"
	"database/sql/driver"
	"errors"
	"reflect"
)

// Conn is what the cache needs of a driver's connection: every
// interface modernc.org/sqlite's connection implements that database/sql
// uses, so wrapping changes none of database/sql's choices.
type Conn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// Connector opens connections with open and caches up to max statements
// on each (a database/sql pool opened with sql.OpenDB).
type Connector struct {
	driver driver.Driver
	open   func() (driver.Conn, error)
	max    int
}

// New returns a Connector for d at dsn. Its connections must implement
// Conn, as modernc.org/sqlite's do.
func New(d driver.Driver, dsn string, max int) *Connector {
	return &Connector{driver: d, open: func() (driver.Conn, error) { return d.Open(dsn) }, max: max}
}

// Connect opens a connection with an empty cache.
func (c *Connector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.open()
	if err != nil {
		return nil, err
	}
	inner, ok := dc.(Conn)
	if !ok {
		_ = dc.Close()
		return nil, errors.New("stmtcache: the driver's connection does not implement stmtcache.Conn")
	}
	return &conn{Conn: inner, max: c.max, stmts: map[string]*cached{}}, nil
}

// Driver is the driver the connections come from.
func (c *Connector) Driver() driver.Driver { return c.driver }

// conn is one connection and its statements. database/sql uses a
// connection from one goroutine at a time, so it needs no lock.
type conn struct {
	Conn
	max   int
	stmts map[string]*cached
}

// stmt is what the cache needs of a driver's statement.
type stmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

// cached is a statement of the cache; busy while rows it returned are
// open.
type cached struct {
	stmt stmt
	busy bool
}

// get returns query's cached statement, preparing it on first use, or
// nil when it cannot be used now: its rows are open, the cache is full,
// or the driver's statement lacks the context methods.
func (c *conn) get(ctx context.Context, query string) (*cached, error) {
	if s, ok := c.stmts[query]; ok {
		if s.busy {
			return nil, nil
		}
		return s, nil
	}
	if len(c.stmts) >= c.max {
		return nil, nil
	}
	ds, err := c.Conn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	st, ok := ds.(stmt)
	if !ok {
		_ = ds.Close()
		return nil, nil
	}
	s := &cached{stmt: st}
	c.stmts[query] = s
	return s, nil
}

// ExecContext runs query on its cached statement.
func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	s, err := c.get(ctx, query)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return c.Conn.ExecContext(ctx, query, args)
	}
	return s.stmt.ExecContext(ctx, args)
}

// QueryContext runs query on its cached statement, which stays busy
// until the rows close.
func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	s, err := c.get(ctx, query)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return c.Conn.QueryContext(ctx, query, args)
	}
	r, err := s.stmt.QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	s.busy = true
	return &rows{Rows: r, s: s}, nil
}

// Close closes every cached statement, then the connection.
func (c *conn) Close() error {
	var errs []error
	for q, s := range c.stmts {
		errs = append(errs, s.stmt.Close())
		delete(c.stmts, q)
	}
	return errors.Join(append(errs, c.Conn.Close())...)
}

// rows frees its statement for the next run when closed.
type rows struct {
	driver.Rows
	s *cached
}

func (r *rows) Close() error {
	err := r.Rows.Close()
	r.s.busy = false
	return err
}

// The column-type methods database/sql looks for on rows, passed on, or
// database/sql's own answer where the driver has none, as if unwrapped.

func (r *rows) ColumnTypeScanType(i int) reflect.Type {
	if t, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return t.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}

func (r *rows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *rows) ColumnTypeLength(i int) (int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeLength); ok {
		return t.ColumnTypeLength(i)
	}
	return 0, false
}

func (r *rows) ColumnTypeNullable(i int) (nullable, ok bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return t.ColumnTypeNullable(i)
	}
	return false, false
}

func (r *rows) ColumnTypePrecisionScale(i int) (precision, scale int64, ok bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypePrecisionScale); ok {
		return t.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}
