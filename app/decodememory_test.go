package app_test

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"strings"
	"testing"

	"onebox/imaging"
)

// paddedPNG is a small PNG followed by 1 MiB that no decoder reads, so
// that the file's size weighs in its memory estimate.
func paddedPNG(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, 40, 30))); err != nil {
		t.Fatal(err)
	}
	return append(b.Bytes(), make([]byte, 1<<20)...)
}

// estimate is the memory the upload's check charges data at when the
// request declares fileSize bytes.
func estimate(t *testing.T, data []byte, fileSize int64) int64 {
	t.Helper()
	h, err := imaging.Probe(bytes.NewReader(data), 0)
	if err != nil {
		t.Fatal(err)
	}
	h.FileSize = fileSize
	return h.DecodeBytes()
}

// TestUploadRefusedOverDecodeMemory: an upload whose image the pipeline
// could not process within its decode budget is refused at once (422,
// with the need and the limit), before it is stored or queued; one at
// exactly the budget is accepted and processed. The request's declared
// length bounds the file, which is not read yet.
func TestUploadRefusedOverDecodeMemory(t *testing.T) {
	t.Parallel()
	data := paddedPNG(t)
	atBudget := estimate(t, data, int64(len(data))) // a raw body declares the file's length

	t.Run("over", func(t *testing.T) {
		t.Parallel()
		b := newBundle(t, func(s *setup) { s.opts.DecodeMemory = atBudget - 1 })
		_, token := b.signup("heavy")
		for _, multipart := range []bool{false, true} {
			r := b.uploadBytes(token, data, multipart)
			if r.StatusCode != http.StatusUnprocessableEntity || r.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("multipart %v: %d %s, want 422 problem+json", multipart, r.StatusCode, r.body)
			}
			p := r.json(t)
			detail, _ := p["detail"].(string)
			limit := fmt.Sprintf("; the limit is %d MiB", (atBudget-1)>>20)
			if !strings.HasPrefix(detail, "this image needs about ") || !strings.HasSuffix(detail, limit) {
				t.Errorf("detail %q, want the need and the limit", detail)
			}
			errs, _ := p["errors"].([]any)
			if len(errs) != 1 || errs[0].(map[string]any)["pointer"] != "/file" || errs[0].(map[string]any)["detail"] != detail {
				t.Errorf("errors %v, want /file with the same detail", p["errors"])
			}
		}
		if n := b.count("photos_insert"); n != 0 {
			t.Errorf("%d photos created", n)
		}
	})
	t.Run("at budget", func(t *testing.T) {
		t.Parallel()
		b := newBundle(t, func(s *setup) { s.opts.DecodeMemory = atBudget })
		_, token := b.signup("light")
		r := b.uploadBytes(token, data, false)
		mustStatus(t, r, http.StatusAccepted)
		if n := b.count("photos_insert"); n != 1 {
			t.Errorf("%d photos created, want 1", n)
		}
		if ph := b.waitPhoto(token, r.json(t)["id"].(string)); ph["status"] != "ready" {
			t.Errorf("photo %v, want ready", ph)
		}
	})
}
