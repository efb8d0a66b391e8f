package imaging

import (
	"encoding/binary"
	"fmt"
	"image/color"
)

// The memory estimate. Decode and Variants run in phases, and what one
// phase leaves behind is garbage the next can reuse once the collector has
// run (the soft memory limit makes it run when it must), so the peak is
// that of the heaviest phase, not the sum:
//
//   - decode: the whole file (Header.FileSize), the decoder's result, its scratch (a progressive JPEG keeps
//     every DCT coefficient as an int32; an interlaced PNG its largest
//     pass; lossless WebP a second copy for its colour-indexing
//     transform) and any conversion it makes itself (RGB and CMYK JPEGs);
//   - convert: the decoder's result and the 8-bit working copy, when
//     toWorking has to copy (16-bit, palette, CMYK, translucent lossy
//     WebP) rather than use or premultiply it in place;
//   - orient: the working copy and its turned copy;
//   - variants: the working copy, which moderation and every resize read,
//     plus the variants themselves, their encoders' buffers and, for
//     PNG outputs, an unpremultiplied copy of each; this part grows with
//     the largest variant (2048 pixels wide), not with the original.
//
// Where the header cannot tell (a PNG's tRNS chunk, which turns gray or
// RGB into NRGBA, comes after it; a WebP's bitstream chunk may lie past
// the bytes read; the EXIF orientation of a PNG or WebP may come after
// the pixels), the estimate takes the costlier case. The figures were
// measured with bench/decodepeak: the live heap's peak stayed below the
// estimate for every format and size tried.

// cost is the working set of each phase in eighths of a byte per pixel
// of the image.
type cost struct {
	decode, convert, orient, work int64
	// pngOut: the variants may be PNGs (the image may be translucent),
	// which costs more to encode than JPEGs.
	pngOut bool
}

// worst is the cost of an image nothing is known about: the largest of
// every case below.
var worst = cost{decode: 32 + 4*32 + 32, convert: 64 + 32, orient: 64, work: 32, pngOut: true}

const (
	// maxVariantWidth is the widest default variant: Variants' own memory
	// grows with it.
	maxVariantWidth = 2048
	// variantJPEG8 and variantPNG8 are what Variants holds beyond the
	// working image, in eighths of a byte per pixel of the largest
	// variant: the variants (each a quarter of the one before), the
	// encoders' growing output buffers, and for PNG the unpremultiplied
	// copies that run at once.
	// Measured: about 2 and 9.5 (the latter for noise, which PNG cannot
	// compress), whether 2 or 8 encodes run at once.
	variantJPEG8 = 6 * 8
	variantPNG8  = 14 * 8
	// decodeOverhead covers what does not grow with the image: decoder
	// tables, row buffers, the resizer's per-goroutine rows.
	decodeOverhead = 4 << 20
)

// DecodeBytes estimates the peak heap, in bytes, that Decode followed by
// moderation and Variants (at the default widths) needs for this image,
// from its header alone and pessimistic where the header does not tell,
// plus h.FileSize (Decode holds the file while it decodes). It is the
// weight of an image in a semaphore that bounds concurrent decodes, and
// what CheckMemory compares with a budget.
//
// Per pixel of a large image it comes to 3 bytes for a 4:2:0 baseline
// JPEG, 7.5 for a progressive one, 3 for lossy WebP, 8 for an 8-bit PNG,
// a GIF or lossless WebP, 9 for lossy WebP with alpha, 12 for a 16-bit PNG,
// up to 24 for a progressive CMYK JPEG (see the phases in memory.go).
func (h Header) DecodeBytes() int64 {
	c := h.cost
	if c == (cost{}) {
		c = worst
	}
	px := int64(h.Width) * int64(h.Height)
	phases := max(c.decode*px/8+max(h.FileSize, 0), max(c.convert, c.orient)*px/8)
	vc := int64(variantJPEG8)
	if c.pngOut {
		vc = variantPNG8
	}
	variants := c.work*px/8 + vc*variantPixels(h.Width, h.Height)/8
	return max(phases, variants) + decodeOverhead
}

// variantPixels is the size of the largest variant of a w×h image. The
// orientation may swap w and h, so it assumes the shorter side is the
// width: that gives the taller, larger variant.
func variantPixels(w, h int) int64 {
	px := int64(w) * int64(h)
	side := int64(min(w, h))
	if side <= maxVariantWidth {
		return px
	}
	return px * maxVariantWidth / side * maxVariantWidth / side
}

// CheckMemory refuses an image whose DecodeBytes exceed budget with a
// *RejectError wrapping ErrTooMuchMemory (and so ErrTooLarge), whose
// reason says how much it needs and the limit.
func (h Header) CheckMemory(budget int64) error {
	need := h.DecodeBytes()
	if need <= budget {
		return nil
	}
	// Rounded up and down, so that the two never read the same.
	reason := fmt.Sprintf("this image needs about %d MiB to process; the limit is %d MiB", (need+1<<20-1)>>20, budget>>20)
	return reject(ErrTooMuchMemory, reason, nil)
}

// estimate returns the cost of an image of format f whose header decoded
// to model; head is every byte of the file read so far (at least the
// header).
func estimate(f Format, model color.Model, head []byte) cost {
	switch f {
	case JPEG:
		return jpegCost(head)
	case PNG:
		return pngCost(model)
	case GIF:
		// A paletted first frame (no larger than the canvas), drawn onto
		// an RGBA canvas.
		return cost{decode: 8, convert: 8 + 32, orient: 64, work: 32, pngOut: true}
	case WebP:
		return webpCost(head)
	}
	return worst
}

func jpegCost(head []byte) cost {
	fi, ok := jpegFrame(head)
	if !ok {
		return worst
	}
	p := fi.planes8
	var temp int64
	if fi.progressive {
		temp = 4 * p // an int32 per sample
	}
	switch {
	case fi.components == 1: // image.Gray, used as is
		return cost{decode: p + temp, convert: p, orient: 2 * p, work: p}
	case fi.components == 4:
		// CMYK or YCCK: the decoder's planes and its image.CMYK, then
		// drawn onto RGBA.
		return cost{decode: p + temp + 32, convert: 64, orient: 64, work: 32}
	case p >= 24:
		// 4:4:4, which may be an RGB JPEG: the decoder converts its
		// planes to an image.RGBA.
		return cost{decode: p + temp + 32, convert: 32, orient: 64, work: 32}
	case fi.hmax == 4:
		// 4:1:1 and 4:1:0 have no turned layout: orient goes through
		// 4:4:4 copies.
		return cost{decode: p + temp, convert: p, orient: p + 2*24, work: 24}
	}
	return cost{decode: p + temp, convert: p, orient: 2 * p, work: p}
}

// pngCost: Go's decoder gives 8-bit gray, RGB or gray+alpha as an 8-bit
// layout the working image can reuse (premultiplied in place); 16-bit and
// palette images are copied into RGBA. A tRNS chunk, which may follow the
// header, turns gray and RGB into NRGBA or NRGBA64, so every model is
// charged its translucent layout.
func pngCost(model color.Model) cost {
	var native, copied int64
	switch model {
	case color.GrayModel, color.RGBAModel, color.NRGBAModel:
		native = 32
	case color.Gray16Model, color.RGBA64Model, color.NRGBA64Model:
		native, copied = 64, 32
	default: // palette
		native, copied = 8, 32
	}
	// An interlaced PNG also holds its current pass, at most half the
	// image: that never makes decoding the costliest phase.
	return cost{decode: native + native/2, convert: native + copied, orient: 64, work: 32, pngOut: true}
}

// webpCost looks for the bitstream's chunk among the bytes read: a VP8X
// header alone does not say whether a lossy or a lossless bitstream
// follows.
func webpCost(head []byte) cost {
	var (
		lossy    = cost{decode: 12, convert: 12, orient: 24, work: 12}
		lossless = cost{decode: 32 + 32, convert: 32, orient: 64, work: 32, pngOut: true} // NRGBA, premultiplied in place
		// The alpha plane (8) is decoded first, through a lossless NRGBA
		// and its transforms' copy (64); then the 4:2:0 planes (12), drawn
		// onto RGBA when translucent.
		lossyAlpha = cost{decode: 8 + 64, convert: 20 + 32, orient: 64, work: 32, pngOut: true}
	)
	const riffHeader = 12
	alpha := false
	for i := riffHeader; i+8 <= len(head); {
		switch string(head[i : i+4]) {
		case "VP8 ":
			if alpha {
				return lossyAlpha
			}
			return lossy
		case "VP8L":
			return lossless
		case "ALPH":
			alpha = true
		}
		n := int(binary.LittleEndian.Uint32(head[i+4:]))
		if n < 0 || n > len(head) {
			break
		}
		i += 8 + n + n&1
	}
	return lossyAlpha // the costliest of the three in every phase
}
