// Package imaging is the pixel work of the photo pipeline: it identifies an
// upload by its magic bytes, refuses images over a pixel budget before
// decoding them, decodes JPEG, PNG, GIF and WebP into upright 8-bit pixels
// (EXIF orientation applied, ICC profile kept), and renders the resized
// variants that are served. It does no I/O beyond the reader it is given.
//
// Every rejection of a file's content is a *RejectError whose Reason can be
// shown to the user; it wraps ErrUnsupported, ErrTooLarge or ErrCorrupt.
package imaging

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"math"

	"golang.org/x/image/webp"
)

// DefaultMaxPixels is the pixel budget used when a caller passes a
// non-positive limit.
const DefaultMaxPixels = 50_000_000

var (
	// ErrUnsupported means the file is not an image type or variant that
	// can be decoded here (not JPEG/PNG/GIF/WebP, arithmetic-coded JPEG,
	// animated WebP...).
	ErrUnsupported = errors.New("imaging: unsupported image")
	// ErrTooLarge means the image has more pixels than the caller allows.
	ErrTooLarge = errors.New("imaging: image too large")
	// ErrTooMuchMemory means decoding and resizing the image would need
	// more memory than the caller allows (see Header.CheckMemory). It
	// wraps ErrTooLarge.
	ErrTooMuchMemory = fmt.Errorf("%w: needs too much memory", ErrTooLarge)
	// ErrCorrupt means the file claims to be a supported image but cannot
	// be decoded: damaged, truncated or malformed.
	ErrCorrupt = errors.New("imaging: damaged image")
)

// RejectError is a refusal of a file's content. Reason is a sentence for
// the person who uploaded it; Err wraps one of ErrUnsupported, ErrTooLarge
// or ErrCorrupt and, where there is one, the decoder's own error.
type RejectError struct {
	Reason string
	Err    error
}

func (e *RejectError) Error() string {
	if e.Err == nil {
		return "imaging: " + e.Reason
	}
	return e.Reason + ": " + e.Err.Error()
}

func (e *RejectError) Unwrap() error { return e.Err }

// reject builds a RejectError wrapping sentinel and, if not nil, cause.
func reject(sentinel error, reason string, cause error) *RejectError {
	if cause == nil {
		return &RejectError{Reason: reason, Err: sentinel}
	}
	return &RejectError{Reason: reason, Err: fmt.Errorf("%w: %w", sentinel, cause)}
}

const (
	reasonDamaged      = "the file is damaged or truncated"
	reasonAnimatedWebP = "animated WebP is not supported"
)

// Format is an image file type, named as in its MIME subtype.
type Format string

// The supported formats.
const (
	JPEG Format = "jpeg"
	PNG  Format = "png"
	GIF  Format = "gif"
	WebP Format = "webp"
)

// ContentType is the MIME type of files of format f.
func (f Format) ContentType() string { return "image/" + string(f) }

// sniffLen is how many leading bytes Sniff needs to tell every format
// apart, and Probe peeks: the WebP VP8X flags byte is at offset 20.
const sniffLen = 21

// Sniff returns the real type of a file from its first bytes (at least 12
// for WebP). Declared content types and file names are never consulted.
// Anything but JPEG, PNG, GIF or WebP is a *RejectError wrapping
// ErrUnsupported.
func Sniff(head []byte) (Format, error) {
	switch {
	case len(head) == 0:
		return "", reject(ErrUnsupported, "the file is empty", nil)
	case bytes.HasPrefix(head, []byte("\xff\xd8\xff")):
		return JPEG, nil
	case bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")):
		return PNG, nil
	case bytes.HasPrefix(head, []byte("GIF87a")), bytes.HasPrefix(head, []byte("GIF89a")):
		return GIF, nil
	case len(head) >= 12 && string(head[:4]) == "RIFF" && string(head[8:12]) == "WEBP":
		return WebP, nil
	}
	return "", reject(ErrUnsupported, "the file is not a JPEG, PNG, GIF or WebP image", nil)
}

// Header is what Probe learns from a file's header alone.
type Header struct {
	Format Format
	// Width and Height are as stored, before EXIF orientation (which can
	// swap them).
	Width, Height int
	// Animated is known for WebP only (from the VP8X flags); telling an
	// animated GIF needs a walk over the whole file, and Decode takes the
	// first frame of a GIF anyway.
	Animated bool
	// FileSize is the size of the whole file in bytes, which Decode holds
	// while it decodes. Probe cannot know it; a caller that does (or
	// knows a bound) sets it, and DecodeBytes counts it.
	FileSize int64

	// cost is what Decode and Variants hold per pixel (see DecodeBytes).
	cost cost
}

// Probe reads only as much of r as it takes to identify the format and
// read the dimensions, and refuses an image with more than maxPixels
// pixels (DefaultMaxPixels if maxPixels <= 0) with a *RejectError wrapping
// ErrTooLarge, so that nothing is ever allocated for the pixels of a
// decompression bomb. Other refusals wrap ErrUnsupported or ErrCorrupt; an
// error reading r is returned as is.
func Probe(r io.Reader, maxPixels int64) (Header, error) {
	h, _, err := probe(r, maxPixels)
	return h, err
}

// probe is Probe that also returns every byte it consumed from r, so that
// Decode can go on from there without seeking.
func probe(r io.Reader, maxPixels int64) (h Header, consumed []byte, err error) {
	if maxPixels <= 0 {
		maxPixels = DefaultMaxPixels
	}
	rec := &recordReader{r: r}
	defer func() {
		// The config decoders are small, but this parses hostile input.
		if p := recover(); p != nil {
			h, consumed = Header{}, nil
			err = reject(ErrCorrupt, reasonDamaged, fmt.Errorf("panic reading header: %v", p))
		}
	}()
	br := bufio.NewReader(rec)
	head, _ := br.Peek(sniffLen)
	format, err := Sniff(head)
	if err != nil {
		if rec.err != nil {
			return Header{}, nil, fmt.Errorf("imaging: read: %w", rec.err)
		}
		return Header{}, nil, err
	}
	var cfg image.Config
	switch format {
	case JPEG:
		cfg, err = jpeg.DecodeConfig(br)
	case PNG:
		cfg, err = png.DecodeConfig(br)
	case GIF:
		cfg, err = gif.DecodeConfig(br)
	case WebP:
		cfg, err = webp.DecodeConfig(br)
	}
	if err != nil {
		if rec.err != nil {
			return Header{}, nil, fmt.Errorf("imaging: read: %w", rec.err)
		}
		return Header{}, nil, classify(err)
	}
	h = Header{Format: format, Width: cfg.Width, Height: cfg.Height}
	if h.Width <= 0 || h.Height <= 0 {
		return Header{}, nil, reject(ErrCorrupt, "the image has no pixels", nil)
	}
	if px := int64(h.Width) * int64(h.Height); px > maxPixels {
		reason := fmt.Sprintf("the image is %d×%d pixels (%.1f megapixels); the limit is %.1f megapixels",
			h.Width, h.Height, float64(px)/1e6, float64(maxPixels)/1e6)
		return Header{}, nil, reject(ErrTooLarge, reason, nil)
	}
	if format == WebP && len(head) >= sniffLen && string(head[12:16]) == "VP8X" {
		const animationBit = 1 << 1
		h.Animated = head[20]&animationBit != 0
	}
	h.cost = estimate(format, cfg.ColorModel, rec.buf.Bytes())
	return h, rec.buf.Bytes(), nil
}

// recordReader keeps every byte read through it and the first read error
// other than io.EOF, which tells a failing reader from a damaged file.
type recordReader struct {
	r   io.Reader
	buf bytes.Buffer
	err error
}

func (r *recordReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.buf.Write(p[:n])
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

// classify turns a decoder error into a RejectError with a reason a user
// can act on; decoders' own messages are kept only inside Err.
func classify(err error) error {
	var jpegUnsupported jpeg.UnsupportedError
	var pngUnsupported png.UnsupportedError
	switch {
	case errors.As(err, &jpegUnsupported):
		return reject(ErrUnsupported, "this kind of JPEG (for example arithmetic-coded or lossless) is not supported", err)
	case errors.As(err, &pngUnsupported):
		return reject(ErrUnsupported, "the PNG is damaged or uses a variant that is not supported", err)
	}
	return reject(ErrCorrupt, reasonDamaged, err)
}

// Image is a decoded, upright picture ready for Variants and moderation.
type Image struct {
	// Pixels, with EXIF orientation applied and bounds starting at (0,0),
	// is one of: *image.YCbCr (opaque colour), *image.Gray (opaque
	// grayscale) or *image.RGBA (alpha-premultiplied; see HasAlpha).
	Pixels image.Image
	// Width and Height are after orientation.
	Width, Height int
	Format        Format
	// HasAlpha reports that some pixel is not fully opaque.
	HasAlpha bool
	// ICC is the embedded colour profile (JPEG APP2 chunks reassembled,
	// PNG iCCP inflated, WebP ICCP), nil if there is none, it is malformed
	// or it is over 1 MiB.
	ICC []byte
}

// Decode reads a whole image from r (bound its size before: Decode keeps
// the file in memory while decoding), refusing it before decoding if it
// has more than maxPixels pixels (DefaultMaxPixels if maxPixels <= 0). It
// applies the EXIF orientation (JPEG APP1, PNG eXIf, WebP EXIF), converts
// CMYK, 16-bit, palette and alpha images to 8 bits and extracts the ICC
// profile. An animated GIF yields its first frame.
//
// A file it cannot turn into pixels is a *RejectError wrapping
// ErrUnsupported, ErrTooLarge or ErrCorrupt; no input makes it panic. A
// read error from r is returned wrapped, and so is ctx's error if ctx ends
// while decoding.
func Decode(ctx context.Context, r io.Reader, maxPixels int64) (img *Image, err error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("imaging: decode: %w", err)
	}
	h, consumed, err := probe(r, maxPixels)
	if err != nil {
		return nil, err
	}
	if h.Animated {
		return nil, reject(ErrUnsupported, reasonAnimatedWebP, nil)
	}
	buf := bytes.NewBuffer(consumed)
	if err := growForRest(buf, r); err != nil {
		return nil, fmt.Errorf("imaging: read: %w", err)
	}
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, fmt.Errorf("imaging: read: %w", err)
	}
	data := buf.Bytes()

	defer func() {
		if p := recover(); p != nil {
			img, err = nil, reject(ErrCorrupt, reasonDamaged, fmt.Errorf("decoder panic: %v", p))
		}
	}()
	meta := readMeta(h.Format, data)
	if meta.animated { // ANIM/ANMF chunks without the VP8X flag
		return nil, reject(ErrUnsupported, reasonAnimatedWebP, nil)
	}
	m, err := decodeFormat(h.Format, ctxReader{ctx: ctx, r: bytes.NewReader(data)})
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("imaging: decode: %w", ctxErr)
		}
		return nil, classify(err)
	}
	if b := m.Bounds(); int64(b.Dx())*int64(b.Dy()) > int64(h.Width)*int64(h.Height) {
		// The pixel check was made on the header; a decoder that returned
		// more than that would have defeated it.
		return nil, reject(ErrCorrupt, reasonDamaged, errors.New("decoded size differs from header"))
	}
	work, alpha := toWorking(m, h.Width, h.Height)
	work = orient(work, meta.orientation)
	b := work.Bounds()
	return &Image{
		Pixels:   work,
		Width:    b.Dx(),
		Height:   b.Dy(),
		Format:   h.Format,
		HasAlpha: alpha,
		ICC:      meta.icc,
	}, nil
}

// growForRest makes room in buf for the rest of r when r can tell its
// size (a file, a bytes.Reader, or a stream with a Len of the bytes
// left): then Decode holds the file once, where a buffer growing by
// doubling would hold up to three times its size while it copies.
func growForRest(buf *bytes.Buffer, r io.Reader) error {
	if l, ok := r.(interface{ Len() int }); ok {
		if rest := l.Len(); rest > 0 && rest < math.MaxInt32 {
			buf.Grow(rest + bytes.MinRead)
		}
		return nil
	}
	s, ok := r.(io.Seeker)
	if !ok {
		return nil
	}
	cur, err := s.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil // not really seekable: read as it comes
	}
	end, err := s.Seek(0, io.SeekEnd)
	if err != nil {
		return nil
	}
	if _, err := s.Seek(cur, io.SeekStart); err != nil {
		return err
	}
	if rest := end - cur; rest > 0 && rest < math.MaxInt32 {
		buf.Grow(int(rest) + bytes.MinRead) // ReadFrom wants MinRead free to see EOF
	}
	return nil
}

func decodeFormat(f Format, r io.Reader) (image.Image, error) {
	switch f {
	case JPEG:
		return jpeg.Decode(r)
	case PNG:
		return png.Decode(r)
	case GIF:
		return gif.Decode(r) // the first frame only
	case WebP:
		return webp.Decode(r)
	}
	return nil, ErrUnsupported
}

// ctxReader makes the decoders, which take no context, stop reading once
// ctx is done: they pull data in chunks of a few KB.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
