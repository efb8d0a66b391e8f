package imaging

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/jpeg"
	"image/png"
	"math"
	"runtime"
	"slices"
	"strconv"

	"golang.org/x/sync/errgroup"
)

// Options says which variants to render. Zero fields take the defaults.
type Options struct {
	// Widths are the widths of the resized variants; default 128, 256,
	// 512, 1024, 2048.
	Widths []int
	// Thumb is the side of the square centre-cropped thumbnail; default
	// 256.
	Thumb int
	// JPEGQuality is 1..100; default 82.
	JPEGQuality int
}

// Output is one rendered variant.
type Output struct {
	Name          string // "w128", ..., "thumb"
	Width, Height int
	ContentType   string // "image/jpeg", or "image/png" for transparency
	Data          []byte
}

func (o Options) withDefaults() (Options, error) {
	if len(o.Widths) == 0 {
		o.Widths = []int{128, 256, 512, 1024, 2048}
	}
	o.Widths = slices.Clone(o.Widths)
	slices.Sort(o.Widths)
	o.Widths = slices.Compact(o.Widths)
	if o.Widths[0] <= 0 {
		return o, fmt.Errorf("imaging: variant width %d is not positive", o.Widths[0])
	}
	if o.Thumb == 0 {
		o.Thumb = 256
	}
	if o.JPEGQuality == 0 {
		o.JPEGQuality = 82
	}
	if o.Thumb < 0 || o.JPEGQuality < 1 || o.JPEGQuality > 100 {
		return o, fmt.Errorf("imaging: invalid options: thumb %d, quality %d", o.Thumb, o.JPEGQuality)
	}
	return o, nil
}

// level is one resized variant in the cascade.
type level struct {
	name string
	w, h int
}

// plan lists the resized variants, largest first. Images are never
// upscaled: every width below the image's gets its variant, the first
// width at or above it is emitted once at the native size (so the largest
// variant always exists), and larger widths are dropped as duplicates.
// Heights keep the aspect ratio, rounded to nearest, at least 1.
func plan(widths []int, w, h int) []level {
	var ls []level
	for _, vw := range widths { // ascending
		if vw >= w {
			ls = append(ls, level{name: "w" + strconv.Itoa(vw), w: w, h: h})
			break
		}
		vh := max(1, int(math.Round(float64(h)*float64(vw)/float64(w))))
		ls = append(ls, level{name: "w" + strconv.Itoa(vw), w: vw, h: vh})
	}
	slices.Reverse(ls)
	return ls
}

// Variants renders img at each of o.Widths and as a square thumbnail, in
// that order (widths ascending, then "thumb"); see plan for the
// never-upscale rule. The thumbnail is Thumb×Thumb, centre-cropped, or
// the largest square the image has if its shorter side is below Thumb.
//
// Opaque images become baseline JPEGs; images with transparency become
// PNGs, since compositing a logo or sticker onto a fixed background is
// wrong for some page. No metadata is written except the source's ICC
// profile where it matches the output's colour space (a CMYK profile
// does not describe the converted RGB pixels and is dropped). The output
// bytes depend only on img and o, so a retried job rewrites the same
// files.
//
// Each size is resampled from the next larger one; the encodes run in
// parallel, at most GOMAXPROCS at a time. It returns ctx's error if ctx
// ends first.
func Variants(ctx context.Context, img *Image, o Options) ([]Output, error) {
	if img == nil || img.Pixels == nil {
		return nil, errors.New("imaging: Variants of a nil image")
	}
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	src := img.Pixels
	b := src.Bounds()
	if b.Min != (image.Point{}) || b.Dx() != img.Width || b.Dy() != img.Height {
		return nil, errors.New("imaging: image bounds do not match its size")
	}
	_, rgba := src.(*image.RGBA)
	switch src.(type) {
	case *image.YCbCr, *image.Gray, *image.RGBA:
	default:
		return nil, fmt.Errorf("imaging: Variants of a %T: use an Image from Decode", src)
	}
	enc := encoder{quality: o.JPEGQuality, alpha: img.HasAlpha && rgba, icc: outputICC(src, img.ICC)}

	levels := plan(o.Widths, img.Width, img.Height)
	outs := make([]Output, len(levels)+1)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	cur := src
	// The thumbnail is cut from the smallest level that still covers it.
	tside := min(o.Thumb, img.Width, img.Height)
	tsrc := src
	for i, l := range levels {
		if err := gctx.Err(); err != nil {
			break
		}
		m := cur
		if l.w != cur.Bounds().Dx() || l.h != cur.Bounds().Dy() {
			m = resize(cur, window{0, 0, float64(cur.Bounds().Dx()), float64(cur.Bounds().Dy())}, l.w, l.h)
		}
		if min(l.w, l.h) >= tside {
			tsrc = m
		}
		cur = m
		idx := len(levels) - 1 - i // ascending order in the result
		g.Go(func() error {
			data, ct, err := enc.encode(m)
			outs[idx] = Output{Name: l.name, Width: l.w, Height: l.h, ContentType: ct, Data: data}
			return err
		})
	}
	if gctx.Err() == nil {
		tb := tsrc.Bounds()
		side := min(tb.Dx(), tb.Dy())
		win := window{float64((tb.Dx() - side) / 2), float64((tb.Dy() - side) / 2), float64(side), float64(side)}
		thumb := resize(tsrc, win, tside, tside)
		g.Go(func() error {
			data, ct, err := enc.encode(thumb)
			outs[len(levels)] = Output{Name: "thumb", Width: tside, Height: tside, ContentType: ct, Data: data}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("imaging: variants: %w", err)
	}
	return outs, nil
}

// outputICC returns the profile to embed in the variants of src, or nil.
func outputICC(src image.Image, icc []byte) []byte {
	want := "RGB "
	if _, gray := src.(*image.Gray); gray {
		want = "GRAY"
	}
	if iccSpace(icc) != want {
		return nil
	}
	return icc
}

type encoder struct {
	quality int
	alpha   bool
	icc     []byte
}

func (e encoder) encode(m image.Image) (data []byte, contentType string, err error) {
	var buf bytes.Buffer
	if e.alpha {
		if err := png.Encode(&buf, unpremultiply(m.(*image.RGBA))); err != nil {
			return nil, "", fmt.Errorf("imaging: encode PNG: %w", err)
		}
		return withPNGICC(buf.Bytes(), e.icc), PNG.ContentType(), nil
	}
	if err := jpeg.Encode(&buf, m, &jpeg.Options{Quality: e.quality}); err != nil {
		return nil, "", fmt.Errorf("imaging: encode JPEG: %w", err)
	}
	return withJPEGICC(buf.Bytes(), e.icc), JPEG.ContentType(), nil
}

const (
	iccMagic = "ICC_PROFILE\x00"
	// iccChunkMax is the profile bytes one APP2 segment carries: 65535
	// minus the length field (2), the magic (12) and sequence/count (2).
	iccChunkMax = 65535 - 2 - len(iccMagic) - 2
)

// withJPEGICC inserts icc as APP2 ICC_PROFILE segments right after the
// SOI marker of the JPEG j (Go's encoder writes no APP0 that would have to
// come first).
func withJPEGICC(j, icc []byte) []byte {
	if len(icc) == 0 || len(j) < 2 {
		return j
	}
	n := (len(icc) + iccChunkMax - 1) / iccChunkMax
	out := make([]byte, 0, len(j)+len(icc)+n*(4+len(iccMagic)+2))
	out = append(out, j[:2]...)
	for i := range n {
		chunk := icc[i*iccChunkMax : min((i+1)*iccChunkMax, len(icc))]
		out = append(out, 0xff, 0xe2)
		out = binary.BigEndian.AppendUint16(out, uint16(2+len(iccMagic)+2+len(chunk)))
		out = append(out, iccMagic...)
		out = append(out, byte(i+1), byte(n))
		out = append(out, chunk...)
	}
	return append(out, j[2:]...)
}

// withPNGICC inserts an iCCP chunk after IHDR (the signature and IHDR are
// the first 33 bytes of every PNG Go writes).
func withPNGICC(p, icc []byte) []byte {
	const ihdrEnd = 8 + 8 + 13 + 4
	if len(icc) == 0 || len(p) < ihdrEnd {
		return p
	}
	var z bytes.Buffer
	z.WriteString("ICC\x00\x00") // profile name, NUL, compression method 0
	zw := zlib.NewWriter(&z)
	_, _ = zw.Write(icc) // writes to a bytes.Buffer cannot fail
	_ = zw.Close()
	chunk := binary.BigEndian.AppendUint32(nil, uint32(z.Len()))
	chunk = append(chunk, "iCCP"...)
	chunk = append(chunk, z.Bytes()...)
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
	out := make([]byte, 0, len(p)+len(chunk))
	out = append(out, p[:ihdrEnd]...)
	out = append(out, chunk...)
	return append(out, p[ihdrEnd:]...)
}
