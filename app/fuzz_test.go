package app_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// checkAnswer fails unless the response is a success or a well-formed
// 4xx problem: bad input must never be a 500.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder, input string) {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("input %q: status %d: %s", input, rec.Code, rec.Body)
	}
	if rec.Code < 400 {
		return
	}
	var p struct {
		Status int    `json:"status"`
		Type   string `json:"type"`
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("input %q: status %d with Content-Type %q", input, rec.Code, ct)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != rec.Code || p.Type == "" {
		t.Fatalf("input %q: bad problem %s (%v)", input, rec.Body, err)
	}
}

func serve(b *bundle, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	req.RemoteAddr = "192.0.2.1:1234"
	b.handler.ServeHTTP(rec, req)
	return rec
}

// FuzzJSONBody sends arbitrary bodies to every JSON endpoint.
func FuzzJSONBody(f *testing.F) {
	for _, s := range []string{
		`{"bio":"hi"}`, `{"display_name":null}`, `{"bio":5}`, `{"x":1}`, `[]`, `null`, `"s"`, `{`, `{"bio":"a"}{}`,
		`{"handle":"fuzzer","password":"correct horse"}`, `{"bio":"\ud800"}`, `{"bio":"a","bio":null}`, "\xff", ``,
		`{"handle":"` + strings.Repeat("a", 40) + `","password":1}`, `{"current_password":"x","new_password":"y"}`,
		`{"a/b~c":1}`, `{"bio":"` + strings.Repeat("\\u0000", 10) + `"}`, `1e999`, `{"handle":"fuzz","password":"correct horse","display_name":{}}`,
	} {
		f.Add(s)
	}
	b := newBundle(f)
	_, token := b.signup("fuzzer")
	routes := []struct{ method, path string }{
		{"PATCH", "/v1/users/me"}, {"POST", "/v1/users"}, {"POST", "/v1/sessions"}, {"PUT", "/v1/users/me/password"},
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, r := range routes {
			req := httptest.NewRequest(r.method, r.path, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+token)
			rec := serve(b, req)
			checkAnswer(t, rec, body)
			if r.method == "PATCH" && rec.Code == http.StatusOK && !json.Valid([]byte(body)) {
				t.Fatalf("invalid JSON %q accepted", body)
			}
		}
	})
}

// FuzzCursor sends arbitrary cursor and limit parameters to the list.
func FuzzCursor(f *testing.F) {
	f.Add("", "10")
	f.Add("dTE6MDE5MDAwMDAtMDAwMC03MDAwLTgwMDAtMDAwMDAwMDAwMDAw", "1") // "u1:" + a valid id
	f.Add("dTE6", "0")
	f.Add("!!", "-1")
	f.Add(strings.Repeat("A", 5000), "99999999999999999999")
	b := newBundle(f)
	b.signup("listed")
	f.Fuzz(func(t *testing.T, cursor, limit string) {
		q := url.Values{"cursor": {cursor}, "limit": {limit}}
		rec := serve(b, httptest.NewRequest("GET", "/v1/users?"+q.Encode(), nil))
		checkAnswer(t, rec, cursor+"|"+limit)
		if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
			t.Fatalf("cursor %q limit %q: status %d", cursor, limit, rec.Code)
		}
	})
}
