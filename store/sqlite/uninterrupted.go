package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"

	"onebox/internal/stmtcache"
)

// uninterrupted opens the writer's connections so that a statement run
// in a transaction ignores its context's end: modernc.org/sqlite would
// interrupt it, and SQLite rolls back the whole transaction under an
// interrupted INSERT, UPDATE or DELETE. The writer's transactions are
// shared by the writes of a group (group commit), so one request that
// ended while its statement ran took every other write of the group
// down with it. A write that holds the writer now runs to its end; its
// context still stops the statements after (database/sql checks it
// before each) and the wait for the writer. BEGIN, which may wait for
// another process, and statements outside a transaction stay
// interruptible. So do statements prepared on a transaction (tx.Prepare:
// a copy's batch, the seed): those run only in transactions of their
// own (inTxAlone), where an interruption rolls back nothing but them.
type uninterrupted struct{ driver.Connector }

func (u uninterrupted) Connect(ctx context.Context) (driver.Conn, error) {
	c, err := u.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	sc, ok := c.(stmtcache.Conn)
	if !ok {
		_ = c.Close()
		return nil, errors.New("sqlite: the writer's connection does not implement stmtcache.Conn")
	}
	return &txConn{Conn: sc}, nil
}

// txConn is a connection that knows whether a transaction is open.
// database/sql uses a connection from one goroutine at a time.
type txConn struct {
	stmtcache.Conn
	inTx bool
}

func (c *txConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	tx, err := c.Conn.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	c.inTx = true
	return txEnd{Tx: tx, c: c}, nil
}

func (c *txConn) ctx(ctx context.Context) context.Context {
	if c.inTx {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

func (c *txConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return c.Conn.ExecContext(c.ctx(ctx), query, args)
}

func (c *txConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.QueryContext(c.ctx(ctx), query, args)
}

// txEnd marks its connection out of the transaction when it ends.
type txEnd struct {
	driver.Tx
	c *txConn
}

func (t txEnd) Commit() error {
	t.c.inTx = false
	return t.Tx.Commit()
}

func (t txEnd) Rollback() error {
	t.c.inTx = false
	return t.Tx.Rollback()
}
