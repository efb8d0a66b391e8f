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

// TestFormatCharacters: handles and display names refuse invisible
// format characters (Unicode category Cf) except a joiner that joins
// emoji or the letters of a script that uses joiners, and the three
// subdivision flags; a bio allows the ones running text needs.
func TestFormatCharacters(t *testing.T) {
	t.Parallel()
	b := newBundle(t)
	_, token := b.signup("formats")
	const (
		zwj      = "\u200d"
		zwnj     = "\u200c"
		england  = "\U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F"
		family   = "\U0001F468" + zwj + "\U0001F469" + zwj + "\U0001F467"
		rainbow  = "\U0001F3F3\uFE0F" + zwj + "\U0001F308"
		coder    = "\U0001F469\U0001F3FD" + zwj + "\U0001F4BB"
		sinhala  = "\u0DC1\u0DCA" + zwj + "\u0DBB\u0DD3"                          // "Sri"
		persian  = "\u0645\u06CC" + zwnj + "\u0634\u0648\u062F"                   // "mi-shavad"
		devanagi = "\u0915\u094D" + zwj + "\u0937"                                // a half form
		smuggled = "\U0001F3F4\U000E0068\U000E0069\U000E0021\U000E007F"           // tags spelling "hi!"
		badFlag  = "\U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067" // no cancel tag
	)
	tests := []struct {
		name, field, value string
		ok                 bool
	}{
		{"plain", "display_name", "Ada Lovelace", true},
		{"family emoji", "display_name", "Ada " + family, true},
		{"rainbow flag", "display_name", rainbow + " Ada", true},
		{"skin tone sequence", "display_name", coder, true},
		{"England flag", "display_name", "Ada " + england, true},
		{"Sinhala", "display_name", sinhala, true},
		{"Persian", "display_name", persian, true},
		{"Devanagari", "display_name", devanagi, true},
		{"right-to-left override", "display_name", "Ada\u202Etxt.exe", false},
		{"left-to-right embedding", "display_name", "\u202AAda", false},
		{"pop directional", "display_name", "Ada\u202C", false},
		{"isolate", "display_name", "\u2066Ada\u2069", false},
		{"right-to-left mark", "display_name", "Ada\u200F", false},
		{"zero width space", "display_name", "Ad\u200Ba", false},
		{"byte order mark", "display_name", "\uFEFFAda", false},
		{"word joiner", "display_name", "Ada\u2060", false},
		{"soft hyphen", "display_name", "Lov\u00ADelace", false},
		{"joiner between Latin letters", "display_name", "Ad" + zwj + "a", false},
		{"non-joiner between Latin letters", "display_name", "Ad" + zwnj + "a", false},
		{"joiner between Cyrillic letters", "display_name", "\u0410" + zwj + "\u0434\u0430", false},
		{"joiner after an emoji, at the end", "display_name", "Ada \U0001F468" + zwj, false},
		{"joiner at the start", "display_name", zwj + "\U0001F468", false},
		{"joiner after a space", "display_name", "Ada " + zwj + "\U0001F468", false},
		{"two joiners", "display_name", "\U0001F468" + zwj + zwj + "\U0001F469", false},
		{"joiner between emoji and Latin", "display_name", "\U0001F468" + zwj + "Ada", false},
		{"tags smuggling text", "display_name", "Ada " + smuggled, false},
		{"flag without its end", "display_name", "Ada " + badFlag, false},
		{"bare tags", "display_name", "Ada\U000E0041", false},
		{"line separator", "display_name", "Ada\u2028Lovelace", false},
		{"bio: marks in mixed text", "bio", "\u05E9\u05DC\u05D5\u05DD, Ada!\u200F", true},
		{"bio: Thai word breaks", "bio", "\u0E2A\u0E27\u0E31\u0E2A\u200B\u0E14\u0E35", true},
		{"bio: joiners and flags", "bio", family + " " + england + " " + persian + " al" + zwj + "ice", true},
		{"bio: soft hyphen", "bio", "Lov\u00ADelace", true},
		{"bio: right-to-left override", "bio", "Ada\u202Etxt.exe", false},
		{"bio: isolate", "bio", "\u2067Ada", false},
		{"bio: byte order mark", "bio", "Ada\uFEFF", false},
		{"bio: tags smuggling text", "bio", smuggled, false},
		{"bio: deprecated format", "bio", "Ada\u206A", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.do("PATCH", "/v1/users/me", string(mustJSONT(t, map[string]string{tt.field: tt.value})), bearer(token)...)
			if tt.ok {
				mustStatus(t, r, http.StatusOK)
				if got := r.json(t)[tt.field]; got != tt.value {
					t.Fatalf("%s stored as %q", tt.field, got)
				}
				return
			}
			mustStatus(t, r, http.StatusUnprocessableEntity)
			if p := decodeProblem(t, r); len(p.Errors) != 1 || p.Errors[0].Pointer != "/"+tt.field {
				t.Fatalf("errors %+v, want one at /%s", p.Errors, tt.field)
			}
		})
	}

	// Sign-up applies the same rules to the display name, and handles,
	// being ASCII, hold no format character at all.
	for _, tt := range []struct{ name, body, pointer string }{
		{"override in name", `{"handle":"fmt1","password":"correct horse","display_name":"Ada\u202E"}`, "/display_name"},
		{"joiner in name", `{"handle":"fmt2","password":"correct horse","display_name":"Ad\u200Da"}`, "/display_name"},
		{"override in handle", `{"handle":"fmt\u202E3","password":"correct horse"}`, "/handle"},
		{"zero width space in handle", `{"handle":"fmt\u200B4","password":"correct horse"}`, "/handle"},
		{"byte order mark in handle", `{"handle":"\uFEFFfmt5","password":"correct horse"}`, "/handle"},
		{"soft hyphen in handle", `{"handle":"fm\u00ADt6","password":"correct horse"}`, "/handle"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := b.do("POST", "/v1/users", tt.body)
			mustStatus(t, r, http.StatusUnprocessableEntity)
			if p := decodeProblem(t, r); len(p.Errors) != 1 || p.Errors[0].Pointer != tt.pointer {
				t.Fatalf("errors %+v, want one at %s", p.Errors, tt.pointer)
			}
		})
	}
	mustStatus(t, b.do("POST", "/v1/users", `{"handle":"fmt7","password":"correct horse","display_name":"`+family+`"}`), http.StatusCreated)
}

func mustJSONT(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
