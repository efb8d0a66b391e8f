package app

import (
	"cmp"
	"io"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// maxRanges is the most ranges a Range header may list; past it the
// header is ignored and the whole body answers. Eight covers every
// client seen in practice (browsers and media players ask for one,
// download managers for a few) while bounding the multipart overhead,
// which ServeContent would otherwise pay per range: 8000 ranges of one
// byte made a 1 MB answer out of a 32 KB file.
const maxRanges = 8

// serveContent is http.ServeContent for content of size bytes, with the
// Range header bounded first (see limitRanges) and a 416 answered as
// problem+json rather than ServeContent's text/plain.
func serveContent(c echo.Context, modtime time.Time, content io.ReadSeeker, size int64) {
	r := c.Request()
	if h := r.Header.Get("Range"); h != "" {
		if limited, changed := limitRanges(h, size); changed {
			r = r.Clone(r.Context()) // the request's own header stays as the client sent it
			if limited == "" {
				r.Header.Del("Range")
			} else {
				r.Header.Set("Range", limited)
			}
		}
	}
	w := &rangeProblemWriter{ResponseWriter: c.Response(), requestID: c.Response().Header().Get(echo.HeaderXRequestID)}
	http.ServeContent(w, r, "", modtime, content)
}

// byteRange is a satisfiable range, start inclusive, end exclusive.
type byteRange struct{ start, end int64 }

// limitRanges returns the Range header to serve instead of h for content
// of size bytes, and whether it differs: "" (ignore the header, 200) for
// more than maxRanges ranges; otherwise, if some ranges overlap or touch,
// their union, sorted, in absolute positions (RFC 9110 §14.2 lets a
// server coalesce them); if no range holds a byte, one past the end, so
// that ServeContent answers 416. A header ServeContent would refuse
// (malformed, or no range inside the content) is left to it, which
// answers 416.
// Ranges are parsed as ServeContent parses them.
func limitRanges(h string, size int64) (string, bool) {
	specs, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return h, false
	}
	var ranges []byteRange
	n := 0 // non-empty range specs, counted before any parsing
	for spec := range strings.SplitSeq(specs, ",") {
		spec = textproto.TrimString(spec)
		if spec == "" {
			continue
		}
		if n++; n > maxRanges {
			return "", true
		}
		ra, satisfiable, valid := parseByteRange(spec, size)
		if !valid {
			return h, false
		}
		if satisfiable && ra.end > ra.start {
			ranges = append(ranges, ra)
		}
	}
	if len(ranges) == 0 {
		if n > 0 {
			// Every range is valid and none holds a byte: past the end,
			// or a zero suffix ("-0"), which RFC 9110 §14.1.1 calls
			// unsatisfiable but ServeContent answers with a 206 and a
			// Content-Range whose last byte precedes its first. A range
			// at the end is one ServeContent answers with a 416.
			return "bytes=" + strconv.FormatInt(size, 10) + "-", true
		}
		return h, false
	}
	slices.SortFunc(ranges, func(a, b byteRange) int { return cmp.Compare(a.start, b.start) })
	merged := ranges[:1]
	for _, ra := range ranges[1:] {
		last := &merged[len(merged)-1]
		if ra.start <= last.end {
			last.end = max(last.end, ra.end)
			continue
		}
		merged = append(merged, ra)
	}
	if len(merged) == n {
		return h, false // nothing to coalesce: serve what was asked, in its order
	}
	var b strings.Builder
	b.WriteString("bytes=")
	for i, ra := range merged {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(ra.start, 10))
		b.WriteByte('-')
		b.WriteString(strconv.FormatInt(ra.end-1, 10))
	}
	return b.String(), true
}

// parseByteRange parses one range spec as net/http's parseRange does:
// valid is false where it fails the whole header, satisfiable false for
// a range that begins at or after size.
func parseByteRange(spec string, size int64) (ra byteRange, satisfiable, valid bool) {
	first, last, ok := strings.Cut(spec, "-")
	if !ok {
		return byteRange{}, false, false
	}
	first, last = textproto.TrimString(first), textproto.TrimString(last)
	if first == "" { // the last bytes
		if last == "" || last[0] == '-' {
			return byteRange{}, false, false
		}
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			return byteRange{}, false, false
		}
		return byteRange{start: size - min(n, size), end: size}, true, true
	}
	start, err := strconv.ParseInt(first, 10, 64)
	if err != nil || start < 0 {
		return byteRange{}, false, false
	}
	if start >= size {
		return byteRange{}, false, true
	}
	end := size
	if last != "" {
		e, err := strconv.ParseInt(last, 10, 64)
		if err != nil || start > e {
			return byteRange{}, false, false
		}
		end = min(e, size-1) + 1
	}
	return byteRange{start: start, end: end}, true, true
}

// rangeProblemWriter replaces the text/plain body of the 416 that
// http.ServeContent writes with a problem.
type rangeProblemWriter struct {
	http.ResponseWriter
	requestID string
	replaced  bool
}

func (w *rangeProblemWriter) WriteHeader(code int) {
	if code != http.StatusRequestedRangeNotSatisfiable {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	p := *problem(code, "range-not-satisfiable", "the Range header is malformed, or no range in it begins inside the file")
	p.RequestID = w.requestID
	body := mustJSON(p)
	h := w.Header()
	h.Set(echo.HeaderContentType, "application/problem+json")
	h.Set(echo.HeaderContentLength, strconv.Itoa(len(body)))
	h.Set(echo.HeaderCacheControl, "no-store")
	w.ResponseWriter.WriteHeader(code)
	w.replaced = true
	_, _ = w.ResponseWriter.Write(body)
}

func (w *rangeProblemWriter) Write(b []byte) (int, error) {
	if w.replaced {
		return len(b), nil // ServeContent's own text
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *rangeProblemWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
