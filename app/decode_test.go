package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// problemBody is the part of a 422 the decoding tests read.
type problemBody struct {
	Status int `json:"status"`
	Errors []struct {
		Pointer string `json:"pointer"`
		Detail  string `json:"detail"`
	} `json:"errors"`
	ErrorsOmitted int `json:"errors_omitted"`
}

func decodeProblem(t *testing.T, r response) problemBody {
	t.Helper()
	var p problemBody
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem %q: %v", r.body, err)
	}
	return p
}

// members is a JSON object of n members named by name(i), each 0.
func members(n int, name func(int) string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:0", name(i))
	}
	b.WriteByte('}')
	return b.String()
}

// TestFieldErrorsAreCapped: a 422 lists at most 20 field errors and
// counts the rest, so its size does not grow with the body.
func TestFieldErrorsAreCapped(t *testing.T) {
	t.Parallel()
	b := newBundle(t, func(s *setup) { s.opts.MaxBodyBytes = 64 << 10 }) // the default
	_, token := b.signup("capped")
	unknown := func(i int) string { return fmt.Sprintf("k%04d", i) }
	deep := `{"x":` + strings.Repeat("[", 5000) + members(2000, func(int) string { return "a" }) + strings.Repeat("]", 5000) + "}"
	tests := []struct {
		name        string
		body        string
		listed      int
		omitted     int
		first       string // pointer of the first listed error
		maxBodySize int
	}{
		{"one unknown", members(1, unknown), 1, 0, "/k0000", 1 << 10},
		{"twenty unknown", members(20, unknown), 20, 0, "/k0000", 4 << 10},
		{"twenty-one unknown", members(21, unknown), 20, 1, "/k0000", 4 << 10},
		{"5000 unknown", members(5000, unknown), 20, 4980, "/k0000", 4 << 10},
		{"5000 unknown and a bad bio", `{"bio":5,` + members(5000, unknown)[1:], 20, 4981, "/bio", 4 << 10},
		{"5000 duplicates", members(5000, func(int) string { return "bio" }), 20, 4979, "/bio", 4 << 10},
		// Each pointer would repeat 5000 array indexes: they are cut.
		{"2000 duplicates 5000 deep", deep, 20, 1979, "/x" + strings.Repeat("/0", 63), 8 << 10},
		{"a 30 KB name", members(1, func(int) string { return strings.Repeat("<", 30<<10) }), 1, 0, "", 1 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.do("PATCH", "/v1/users/me", tt.body, bearer(token)...)
			mustStatus(t, r, http.StatusUnprocessableEntity)
			p := decodeProblem(t, r)
			if len(p.Errors) != tt.listed || p.ErrorsOmitted != tt.omitted {
				t.Fatalf("%d errors listed and %d omitted, want %d and %d", len(p.Errors), p.ErrorsOmitted, tt.listed, tt.omitted)
			}
			if p.Errors[0].Pointer != tt.first {
				t.Errorf("first pointer %q, want %q", p.Errors[0].Pointer, tt.first)
			}
			t.Logf("%d-byte body: %d-byte answer", len(tt.body), len(r.body))
			if len(r.body) > tt.maxBodySize {
				t.Errorf("answer of %d bytes to a body of %d, want at most %d", len(r.body), len(tt.body), tt.maxBodySize)
			}
		})
	}
	// The omitted count is absent when nothing was left out.
	r := b.do("PATCH", "/v1/users/me", `{"nick":1}`, bearer(token)...)
	if strings.Contains(string(r.body), "errors_omitted") {
		t.Errorf("errors_omitted in %s", r.body)
	}
}

// TestDuplicateMembers: a member named twice in any object of the body
// is a 422 pointing at the repeat; nothing is written.
func TestDuplicateMembers(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	_, token := b.signup("twice")
	auth := bearer(token)
	const dup = "duplicate"
	tests := []struct {
		name, method, path, body string
		pointer, detail          string // the only error's pointer and part of its detail
	}{
		{"patch", "PATCH", "/v1/users/me", `{"bio":"a","bio":"b"}`, "/bio", dup},
		{"null then value", "PATCH", "/v1/users/me", `{"bio":null,"display_name":"x","bio":"b"}`, "/bio", dup},
		{"escaped name", "PATCH", "/v1/users/me", `{"bio":"a","b\u0069o":"b"}`, "/bio", dup},
		{"nested", "PATCH", "/v1/users/me", `{"bio":{"x":1,"x":2}}`, "/bio/x", dup},
		{"in an array", "PATCH", "/v1/users/me", `{"bio":[{"a":1},{"a":1,"a":2}]}`, "/bio/1/a", dup},
		{"deep", "PATCH", "/v1/users/me", `{"x":{"y":[0,[],{"z":{"k":1,"l":[],"k":2}}]}}`, "/x/y/2/z/k", dup},
		{"escaped pointer", "PATCH", "/v1/users/me", `{"a/b~c":1,"a/b~c":2}`, "/a~1b~0c", dup},
		{"sign-up", "POST", "/v1/users", `{"handle":"twice2","password":"correct horse","handle":"other"}`, "/handle", dup},
		{"login", "POST", "/v1/sessions", `{"handle":"twice","password":"wrong wrong","password":"correct horse"}`, "/password", dup},
		{"password change", "PUT", "/v1/users/me/password", `{"current_password":"correct horse","new_password":"x","new_password":"battery staple"}`, "/new_password", dup},
		// Not duplicates: the same name in two objects, or in two cases.
		{"two objects", "PATCH", "/v1/users/me", `{"bio":"a","x":{"bio":1}}`, "/x", "not a known field"},
		{"case differs", "PATCH", "/v1/users/me", `{"bio":"a","Bio":"b"}`, "/Bio", "not a known field"},
		{"array of names", "PATCH", "/v1/users/me", `{"bio":"a","x":["bio","bio"]}`, "/x", "not a known field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.do(tt.method, tt.path, tt.body, auth...)
			mustStatus(t, r, http.StatusUnprocessableEntity)
			p := decodeProblem(t, r)
			if len(p.Errors) != 1 || p.Errors[0].Pointer != tt.pointer || !strings.Contains(p.Errors[0].Detail, tt.detail) {
				t.Fatalf("errors %+v, want one at %s saying %q", p.Errors, tt.pointer, tt.detail)
			}
		})
	}
	me := b.do("GET", "/v1/users/me", "", auth...)
	if m := me.json(t); m["bio"] != "" || m["version"] != 1.0 {
		t.Fatalf("a refused patch changed the profile: %s", me.body)
	}
	b.login("twice", "correct horse") // the password change was refused
	// One of each is fine.
	mustStatus(t, b.do("PATCH", "/v1/users/me", `{"bio":"a","display_name":"b"}`, auth...), http.StatusOK)
}

func mustJSONT(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
