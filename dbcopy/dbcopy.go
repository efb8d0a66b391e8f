// Package dbcopy moves a whole onebox database from one backend to
// another (SQLite to PostgreSQL and back): every table, in batches,
// keeping ids, then checks row counts and a checksum per table on both
// sides. It knows the tables and their columns; each store reads and
// writes its own rows in its own SQL (the Database interface), so no
// dialect lives here.
//
// A copy is safe to rerun: before writing anything it checks that every
// row the destination holds is the source's row with the same key and
// content, so a copy that stopped half-way resumes (rows already there
// are skipped) and a destination holding other data is refused untouched.
package dbcopy

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Kind is the type of a column's values as they cross between backends.
type Kind int

const (
	Text  Kind = iota // string
	Int               // int64
	Bytes             // []byte
	Time              // time.Time, UTC; compared at the column's Precision
	JSON              // string holding JSON; compared by value, not by spelling
)

// Column is one column of a table.
type Column struct {
	Name     string
	Kind     Kind
	Nullable bool // values may be nil
	// Precision of a Time: the coarsest any backend keeps it at, and
	// what the checksum compares. Microseconds (PostgreSQL's) unless
	// set; goqite's SQLite table keeps milliseconds.
	Precision time.Duration
}

// precision is c.Precision with its default.
func (c Column) precision() time.Duration {
	if c.Precision > 0 {
		return c.Precision
	}
	return time.Microsecond
}

// Table is one table of a onebox database.
type Table struct {
	Name    string
	Columns []Column
	// Key is how many leading columns form the primary key; rows are
	// read in key order.
	Key int
	// Serial names the column whose sequence must end past the largest
	// copied value ("" for none), so new rows get new ids.
	Serial string
}

// Tables lists every table a onebox database holds that is worth
// copying, parents before children, so foreign keys hold at every
// batch. Schema bookkeeping (the migrations table) is each database's
// own and is not copied.
func Tables() []Table {
	t := func(name string) Column { return Column{Name: name, Kind: Text} }
	n := func(name string) Column { return Column{Name: name, Kind: Int} }
	at := func(name string) Column { return Column{Name: name, Kind: Time} }
	ms := func(name string) Column { return Column{Name: name, Kind: Time, Precision: time.Millisecond} }
	return []Table{
		{Name: "users", Key: 1, Columns: []Column{
			t("id"), t("handle"), t("handle_key"), t("display_name"), t("bio"),
			{Name: "avatar_id", Kind: Text, Nullable: true}, t("password_hash"), at("created_at"), at("updated_at"), n("version"),
		}},
		{Name: "sessions", Key: 1, Columns: []Column{t("token_hash"), t("user_id"), at("created_at"), at("expires_at")}},
		{Name: "photos", Key: 1, Columns: []Column{
			t("id"), t("owner_id"), t("status"), t("reason"), n("width"), n("height"), t("original_key"),
			t("content_type"), n("size"), {Name: "variants", Kind: JSON}, at("created_at"), at("updated_at"),
		}},
		{Name: "photo_idempotency", Key: 2, Columns: []Column{t("owner_id"), t("key"), t("photo_id"), at("created_at"), t("digest"), at("expires_at")}},
		{Name: "events", Key: 1, Serial: "id", Columns: []Column{n("id"), t("user_id"), t("photo_id"), at("created_at")}},
		// The job queue: goqite's table and onebox's own beside it.
		{Name: "goqite", Key: 1, Columns: []Column{
			t("id"), ms("created"), ms("updated"), t("queue"), {Name: "body", Kind: Bytes}, ms("timeout"), n("received"), n("priority"),
			t("fair_key"), n("fair_rank"),
		}},
		{Name: "jobs_errors", Key: 1, Columns: []Column{t("id"), t("last_error"), ms("retry_at")}},
		{Name: "jobs_dead", Key: 1, Columns: []Column{
			t("id"), t("queue"), t("kind"), {Name: "body", Kind: Bytes}, n("priority"), t("last_error"), n("attempts"), ms("created"), ms("died_at"),
		}},
	}
}

// Database is one end of a copy: a store that reads and writes whole
// rows of the tables above. Values are string, int64, []byte, time.Time
// or (in a nullable column) nil, by the column's Kind.
type Database interface {
	// ReadRows returns up to limit rows of t whose key is greater than
	// after (nil: from the first), in key order.
	ReadRows(ctx context.Context, t Table, after []any, limit int) ([][]any, error)
	// WriteRows inserts rows into t in one transaction, skipping those
	// whose key is there already, and says how many it inserted.
	WriteRows(ctx context.Context, t Table, rows [][]any) (int, error)
	// CountRows counts t's rows.
	CountRows(ctx context.Context, t Table) (int64, error)
	// ResetSerial moves t.Serial's sequence past the largest value in t
	// (where the database keeps one apart from the table).
	ResetSerial(ctx context.Context, t Table) error
}

// Options tune Copy.
type Options struct {
	Batch int // rows per read and per transaction; default 1000
	// Progress, when set, hears of each batch written.
	Progress func(table string, copied, total int64)
}

// TableReport is what Copy did to one table.
type TableReport struct {
	Name     string `json:"name"`
	Rows     int64  `json:"rows"`     // in the source, equal in the destination
	Inserted int64  `json:"inserted"` // by this run; fewer than Rows when resumed
	Checksum string `json:"checksum"` // SHA-256 of the rows in key order, equal on both sides
}

// ErrForeign: before copying, the destination holds a row the source
// does not (by key, or by content under the same key). Nothing was
// written.
var ErrForeign = errors.New("dbcopy: the destination holds rows that are not the source's")

// ErrMismatch: after copying, a table's rows differ between the two
// databases (the destination held other data, or a write reached the
// source during the copy).
var ErrMismatch = errors.New("dbcopy: the databases differ")

// Copy copies every table from src to dst, then checks each table's row
// count and checksum on both. Writes to src during a copy are not seen
// consistently: stop them first (README: moving a running service).
func Copy(ctx context.Context, src, dst Database, o Options) ([]TableReport, error) {
	if o.Batch <= 0 {
		o.Batch = 1000
	}
	// Every table is checked before any is written: a refused copy
	// leaves the destination as it found it.
	for _, t := range Tables() {
		if err := checkDestination(ctx, src, dst, t, o.Batch); err != nil {
			return nil, err
		}
	}
	var reports []TableReport
	for _, t := range Tables() {
		r, err := copyTable(ctx, src, dst, t, o)
		if err != nil {
			return reports, err
		}
		reports = append(reports, r)
	}
	for i, t := range Tables() {
		if err := verify(ctx, src, dst, t, o.Batch, &reports[i]); err != nil {
			return reports, err
		}
	}
	return reports, nil
}

func copyTable(ctx context.Context, src, dst Database, t Table, o Options) (TableReport, error) {
	r := TableReport{Name: t.Name}
	total, err := src.CountRows(ctx, t)
	if err != nil {
		return r, fmt.Errorf("count %s in the source: %w", t.Name, err)
	}
	var after []any
	var read int64
	for {
		rows, err := src.ReadRows(ctx, t, after, o.Batch)
		if err != nil {
			return r, fmt.Errorf("read %s: %w", t.Name, err)
		}
		if len(rows) == 0 {
			break
		}
		n, err := dst.WriteRows(ctx, t, rows)
		if err != nil {
			return r, fmt.Errorf("write %s: %w", t.Name, err)
		}
		r.Inserted += int64(n)
		read += int64(len(rows))
		after = rows[len(rows)-1][:t.Key]
		if o.Progress != nil {
			o.Progress(t.Name, read, total)
		}
		if len(rows) < o.Batch {
			break
		}
	}
	if t.Serial != "" {
		if err := dst.ResetSerial(ctx, t); err != nil {
			return r, fmt.Errorf("reset the sequence of %s.%s: %w", t.Name, t.Serial, err)
		}
	}
	return r, nil
}

func verify(ctx context.Context, src, dst Database, t Table, batch int, r *TableReport) error {
	srcN, srcSum, err := Checksum(ctx, src, t, batch)
	if err != nil {
		return fmt.Errorf("checksum %s in the source: %w", t.Name, err)
	}
	dstN, dstSum, err := Checksum(ctx, dst, t, batch)
	if err != nil {
		return fmt.Errorf("checksum %s in the destination: %w", t.Name, err)
	}
	r.Rows, r.Checksum = srcN, srcSum
	if srcN != dstN || srcSum != dstSum {
		return fmt.Errorf("%w: %s has %d rows (checksum %.12s) in the source and %d (%.12s) in the destination", ErrMismatch, t.Name, srcN, srcSum, dstN, dstSum)
	}
	return nil
}

// checkDestination reads t's rows in key order on both sides, the
// destination's driving, and fails with ErrForeign at the first
// destination row whose key the source lacks or whose content (the
// checksum's spelling) differs. An empty destination costs one read; a
// partial copy reads the source only as far as the destination goes.
func checkDestination(ctx context.Context, src, dst Database, t Table, batch int) error {
	d := &cursor{db: dst, t: t, batch: batch}
	s := &cursor{db: src, t: t, batch: batch}
	for {
		drow, err := d.next(ctx)
		if err != nil {
			return fmt.Errorf("read %s in the destination: %w", t.Name, err)
		}
		if drow == nil {
			return nil
		}
		var srow []any
		for {
			if srow, err = s.next(ctx); err != nil {
				return fmt.Errorf("read %s in the source: %w", t.Name, err)
			}
			if srow == nil {
				break
			}
			c, err := compareKeys(t, srow, drow)
			if err != nil {
				return fmt.Errorf("%s: %w", t.Name, err)
			}
			if c == 0 {
				break
			}
			if c > 0 { // the source has passed the destination's key
				srow = nil
				break
			}
		}
		if srow == nil {
			return fmt.Errorf("%w: %s has key %v, which the source lacks", ErrForeign, t.Name, drow[:t.Key])
		}
		same, err := sameRow(t, srow, drow)
		if err != nil {
			return fmt.Errorf("%s: %w", t.Name, err)
		}
		if !same {
			return fmt.Errorf("%w: %s has key %v with other content than the source's", ErrForeign, t.Name, drow[:t.Key])
		}
	}
}

// cursor reads one table's rows in key order, a batch at a time.
type cursor struct {
	db    Database
	t     Table
	batch int
	after []any
	rows  [][]any
	done  bool
}

// next returns the next row, or nil after the last.
func (c *cursor) next(ctx context.Context) ([]any, error) {
	if len(c.rows) == 0 && !c.done {
		rows, err := c.db.ReadRows(ctx, c.t, c.after, c.batch)
		if err != nil {
			return nil, err
		}
		c.rows, c.done = rows, len(rows) < c.batch
		if len(rows) > 0 {
			c.after = rows[len(rows)-1][:c.t.Key]
		}
	}
	if len(c.rows) == 0 {
		return nil, nil
	}
	row := c.rows[0]
	c.rows = c.rows[1:]
	return row, nil
}

// compareKeys orders a's key against b's as ReadRows does: text by
// bytes (PostgreSQL's "C" collation, SQLite's default), integers by
// value.
func compareKeys(t Table, a, b []any) (int, error) {
	for i, c := range t.Columns[:t.Key] {
		var r int
		var err error
		switch c.Kind {
		case Text:
			r, err = compareAs[string](a[i], b[i])
		case Int:
			r, err = compareAs[int64](a[i], b[i])
		default:
			err = fmt.Errorf("kind %d cannot be a key", c.Kind)
		}
		if err != nil {
			return 0, fmt.Errorf("key %s: %w", c.Name, err)
		}
		if r != 0 {
			return r, nil
		}
	}
	return 0, nil
}

// compareAs compares two key values of type T (strings compare by bytes).
func compareAs[T cmp.Ordered](a, b any) (int, error) {
	x, ok1 := a.(T)
	y, ok2 := b.(T)
	if !ok1 || !ok2 {
		var want T
		return 0, fmt.Errorf("got %T and %T, want %T", a, b, want)
	}
	return cmp.Compare(x, y), nil
}

// sameRow says whether two rows spell the same for the checksum.
func sameRow(t Table, a, b []any) (bool, error) {
	x, err := appendRow(nil, t, a)
	if err != nil {
		return false, err
	}
	y, err := appendRow(nil, t, b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(x, y), nil
}

// appendRow appends the checksum's spelling of row.
func appendRow(buf []byte, t Table, row []any) ([]byte, error) {
	var err error
	for i, c := range t.Columns {
		if buf, err = appendValue(buf, c, row[i]); err != nil {
			return nil, fmt.Errorf("%s.%s: %w", t.Name, c.Name, err)
		}
	}
	return buf, nil
}

// Checksum reads every row of t in key order and returns their number
// and a SHA-256 over their values, spelled the same whichever backend
// holds them.
func Checksum(ctx context.Context, db Database, t Table, batch int) (int64, string, error) {
	h := sha256.New()
	var n int64
	var buf []byte
	rows := &cursor{db: db, t: t, batch: batch}
	for {
		row, err := rows.next(ctx)
		if err != nil {
			return 0, "", err
		}
		if row == nil {
			return n, hex.EncodeToString(h.Sum(nil)), nil
		}
		if buf, err = appendRow(buf[:0], t, row); err != nil {
			return 0, "", err
		}
		h.Write(buf)
		n++
	}
}

// appendValue appends v's canonical, length-prefixed spelling.
func appendValue(buf []byte, c Column, v any) ([]byte, error) {
	if v == nil {
		if !c.Nullable {
			return nil, errors.New("null in a column that takes none")
		}
		return append(buf, 0), nil
	}
	var b []byte
	switch c.Kind {
	case Text:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("got %T, want string", v)
		}
		b = []byte(s)
	case Int:
		i, ok := v.(int64)
		if !ok {
			return nil, fmt.Errorf("got %T, want int64", v)
		}
		b = binary.BigEndian.AppendUint64(nil, uint64(i))
	case Bytes:
		p, ok := v.([]byte)
		if !ok {
			return nil, fmt.Errorf("got %T, want []byte", v)
		}
		b = p
	case Time:
		tm, ok := v.(time.Time)
		if !ok {
			return nil, fmt.Errorf("got %T, want time.Time", v)
		}
		b = binary.BigEndian.AppendUint64(nil, uint64(tm.UnixNano()/int64(c.precision())))
	case JSON:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("got %T, want string", v)
		}
		var err error
		if b, err = canonicalJSON(s); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown kind %d", c.Kind)
	}
	buf = append(buf, 1)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(b)))
	return append(buf, b...), nil
}

// canonicalJSON respells s with sorted object keys and no spaces, as
// PostgreSQL's jsonb does not keep a document's spelling.
func canonicalJSON(s string) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader([]byte(s)))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("JSON: %w", err)
	}
	return json.Marshal(v)
}
