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
		`{"x":[{"a":1,"a":2}]}`, `{"bio":"a","b\u0069o":"b"}`, `{"display_name":"\u202eA"}`, `{"display_name":"\ud83d\udc68\u200d\ud83d\udc69"}`,
		`{"a":{"b":[[{}],{"c":0,"c":0}]}}`, `{"bio":"x\u2066"}`,
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
			if rec.Code == http.StatusUnprocessableEntity {
				var p struct {
					Errors []json.RawMessage `json:"errors"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || len(p.Errors) > 20 {
					t.Fatalf("input %q: %d errors listed", body, len(p.Errors))
				}
			}
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

// FuzzUpload sends arbitrary bytes as a photo: the answer is a 202 or a
// clean 4xx problem, never a 500, whatever the header claims.
func FuzzUpload(f *testing.F) {
	f.Add([]byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00"))
	f.Add(hugePNG())
	f.Add([]byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"))
	f.Add([]byte("RIFF\x1a\x00\x00\x00WEBPVP8 "))
	f.Add([]byte("not an image"))
	b := newBundle(f, func(s *setup) { s.noWorkers = true; s.opts.MaxUploadBytes = 1 << 20 })
	_, token := b.signup("fuzzup")
	f.Fuzz(func(t *testing.T, data []byte) {
		req := httptest.NewRequest("POST", "/v1/photos", strings.NewReader(string(data)))
		req.Header.Set("Content-Type", "image/png")
		req.Header.Set("Authorization", "Bearer "+token)
		rec := serve(b, req)
		checkAnswer(t, rec, string(data))
		if rec.Code != http.StatusAccepted && rec.Code >= 300 && (rec.Code < 400 || rec.Code >= 500) {
			t.Fatalf("status %d", rec.Code)
		}
	})
}
