package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

// object is a decoded JSON request body: the members by name, and the
// field errors found while reading them. Reading a body in two steps
// (members first, then each as its own type) tells malformed JSON (400)
// from a wrong member (422 with its pointer), and tells a member set to
// null from one left out, which merge-patch needs.
type object struct {
	members map[string]json.RawMessage
	used    map[string]bool
	errs    []FieldError
}

// readObject reads a JSON object body of at most max bytes whose content
// type is one of types.
func readObject(c echo.Context, max int64, types ...string) (*object, error) {
	r := c.Request()
	mt, _, err := mime.ParseMediaType(r.Header.Get(echo.HeaderContentType))
	if err != nil || !slices.Contains(types, mt) {
		return nil, problem(http.StatusUnsupportedMediaType, "unsupported-media-type",
			"send the body as "+strings.Join(types, " or "))
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, problem(http.StatusRequestEntityTooLarge, "too-large", fmt.Sprintf("the body must be at most %d bytes", max))
		}
		return nil, problem(http.StatusBadRequest, "bad-request", "the body could not be read")
	}
	return parseObject(body)
}

// parseObject is readObject without the HTTP parts.
func parseObject(body []byte) (*object, error) {
	if !utf8.Valid(body) {
		return nil, problem(http.StatusBadRequest, "malformed-json", "the body is not valid UTF-8")
	}
	// Decoding into a RawMessage checks the syntax (and the nesting
	// limit) without building the value.
	dec := json.NewDecoder(bytes.NewReader(body))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, problem(http.StatusBadRequest, "malformed-json", "the body is not valid JSON: "+jsonErrDetail(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, problem(http.StatusBadRequest, "malformed-json", "the body has data after the JSON value")
	}
	if raw = bytes.TrimSpace(raw); len(raw) == 0 || raw[0] != '{' {
		return nil, invalid(FieldError{Pointer: "", Detail: "the body must be a JSON object"})
	}
	if err := noDuplicates(raw); err != nil {
		return nil, err
	}
	o := &object{used: map[string]bool{}}
	// Valid JSON without duplicate members now, so this cannot fail.
	_ = json.Unmarshal(raw, &o.members)
	return o, nil
}

// noDuplicates refuses a JSON value in which an object names a member
// twice, at any depth: encoding/json would keep the last silently, and a
// proxy or another parser in front of us may keep the first. The answer
// is a 422 pointing at each repeat (the first maxFieldErrors of them).
//
// It reads the value once as a token stream: each object keeps the set
// of its member names, so the work and memory are linear in the body,
// and a pointer is built only for a repeat.
func noDuplicates(raw []byte) error {
	// frame is one open object or array; pointer reads the path off the
	// stack.
	type frame struct {
		array   bool
		index   int    // array: the element being read
		key     string // object: the member being read
		wantKey bool   // object: the next token is a name or '}'
		seen    map[string]struct{}
	}
	var (
		stack   []frame
		errs    []FieldError
		omitted int
	)
	pointer := func(last string) string {
		var b strings.Builder
		for _, f := range stack[:len(stack)-1] {
			b.WriteByte('/')
			if f.array {
				b.WriteString(strconv.Itoa(f.index))
			} else {
				b.WriteString(escapePointer(f.key))
			}
		}
		return b.String() + "/" + escapePointer(last)
	}
	// valueDone moves the innermost container past the value just read.
	valueDone := func() {
		if len(stack) == 0 {
			return
		}
		if top := &stack[len(stack)-1]; top.array {
			top.index++
		} else {
			top.wantKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // no float parsing: only the structure matters here
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil { // raw was checked already; kept for safety
			return problem(http.StatusBadRequest, "malformed-json", "the body is not valid JSON: "+jsonErrDetail(err))
		}
		if n := len(stack); n > 0 && !stack[n-1].array && stack[n-1].wantKey {
			top := &stack[n-1]
			if name, ok := tok.(string); ok {
				if _, dup := top.seen[name]; dup {
					if len(errs) < maxFieldErrors {
						errs = append(errs, FieldError{Pointer: pointer(name), Detail: "is a duplicate member: each name may appear once in an object"})
					} else {
						omitted++ // no pointer: building each would be quadratic
					}
				} else {
					if top.seen == nil {
						top.seen = map[string]struct{}{}
					}
					top.seen[name] = struct{}{}
				}
				top.key, top.wantKey = name, false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{wantKey: true})
		case json.Delim('['):
			stack = append(stack, frame{array: true})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone()
		default:
			valueDone()
		}
	}
	if len(errs) == 0 {
		return nil
	}
	p := invalid(errs...)
	p.ErrorsOmitted += omitted
	return p
}

func jsonErrDetail(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s at byte %d", se.Error(), se.Offset)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "it ends too early"
	}
	return err.Error()
}

// str reads member name as a string. present is false when the member is
// absent; null is true when it is JSON null (allowed only if nullable).
func (o *object) str(name string, nullable bool) (val string, present, null bool) {
	raw, ok := o.members[name]
	if !ok {
		return "", false, false
	}
	o.used[name] = true
	if string(raw) == "null" {
		if !nullable {
			o.fail(name, "must not be null")
		}
		return "", true, true
	}
	if err := json.Unmarshal(raw, &val); err != nil {
		o.fail(name, "must be a string")
		return "", true, false
	}
	return val, true, false
}

// required reads a string member that must be present and non-null.
func (o *object) required(name string) string {
	v, present, _ := o.str(name, false)
	if !present {
		o.fail(name, "is required")
	}
	return v
}

func (o *object) fail(name, detail string) {
	o.errs = append(o.errs, FieldError{Pointer: "/" + escapePointer(name), Detail: detail})
}

// done reports unknown members and every field error as one 422.
func (o *object) done() error {
	for name := range o.members {
		if !o.used[name] {
			o.fail(name, "is not a known field")
		}
	}
	if len(o.errs) == 0 {
		return nil
	}
	slices.SortFunc(o.errs, func(a, b FieldError) int { return strings.Compare(a.Pointer, b.Pointer) })
	return invalid(o.errs...)
}

// escapePointer escapes one RFC 6901 reference token.
func escapePointer(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("app: marshal %T: %v", v, err)) // our own types always marshal
	}
	return b
}
