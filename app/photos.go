package app

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"onebox/imaging"
	"onebox/media"
	"onebox/photos"
	"onebox/store"
)

// photoJSON is a photo as the API shows it (GET /v1/photos/{id}, the SSE
// events, the gallery).
type photoJSON struct {
	ID        string        `json:"id"`
	OwnerID   string        `json:"owner_id"`
	Status    string        `json:"status"`
	Reason    string        `json:"reason,omitempty"`
	Width     int           `json:"width,omitempty"`
	Height    int           `json:"height,omitempty"`
	Variants  []variantJSON `json:"variants"`
	CreatedAt time.Time     `json:"created_at"`
	UpdatedAt time.Time     `json:"updated_at"`
}

type variantJSON struct {
	Name   string `json:"name"`
	URL    string `json:"url"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
}

// photo is p as the API shows it. A variant's URL comes from the media
// storage, which may fail (a signer without credentials).
func (a *App) photo(ctx context.Context, p store.Photo) (photoJSON, error) {
	j := photoJSON{ID: p.ID, OwnerID: p.OwnerID, Status: string(p.Status), Reason: p.Reason, Width: p.Width, Height: p.Height,
		Variants: make([]variantJSON, 0, len(p.Variants)), CreatedAt: p.CreatedAt.UTC(), UpdatedAt: p.UpdatedAt.UTC()}
	for _, v := range p.Variants {
		u, err := a.media.URL(ctx, v.Key)
		if err != nil {
			return photoJSON{}, fmt.Errorf("url of %s: %w", v.Key, err)
		}
		j.Variants = append(j.Variants, variantJSON{Name: v.Name, URL: u, Width: v.Width, Height: v.Height})
	}
	return j, nil
}

// uploadAnswer is the 202 body of POST /v1/photos.
type uploadAnswer struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	StatusURL string `json:"status_url"`
	EventsURL string `json:"events_url"`
}

const maxIdempotencyKey = 200

// upload accepts a photo: POST /v1/photos, multipart field "file" or a
// raw image body. Everything that can be refused is refused before the
// 202; after it, the file and its job are durable.
func (a *App) upload(c echo.Context) error {
	who, err := requireUser(c)
	if err != nil {
		return err
	}
	req := c.Request()
	idemKey := req.Header.Get("Idempotency-Key")
	if len(idemKey) > maxIdempotencyKey {
		return badHeader("Idempotency-Key", "must be at most 200 characters")
	}
	// A key is stored as text: bytes that are not (invalid UTF-8, NUL)
	// would fail in a store that checks its text, PostgreSQL's.
	if !utf8.ValidString(idemKey) {
		return badHeader("Idempotency-Key", "must be UTF-8 text")
	}
	if msg := checkText(idemKey, maxIdempotencyKey, false); msg != "" {
		return badHeader("Idempotency-Key", msg)
	}
	// A key is held by one request of this process at a time: another
	// with it is refused (409) before its body is read. A retry of an
	// upload already taken (retry) is answered once its body is read and
	// hashed, even while the queue is full (see idempotency.go).
	retry := false
	if idemKey != "" {
		release, ok := a.inflight.reserve(who.userID, idemKey)
		if !ok {
			return errKeyInFlight
		}
		defer release()
		if retry, err = a.keyTaken(c, who.userID, idemKey); err != nil {
			return err
		}
	}
	// Refused before a byte of the body is read: the queue is full.
	if !retry {
		if err := a.backlog.admit(req.Context()); err != nil {
			return err
		}
	}
	// Uploads are exempt from the API timeout; they get their own (the
	// bodies middleware set the read deadline to match).
	ctx, cancel := context.WithTimeout(req.Context(), a.opts.UploadTimeout)
	defer cancel()

	src, err := uploadBody(c, a.opts.MaxUploadBytes)
	if err != nil {
		return err
	}
	var body io.Reader = src
	if retry {
		return a.replayUpload(ctx, c, who.userID, idemKey, body)
	}
	// With a key, every byte of the file passes through the digest on its
	// way to storage.
	digest := sha256.New()
	if idemKey != "" {
		body = io.TeeReader(body, digest)
	}
	// Sniff and probe the header from a buffered prefix; the same bytes
	// then go to storage, so the body is read once.
	br := bufio.NewReaderSize(body, 64<<10)
	head, _ := br.Peek(512)
	if len(head) == 0 {
		return invalid(FieldError{Pointer: "/file", Detail: "is empty"})
	}
	if _, err := imaging.Sniff(head); err != nil {
		if tooLarge(err) {
			return tooLargeProblem(a.opts.MaxUploadBytes)
		}
		return problem(http.StatusUnsupportedMediaType, "unsupported-media-type", "the file must be a JPEG, PNG, GIF or WebP image")
	}
	var probed strings.Builder
	hdr, err := imaging.Probe(io.TeeReader(io.LimitReader(br, maxHeaderBytes), &probed), a.opts.MaxPixels)
	switch {
	case tooLarge(err):
		return tooLargeProblem(a.opts.MaxUploadBytes)
	case errors.Is(err, imaging.ErrTooLarge):
		return invalid(FieldError{Pointer: "/file", Detail: fmt.Sprintf("the image has more than %d megapixels", a.opts.MaxPixels/1_000_000)})
	case err != nil:
		var re *imaging.RejectError
		detail := "the image header could not be read"
		if errors.As(err, &re) {
			detail = re.Reason
		}
		return invalid(FieldError{Pointer: "/file", Detail: detail})
	}
	if err := a.checkMemory(hdr, req.ContentLength); err != nil {
		return err
	}

	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	photoID := id.String()
	orig := photos.OriginalKey(photoID)
	info, err := a.media.Put(ctx, orig, io.MultiReader(strings.NewReader(probed.String()), br), "image/"+string(hdr.Format))
	if err != nil {
		if tooLarge(err) {
			return tooLargeProblem(a.opts.MaxUploadBytes)
		}
		if src.err != nil {
			return bodyCutShort()
		}
		return fmt.Errorf("store original: %w", err)
	}
	now := a.now().UTC()
	ectx, end := a.tracing.Child(ctx, "enqueue "+photos.KindProcess)
	ph, created, err := a.store.CreatePhoto(ectx, store.CreatePhotoParams{
		Photo: store.Photo{ID: photoID, OwnerID: who.userID, Status: store.PhotoProcessing, OriginalKey: orig,
			ContentType: "image/" + string(hdr.Format), Size: info.Size, CreatedAt: now, UpdatedAt: now},
		Idempotency: a.idempotency(idemKey, digest, now),
		Job:         photos.ProcessJob(ectx, who.userID, photoID), // the job's trace links to the enqueue span
	})
	end(err)
	if err != nil || !created {
		_ = a.media.Delete(context.WithoutCancel(ctx), orig) // not needed: failed, or a retry of an earlier upload
	}
	if err != nil {
		return err
	}
	if created {
		a.backlog.accepted()
		a.jobs.Notify()
		a.markWritten(ctx, who)
	}
	return accepted(c, ph)
}

// idempotency is what CreatePhoto keeps of key ("" for none): the
// digest of the file read through h, and the key's expiry.
func (a *App) idempotency(key string, h hash.Hash, now time.Time) store.Idempotency {
	if key == "" {
		return store.Idempotency{}
	}
	return store.Idempotency{Key: key, Digest: uploadDigest(h), ExpiresAt: now.Add(a.opts.IdempotencyTTL)}
}

// checkMemory refuses an image the pipeline would refuse for the memory
// it needs, saying how much in the detail, rather than accept it and
// reject it later. The file is not read yet: its size is bounded by the
// request's declared length (which includes any multipart framing) or
// else the upload limit, so the worker, which knows it, never needs more.
func (a *App) checkMemory(hdr imaging.Header, contentLength int64) error {
	if a.opts.DecodeMemory <= 0 {
		return nil
	}
	hdr.FileSize = a.opts.MaxUploadBytes
	if contentLength > 0 {
		hdr.FileSize = min(contentLength, hdr.FileSize)
	}
	var re *imaging.RejectError
	if err := hdr.CheckMemory(a.opts.DecodeMemory); errors.As(err, &re) {
		p := invalid(FieldError{Pointer: "/file", Detail: re.Reason})
		p.Detail = re.Reason
		return p
	}
	return nil
}

// accepted is the 202 of an upload, first or retried.
func accepted(c echo.Context, ph store.Photo) error {
	c.Response().Header().Set(echo.HeaderLocation, "/v1/photos/"+ph.ID)
	return jsonBlob(c, http.StatusAccepted, mustJSON(uploadAnswer{
		ID: ph.ID, Status: string(ph.Status), StatusURL: "/v1/photos/" + ph.ID, EventsURL: "/v1/photos/" + ph.ID + "/events",
	}))
}

// multipartSlack is room for the multipart framing around the file; the
// file itself is held to the exact limit while it streams.
const multipartSlack = 64 << 10

// maxHeaderBytes bounds how far into the file the image header may lie
// (JPEG metadata segments come first).
const maxHeaderBytes = 1 << 20

// uploadBody returns the file's bytes: the "file" part of a multipart
// form, or the raw body when its declared type is image/*. It is capped at
// max bytes; reading past that fails with *http.MaxBytesError.
func uploadBody(c echo.Context, max int64) (*capReader, error) {
	req := c.Request()
	if req.ContentLength > max+multipartSlack {
		return nil, tooLargeProblem(max)
	}
	req.Body = http.MaxBytesReader(c.Response(), req.Body, max+multipartSlack)
	mt, _, err := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType))
	switch {
	case err == nil && mt == "multipart/form-data":
		mr, err := req.MultipartReader()
		if err != nil {
			return nil, problem(http.StatusBadRequest, "bad-request", "the multipart body is malformed")
		}
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				return nil, invalid(FieldError{Pointer: "/file", Detail: "is required (a multipart field named file)"})
			}
			if tooLarge(err) {
				return nil, tooLargeProblem(max)
			}
			if err != nil {
				return nil, problem(http.StatusBadRequest, "bad-request", "the multipart body is malformed")
			}
			if part.FormName() == "file" {
				return &capReader{r: part, left: max, max: max}, nil
			}
		}
	case err == nil && strings.HasPrefix(mt, "image/"):
		return &capReader{r: req.Body, left: max, max: max}, nil
	}
	return nil, problem(http.StatusUnsupportedMediaType, "unsupported-media-type", "send multipart/form-data with a file field, or the image itself with an image/* type")
}

// bodyCutShort answers an upload whose body failed while the file was
// read; a body cut off by the upload deadline is a 408 instead (see
// streamBody).
func bodyCutShort() *Problem {
	return problem(http.StatusBadRequest, "bad-request", "the body ended before the file did: it was cut short, or its multipart form never closes")
}

// capReader is the upload's file as it streams: it fails with
// *http.MaxBytesError once more than max bytes come through, so the limit
// holds whatever the client declared, and it notes the first error
// reading the body other than io.EOF, so that a failure to store the
// file can be told apart: one the body caused (cut short, or multipart
// framing that never closes) is the client's, not storage's.
type capReader struct {
	r         io.Reader
	left, max int64
	err       error // the body's first read error, io.EOF aside
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left < 0 {
		return 0, &http.MaxBytesError{Limit: c.max}
	}
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	c.left -= int64(n)
	if c.left < 0 {
		return n, &http.MaxBytesError{Limit: c.max}
	}
	return n, err
}

func tooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

func tooLargeProblem(max int64) *Problem {
	size := fmt.Sprintf("%d KB", max>>10)
	if max >= 1<<20 {
		size = strconv.FormatFloat(float64(max)/(1<<20), 'f', -1, 64) + " MB"
	}
	return problem(http.StatusRequestEntityTooLarge, "too-large", "the file must be at most "+size)
}

func badHeader(name, detail string) *Problem {
	p := problem(http.StatusBadRequest, "bad-header", "a request header is invalid")
	p.Errors = []FieldError{{Header: name, Detail: detail}}
	return p
}

// getPhoto: GET /v1/photos/{id}. Only the owner sees a photo that is not
// ready; to anyone else it does not exist.
func (a *App) getPhoto(c echo.Context) error {
	ph, err := a.visiblePhoto(c, c.Param("id"))
	if err != nil {
		return err
	}
	j, err := a.photo(c.Request().Context(), ph)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "private, no-cache")
	return jsonBlob(c, http.StatusOK, mustJSON(j))
}

func (a *App) visiblePhoto(c echo.Context, id string) (store.Photo, error) {
	notFound := problem(http.StatusNotFound, "not-found", "no such photo")
	if !validID(id) {
		return store.Photo{}, notFound
	}
	ph, err := a.store.Photo(c.Request().Context(), store.PhotoParams{ID: id, Freshness: store.MustBeFresh})
	if errors.Is(err, store.ErrNotFound) {
		return store.Photo{}, notFound
	}
	if err != nil {
		return store.Photo{}, err
	}
	who, _ := c.Get(identityKey).(identity)
	if ph.Status != store.PhotoReady && who.userID != ph.OwnerID {
		return store.Photo{}, notFound
	}
	return ph, nil
}

// listPhotos: GET /v1/users/{id}/photos?limit=&cursor=, newest first.
// Others see only ready photos; "me" is the caller.
func (a *App) listPhotos(c echo.Context) error {
	who, _ := c.Get(identityKey).(identity)
	owner := c.Param("id")
	if owner == "me" {
		if who.userID == "" {
			return errBadCredentials
		}
		owner = who.userID
	}
	if !validID(owner) {
		return problem(http.StatusNotFound, "not-found", "no such user")
	}
	limit, before, err := pageParams(c)
	if err != nil {
		return err
	}
	// The owner's own list holds their uploads and deletes (the session's
	// token); anyone else's may lag, as a replica does.
	var at store.Token
	if owner == who.userID {
		at = who.token
	}
	photos, err := a.store.ListPhotos(c.Request().Context(), store.ListPhotosParams{
		OwnerID: owner, BeforeID: before, Limit: limit + 1, ReadyOnly: owner != who.userID, Freshness: store.MayBeStale, AtLeast: at,
	})
	if err != nil {
		return err
	}
	var urlErr error // the first URL the storage could not give
	page := makePage(photos, limit, func(p store.Photo) string { return p.ID }, func(p store.Photo) photoJSON {
		j, err := a.photo(c.Request().Context(), p)
		if urlErr == nil {
			urlErr = err
		}
		return j
	})
	if urlErr != nil {
		return urlErr
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "private, no-cache")
	return jsonBlob(c, http.StatusOK, mustJSON(page))
}

// deletePhoto: DELETE /v1/photos/{id}, owner only. The files go in a job
// enqueued with the deletion, so none is left behind by a crash.
func (a *App) deletePhoto(c echo.Context) error {
	who, err := requireUser(c)
	if err != nil {
		return err
	}
	id := c.Param("id")
	if !validID(id) {
		return problem(http.StatusNotFound, "not-found", "no such photo")
	}
	ctx := c.Request().Context()
	ectx, end := a.tracing.Child(ctx, "enqueue "+photos.KindCleanup)
	_, avatarCleared, err := a.store.DeletePhoto(ectx, store.DeletePhotoParams{
		ID: id, OwnerID: who.userID, Cleanup: photos.CleanupJob(ectx), Now: a.now().UTC(),
	})
	end(err)
	if errors.Is(err, store.ErrNotFound) {
		return problem(http.StatusNotFound, "not-found", "no such photo")
	}
	if err != nil {
		return err
	}
	a.jobs.Notify()
	a.markWritten(ctx, who)
	if avatarCleared {
		if err := invalidate(ctx, a.profiles, profileKey(who.userID)); err != nil {
			return err
		}
	}
	_ = a.hub.Publish(ctx, photos.UserTopic(who.userID))
	return c.NoContent(http.StatusNoContent)
}

// serveMedia: GET /media/{key}. Published variants are immutable (their
// keys name the photo), so they may be cached for a year; ServeContent
// answers ranges and conditional requests, reading the object by ranges
// (media.ReadSeeker), since a bucket does not seek: a 304 costs a Stat
// only. A key outside the grammar of media keys, or a private one, is
// not found before storage sees it.
func (a *App) serveMedia(c echo.Context) error {
	key := c.Param("*")
	if !media.Public(key) {
		return problem(http.StatusNotFound, "not-found", "no such file")
	}
	ctx := c.Request().Context()
	info, err := a.media.Stat(ctx, key)
	if errors.Is(err, media.ErrNotFound) || errors.Is(err, media.ErrBadKey) {
		return problem(http.StatusNotFound, "not-found", "no such file")
	}
	if err != nil {
		return err
	}
	obj := media.NewReadSeeker(ctx, a.media, key, info)
	defer obj.Close()
	h := c.Response().Header()
	h.Set(echo.HeaderCacheControl, "public, max-age=31536000, immutable")
	h.Set("ETag", info.ETag)
	h.Set(echo.HeaderContentType, info.ContentType)
	h.Set("Cross-Origin-Resource-Policy", "same-site")
	serveContent(c, info.ModTime, obj, info.Size)
	return nil
}
