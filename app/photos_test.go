package app_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"onebox/internal/testimages"
	"onebox/media"
	"onebox/photos"
)

// images is the repository's test corpus, testdata/images (see its
// SOURCES.tsv), from this package's directory.
var images = filepath.Join("..", "testdata", "images")

// needImages fails the test if the corpus is missing: it is part of the
// repository, so its absence is a broken checkout, not a reason to skip.
func needImages(t testing.TB) {
	t.Helper()
	testimages.Dir(t)
}

// uploadFile posts a file, as multipart or as a raw body.
func (b *bundle) upload(token, path string, multipartForm bool, headers ...string) response {
	b.t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.uploadBytes(token, data, multipartForm, headers...)
}

func (b *bundle) uploadBytes(token string, data []byte, multipartForm bool, headers ...string) response {
	b.t.Helper()
	var body bytes.Buffer
	ct := "image/jpeg" // declared, never trusted
	if multipartForm {
		w := multipart.NewWriter(&body)
		fw, _ := w.CreateFormFile("file", "upload.bin")
		fw.Write(data)
		w.Close()
		ct = w.FormDataContentType()
	} else {
		body.Write(data)
	}
	req, _ := http.NewRequest("POST", b.url+"/v1/photos", &body)
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer "+token)
	return b.send(req, headers...)
}

// waitPhoto polls GET /v1/photos/{id} until the pipeline is done.
func (b *bundle) waitPhoto(token, id string) map[string]any {
	b.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r := b.do("GET", "/v1/photos/"+id, "", bearer(token)...)
		mustStatus(b.t, r, http.StatusOK)
		m := r.json(b.t)
		if m["status"] != "processing" {
			return m
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("photo %s still processing", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type corpusFile struct {
	path, observed string
}

func corpus(t *testing.T) []corpusFile {
	f, err := os.Open(filepath.Join(images, "SOURCES.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var files []corpusFile
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) < 7 || cols[0] == "file" {
			continue
		}
		files = append(files, corpusFile{path: cols[0], observed: cols[6]})
	}
	return files
}

var dims = regexp.MustCompile(`go:\w+ (\d+)x(\d+) decode=ok`)

// TestEveryCorpusImage sends every file of the corpus through the upload
// and the pipeline: decodable ones end ready with their upright size and
// six variants; the rest get a clear 4xx or end rejected with a reason a
// person can read. Nothing crashes or hangs.
func TestEveryCorpusImage(t *testing.T) {
	needImages(t)
	b := newBundle(t)
	_, token := b.signup("corpus")
	raw := regexp.MustCompile(`(?i)invalid jpeg format|png: |unexpected eof|huffman|runtime error`)
	for i, cf := range corpus(t) {
		t.Run(cf.path, func(t *testing.T) {
			r := b.upload(token, filepath.Join(images, cf.path), i%2 == 0)
			if r.StatusCode != http.StatusAccepted {
				if r.StatusCode >= 500 || r.Header.Get("Content-Type") != "application/problem+json" {
					t.Fatalf("upload: %d %s", r.StatusCode, r.body)
				}
				if dims.MatchString(cf.observed) && !strings.Contains(cf.path, "bomb") {
					t.Fatalf("decodable file refused at upload: %d %s", r.StatusCode, r.body)
				}
				return
			}
			if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, "/v1/photos/") {
				t.Fatalf("Location %q", loc)
			}
			ans := r.json(t)
			if ans["status"] != "processing" || ans["events_url"] != "/v1/photos/"+ans["id"].(string)+"/events" {
				t.Fatalf("202 body %v", ans)
			}
			ph := b.waitPhoto(token, ans["id"].(string))
			m := dims.FindStringSubmatch(cf.observed)
			switch {
			case strings.Contains(cf.path, "bomb"):
				t.Fatalf("the decompression bomb was accepted: %v", ph)
			case m == nil:
				if ph["status"] == "ready" {
					return // a lenient decoder may manage a damaged file; fine
				}
				reason, _ := ph["reason"].(string)
				if ph["status"] != "rejected" || reason == "" || raw.MatchString(reason) {
					t.Fatalf("undecodable file: %v", ph)
				}
			default:
				if ph["status"] != "ready" {
					t.Fatalf("decodable file not ready: %v", ph)
				}
				w, h := m[1], m[2]
				if strings.Contains(cf.path, "Landscape_") && w == "1200" {
					w, h = h, w // orientations 5-8 are stored rotated
				}
				if got := fmt.Sprint(ph["width"], "x", ph["height"]); got != w+"x"+h {
					t.Fatalf("size %s, want %sx%s", got, w, h)
				}
				if n := len(ph["variants"].([]any)); n < 2 || n > 6 {
					t.Fatalf("%d variants", n)
				}
			}
		})
	}
}

func TestUploadRefusals(t *testing.T) {
	t.Parallel()
	needImages(t)
	b := newBundle(t, func(s *setup) { s.opts.MaxUploadBytes = 1 << 20 })
	_, token := b.signup("refused")
	small := filepath.Join(images, "formats", "jpeg_gray_hopper.jpg")
	tests := []struct {
		name   string
		data   []byte
		status int
	}{
		{"text", []byte("hello, this is not an image at all"), http.StatusUnsupportedMediaType},
		{"empty", nil, http.StatusUnprocessableEntity},
		{"too large", bytes.Repeat([]byte{0xff}, 2<<20), http.StatusRequestEntityTooLarge},
		// The bomb is just over the byte limit, but its header is read first.
		{"bomb", mustRead(t, filepath.Join(images, "large", "bomb_jpeg_20000x14000_gray_synthetic.jpg")), http.StatusUnprocessableEntity},
		{"huge PNG header", hugePNG(), http.StatusUnprocessableEntity},
	}
	for _, tt := range tests {
		for _, mp := range []bool{false, true} {
			r := b.uploadBytes(token, tt.data, mp)
			if r.StatusCode != tt.status || r.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("%s (multipart %v): %d %s, want %d", tt.name, mp, r.StatusCode, r.body, tt.status)
			}
		}
	}
	// Wrong content type altogether, and no file field.
	r := b.do("POST", "/v1/photos", `{"file":"x"}`, bearer(token)...)
	mustStatus(t, r, http.StatusUnsupportedMediaType)
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	w.WriteField("note", "no file here")
	w.Close()
	r = b.do("POST", "/v1/photos", body.String(), append(bearer(token), "Content-Type", w.FormDataContentType())...)
	mustStatus(t, r, http.StatusUnprocessableEntity)
	// Anonymous uploads are refused.
	mustStatus(t, b.do("POST", "/v1/photos", "x", "Content-Type", "image/png"), http.StatusUnauthorized)
	// A small image passes the same limits.
	mustStatus(t, b.upload(token, small, false), http.StatusAccepted)
}

func TestBombRefusedByPixelsBeforeDecode(t *testing.T) {
	t.Parallel()
	needImages(t)
	b := newBundle(t, func(s *setup) { s.opts.MaxUploadBytes = 8 << 20 })
	_, token := b.signup("bomber")
	r := b.upload(token, filepath.Join(images, "large", "bomb_jpeg_20000x14000_gray_synthetic.jpg"), true)
	mustStatus(t, r, http.StatusUnprocessableEntity)
	if !strings.Contains(string(r.body), "megapixels") {
		t.Fatalf("bomb refusal %s", r.body)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hugePNG is a PNG header declaring 65536×65536 pixels and nothing else.
func hugePNG() []byte {
	ihdr := []byte{0, 1, 0, 0, 0, 1, 0, 0, 8, 6, 0, 0, 0}
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	b.Write([]byte{0, 0, 0, 13})
	b.WriteString("IHDR")
	b.Write(ihdr)
	b.Write(crc("IHDR", ihdr))
	return b.Bytes()
}

func TestIdempotentUpload(t *testing.T) {
	t.Parallel()
	needImages(t)
	b := newBundle(t, func(s *setup) { s.noWorkers = true })
	_, token := b.signup("retrier")
	file := filepath.Join(images, "formats", "png_palette_synthetic_68x68.png")
	first := b.upload(token, file, true, "Idempotency-Key", "k-1")
	mustStatus(t, first, http.StatusAccepted)
	again := b.upload(token, file, false, "Idempotency-Key", "k-1")
	mustStatus(t, again, http.StatusAccepted)
	if first.json(t)["id"] != again.json(t)["id"] {
		t.Fatalf("a retried upload made a second photo: %s vs %s", first.body, again.body)
	}
	other := b.upload(token, file, false, "Idempotency-Key", "k-2")
	if other.json(t)["id"] == first.json(t)["id"] {
		t.Fatal("a new key returned the old photo")
	}
	list := b.do("GET", "/v1/users/me/photos", "", bearer(token)...)
	if n := len(list.json(t)["items"].([]any)); n != 2 {
		t.Fatalf("%d photos, want 2", n)
	}
}

func TestPhotoLifecycle(t *testing.T) {
	t.Parallel()
	needImages(t)
	b := newBundle(t)
	ownerID, token := b.signup("owner")
	_, otherToken := b.signup("other")
	r := b.upload(token, filepath.Join(images, "formats", "jpeg_gray_concert.jpg"), true)
	mustStatus(t, r, http.StatusAccepted)
	id := r.json(t)["id"].(string)
	ph := b.waitPhoto(token, id)
	if ph["status"] != "ready" || ph["owner_id"] != ownerID {
		t.Fatalf("photo %v", ph)
	}

	// Variants are served with CDN-friendly headers and byte ranges, and
	// carry no EXIF (the original had some).
	var thumbURL string
	for _, v := range ph["variants"].([]any) {
		v := v.(map[string]any)
		res := b.do("GET", v["url"].(string), "")
		mustStatus(t, res, http.StatusOK)
		if cc := res.Header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" || res.Header.Get("ETag") == "" || res.Header.Get("Last-Modified") == "" {
			t.Fatalf("variant headers %v", res.Header)
		}
		if bytes.Contains(res.body, []byte("Exif\x00\x00")) {
			t.Fatalf("variant %s keeps EXIF", v["name"])
		}
		if v["name"] == "thumb" {
			thumbURL = v["url"].(string)
			if v["width"] != 256.0 || v["height"] != 256.0 {
				t.Fatalf("thumb %v", v)
			}
		}
	}
	part := b.do("GET", thumbURL, "", "Range", "bytes=0-9")
	mustStatus(t, part, http.StatusPartialContent)
	if len(part.body) != 10 {
		t.Fatalf("range body %d bytes", len(part.body))
	}
	mustStatus(t, b.do("GET", "/media/private/originals/"+id, ""), http.StatusNotFound)
	mustStatus(t, b.do("GET", "/media/../onebox.db", ""), http.StatusNotFound)
	mustStatus(t, b.do("GET", "/media/photos/%2e%2e/%2e%2e/x", ""), http.StatusNotFound)

	// Others see it once ready, in the list and alone.
	mustStatus(t, b.do("GET", "/v1/photos/"+id, "", bearer(otherToken)...), http.StatusOK)
	list := b.do("GET", "/v1/users/"+ownerID+"/photos", "")
	if n := len(list.json(t)["items"].([]any)); n != 1 {
		t.Fatalf("public list has %d photos", n)
	}

	// Avatar: only one's own ready photo.
	mustStatus(t, b.do("PATCH", "/v1/users/me", `{"avatar_id":"`+id+`"}`, bearer(otherToken)...), http.StatusUnprocessableEntity)
	mustStatus(t, b.do("PATCH", "/v1/users/me", `{"avatar_id":"`+id+`"}`, bearer(token)...), http.StatusOK)
	prof := b.do("GET", "/v1/users/"+ownerID, "").json(t)
	if prof["avatar_id"] != id || len(prof["avatar"].([]any)) == 0 {
		t.Fatalf("profile with avatar %v", prof)
	}
	version := prof["version"].(float64)

	// Only the owner deletes; the avatar goes with the photo, the files
	// follow in the cleanup job.
	mustStatus(t, b.do("DELETE", "/v1/photos/"+id, "", bearer(otherToken)...), http.StatusNotFound)
	mustStatus(t, b.do("DELETE", "/v1/photos/"+id, "", bearer(token)...), http.StatusNoContent)
	mustStatus(t, b.do("GET", "/v1/photos/"+id, "", bearer(token)...), http.StatusNotFound)
	prof = b.do("GET", "/v1/users/"+ownerID, "").json(t)
	if prof["avatar_id"] != nil || prof["version"].(float64) != version+1 {
		t.Fatalf("profile after deleting the avatar %v", prof)
	}
	// The cleanup job removes the original and every variant.
	thumbKey := strings.TrimPrefix(thumbURL, "/media/")
	deadline := time.Now().Add(30 * time.Second)
	for _, key := range []string{"private/originals/" + id, thumbKey} {
		for {
			_, err := b.media.Open(context.Background(), key)
			if errors.Is(err, media.ErrNotFound) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still stored after delete: %v", key, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	mustStatus(t, b.do("GET", thumbURL, ""), http.StatusNotFound)
}

func TestProcessingPhotoIsPrivate(t *testing.T) {
	t.Parallel()
	needImages(t)
	b := newBundle(t, func(s *setup) { s.noWorkers = true })
	ownerID, token := b.signup("shy")
	_, otherToken := b.signup("nosy")
	r := b.upload(token, filepath.Join(images, "formats", "jpeg_gray_hopper.jpg"), false)
	id := r.json(t)["id"].(string)
	mustStatus(t, b.do("GET", "/v1/photos/"+id, "", bearer(token)...), http.StatusOK)
	mustStatus(t, b.do("GET", "/v1/photos/"+id, "", bearer(otherToken)...), http.StatusNotFound)
	mustStatus(t, b.do("GET", "/v1/photos/"+id, ""), http.StatusNotFound)
	if n := len(b.do("GET", "/v1/users/"+ownerID+"/photos", "").json(t)["items"].([]any)); n != 0 {
		t.Fatalf("others see %d processing photos", n)
	}
	if n := len(b.do("GET", "/v1/users/me/photos", "", bearer(token)...).json(t)["items"].([]any)); n != 1 {
		t.Fatalf("owner sees %d photos", n)
	}
	mustStatus(t, b.do("PATCH", "/v1/users/me", `{"avatar_id":"`+id+`"}`, bearer(token)...), http.StatusUnprocessableEntity)
}

// TestUploadBacklog: past UploadBacklog photos waiting for the pipeline,
// an upload is refused with 503, Retry-After and a problem before its body
// is stored; once the queue drains, uploads are taken again.
func TestUploadBacklog(t *testing.T) {
	t.Parallel()
	needImages(t)
	b := newBundle(t, func(s *setup) {
		s.noWorkers = true // the photos stay queued
		s.opts.UploadBacklog = 2
	})
	_, token := b.signup("backlog")
	small := filepath.Join(images, "formats", "jpeg_gray_hopper.jpg")
	first := b.upload(token, small, false, "Idempotency-Key", "k1")
	mustStatus(t, first, http.StatusAccepted)
	mustStatus(t, b.upload(token, small, false), http.StatusAccepted)
	r := b.upload(token, small, false)
	mustStatus(t, r, http.StatusServiceUnavailable)
	// A retry of an upload already taken still gets its 202.
	retry := b.upload(token, small, false, "Idempotency-Key", "k1")
	mustStatus(t, retry, http.StatusAccepted)
	if retry.json(t)["id"] != first.json(t)["id"] || retry.Header.Get("Location") != first.Header.Get("Location") {
		t.Fatalf("retry %s, first %s: want the same photo", retry.body, first.body)
	}
	if r.Header.Get("Content-Type") != "application/problem+json" || r.Header.Get("Retry-After") != "30" {
		t.Fatalf("refusal: %v %s", r.Header, r.body)
	}
	if m := r.json(t); m["type"] != "/problems/upload-backlog" || !strings.Contains(m["detail"].(string), "2 photos are waiting") {
		t.Fatalf("problem %v", m)
	}
	st, err := b.queue.Stats(t.Context())
	if err != nil || st.Kinds[photos.KindProcess].Queued != 2 {
		t.Fatalf("queue after the refusal: %+v %v, want 2 queued", st, err)
	}

	// The workers take one photo off the queue: the next look at the
	// queue (at most a second away) lets an upload through again.
	msgs, err := b.queue.Receive(t.Context(), photos.KindProcess, 1, time.Minute)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("receive: %v %v", msgs, err)
	}
	if err := b.queue.Ack(t.Context(), msgs[0].Receipt()); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r := b.upload(token, small, false)
		if r.StatusCode == http.StatusAccepted {
			break
		}
		if r.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("upload after the queue drained: %d %s", r.StatusCode, r.body)
		}
	}
	mustStatus(t, b.upload(token, small, false), http.StatusServiceUnavailable)
}
