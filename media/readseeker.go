package media

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// ErrChanged is returned by a ReadSeeker whose object was replaced
// between its Stat and a range read.
var ErrChanged = errors.New("media: object changed while read")

// ReadSeeker reads one version of an object as an io.ReadSeeker, for
// http.ServeContent, on a Storage that does not seek: Seek only moves
// the position, and Read opens a range from there to the end when none
// is open at it. Every range must carry the ETag of info, the version
// whose headers were sent; a read that finds another fails with
// ErrChanged rather than splice two versions into one answer.
type ReadSeeker struct {
	ctx  context.Context
	s    Storage
	key  string
	info Info
	pos  int64
	obj  Object // open at pos, or nil
}

// NewReadSeeker returns a ReadSeeker of key, whose Info (from Stat) is
// info. Close closes the range it holds open.
func NewReadSeeker(ctx context.Context, s Storage, key string, info Info) *ReadSeeker {
	return &ReadSeeker{ctx: ctx, s: s, key: key, info: info}
}

// Read reads from the range open at the position, opening one first if
// none is.
func (r *ReadSeeker) Read(p []byte) (int, error) {
	if r.pos >= r.info.Size {
		return 0, io.EOF
	}
	if r.obj == nil {
		var (
			obj Object
			err error
		)
		if r.pos == 0 {
			obj, err = r.s.Open(r.ctx, r.key)
		} else {
			obj, err = r.s.OpenRange(r.ctx, r.key, r.pos, r.info.Size-r.pos)
		}
		if err != nil {
			return 0, err
		}
		if got := obj.Info().ETag; got != r.info.ETag {
			_ = obj.Close()
			return 0, fmt.Errorf("%q is %s, was %s: %w", r.key, got, r.info.ETag, ErrChanged)
		}
		r.obj = obj
	}
	n, err := r.obj.Read(p)
	r.pos += int64(n)
	if errors.Is(err, io.EOF) && r.pos < r.info.Size {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Seek moves the position; the range open elsewhere is closed.
func (r *ReadSeeker) Seek(offset int64, whence int) (int64, error) {
	pos := offset
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		pos += r.pos
	case io.SeekEnd:
		pos += r.info.Size
	default:
		return r.pos, fmt.Errorf("media: seek: bad whence %d", whence)
	}
	if pos < 0 {
		return r.pos, fmt.Errorf("media: seek to %d: negative position", pos)
	}
	if pos != r.pos {
		r.closeObj()
		r.pos = pos
	}
	return pos, nil
}

// Close closes the open range, if any.
func (r *ReadSeeker) Close() error {
	if r.obj == nil {
		return nil
	}
	err := r.obj.Close()
	r.obj = nil
	return err
}

func (r *ReadSeeker) closeObj() { _ = r.Close() }
