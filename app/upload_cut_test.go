package app_test

import (
	"bytes"
	"io/fs"
	"mime/multipart"
	"net/http"
	"path/filepath"
	"testing"
)

// TestUploadCutShort: a multipart body that ends inside the file, or
// after it without the closing boundary, is a 400 problem and leaves no
// file behind, for a first upload and for a retry under its key alike.
// FuzzMultipart found the first (was 500 "store original: multipart:
// NextPart: EOF"); the retry was 500 "read retried upload".
func TestUploadCutShort(t *testing.T) {
	t.Parallel()
	b := newBundle(t, func(s *setup) { s.noWorkers = true })
	_, token := b.signup("cutshort")
	img := smallPNG(t)
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, err := mw.CreateFormFile("file", "a.png")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fw.Write(img)
	whole := form.Len() // the file's part, without the closing boundary
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	upload := func(body []byte, key string) response {
		req, err := http.NewRequest("POST", b.url+"/v1/photos", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		headers := append(bearer(token), "Content-Type", mw.FormDataContentType())
		if key != "" {
			headers = append(headers, "Idempotency-Key", key)
		}
		return b.send(req, headers...)
	}
	mustStatus(t, upload(form.Bytes(), "taken"), http.StatusAccepted)
	files := func() []string {
		var found []string
		err := filepath.WalkDir(b.mediaDir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				found = append(found, p)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return found
	}
	before := files()
	cut := form.Len() - len(img)/2 - (form.Len() - whole) // inside the file, past its header
	tests := []struct {
		name string
		body []byte
		key  string
	}{
		{"inside the file", form.Bytes()[:cut], ""},
		{"without the closing boundary", form.Bytes()[:whole], ""},
		{"a retry inside the file", form.Bytes()[:cut], "taken"},
		{"a retry without the closing boundary", form.Bytes()[:whole], "taken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustProblem(t, upload(tt.body, tt.key), http.StatusBadRequest, "")
		})
	}
	if after := files(); len(after) != len(before) {
		t.Errorf("media storage holds %v, before the cut uploads %v", after, before)
	}
}
