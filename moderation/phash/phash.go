// Package phash is a moderation.Moderator that refuses pictures
// perceptually close to a blocklist of known images, using a DCT
// perceptual hash: the picture shrunk to 32×32 grayscale, its 8×8 lowest
// non-constant DCT frequencies, one bit each for "above the median". The
// hash survives resizing, re-encoding and mild colour changes; it does
// not survive cropping, rotation or mirroring.
//
// Hashes are written as 16 hex digits (fmt "%016x"), one per line, in the
// blocklist files ParseBlocklist reads.
package phash

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"

	"onebox/moderation"
)

// DefaultMaxDistance is the Hamming distance up to which two hashes are
// taken as the same picture: re-encoded and resized copies measure 0-4;
// unrelated photos rarely come within 16.
const DefaultMaxDistance = 6

// ErrBadBlocklist is wrapped by ParseBlocklist's errors about content.
var ErrBadBlocklist = errors.New("phash: invalid blocklist")

const reasonBlocked = "matches a blocked image"

// Moderator refuses pictures whose hash is within maxDistance of a
// blocked hash. It is immutable and safe for concurrent use.
type Moderator struct {
	blocked     []uint64
	maxDistance int
}

var _ moderation.Moderator = (*Moderator)(nil)

// New returns a Moderator for the blocked hashes. maxDistance <= 0
// selects DefaultMaxDistance (an exact-match-only list is not useful:
// re-encoding flips a bit or two).
func New(blocked []uint64, maxDistance int) *Moderator {
	if maxDistance <= 0 {
		maxDistance = DefaultMaxDistance
	}
	return &Moderator{blocked: slices.Clone(blocked), maxDistance: maxDistance}
}

// Moderate refuses img with the reason "matches a blocked image" if it is
// close to a blocked hash. The list is scanned linearly: some
// microseconds per ten thousand entries, beside milliseconds of hashing.
func (m *Moderator) Moderate(ctx context.Context, img image.Image) (moderation.Verdict, error) {
	if err := ctx.Err(); err != nil {
		return moderation.Verdict{}, fmt.Errorf("phash: %w", err)
	}
	h := Hash(img)
	for _, b := range m.blocked {
		if Distance(h, b) <= m.maxDistance {
			return moderation.Verdict{Allowed: false, Reason: reasonBlocked}, nil
		}
	}
	return moderation.Verdict{Allowed: true}, nil
}

// Distance is the number of differing bits between two hashes.
func Distance(a, b uint64) int { return bits.OnesCount64(a ^ b) }

// ParseBlocklist reads one hex hash per line (up to 16 digits, an
// optional 0x). A # starts a comment; blank lines are skipped. Content
// errors wrap ErrBadBlocklist and name the line.
func ParseBlocklist(r io.Reader) ([]uint64, error) {
	var hashes []uint64
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		digits := strings.TrimPrefix(strings.TrimPrefix(line, "0x"), "0X")
		h, err := strconv.ParseUint(digits, 16, 64)
		if err != nil || len(digits) > 16 {
			return nil, fmt.Errorf("%w: line %d: %q is not a 64-bit hex hash", ErrBadBlocklist, n, line)
		}
		hashes = append(hashes, h)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("phash: reading blocklist: %w", err)
	}
	return hashes, nil
}

const side = 32 // the hash is taken from a side×side grayscale thumbnail

// Hash is the 64-bit perceptual hash of img. Transparent pixels count as
// white, as pictures are usually shown on a light page.
func Hash(img image.Image) uint64 {
	g := shrink(img)
	// 2-D DCT-II, only frequencies 1..8 in each direction: 0 is the mean
	// brightness, which says nothing about the picture's structure.
	var cos [9][side]float64
	for u := 1; u <= 8; u++ {
		for x := range side {
			cos[u][x] = math.Cos(float64((2*x+1)*u) * math.Pi / (2 * side))
		}
	}
	var rows [side][9]float64 // per row, the horizontal frequencies
	for y := range side {
		for u := 1; u <= 8; u++ {
			var s float64
			for x := range side {
				s += g[y*side+x] * cos[u][x]
			}
			rows[y][u] = s
		}
	}
	coef := make([]float64, 0, 64)
	for v := 1; v <= 8; v++ {
		for u := 1; u <= 8; u++ {
			var s float64
			for y := range side {
				s += rows[y][u] * cos[v][y]
			}
			coef = append(coef, s)
		}
	}
	sorted := slices.Sorted(slices.Values(coef))
	median := (sorted[31] + sorted[32]) / 2
	var h uint64
	for i, c := range coef {
		if c > median {
			h |= 1 << (63 - i)
		}
	}
	return h
}

// shrink averages img down to side×side luma values by exact area
// coverage: a source pixel straddling two cells is split between them, so
// the result barely depends on the source size, even for sources only a
// little larger (or smaller) than side.
func shrink(img image.Image) []float64 {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	out := make([]float64, side*side)
	if w == 0 || h == 0 {
		return out
	}
	xs, ys := coverage(w), coverage(h)
	row := make([]float64, side)
	for y := range h {
		clear(row)
		luma(img, b.Min.Y+y, func(x int, l float64) {
			for _, c := range xs[x] {
				row[c.cell] += c.weight * l
			}
		})
		for _, c := range ys[y] {
			for cx, v := range row {
				out[c.cell*side+cx] += c.weight * v
			}
		}
	}
	return out
}

type share struct {
	cell   int
	weight float64
}

// coverage returns, for each of n source pixels along an axis, the cells
// it overlaps and the fraction of the cell's width it fills.
func coverage(n int) [][]share {
	out := make([][]share, n)
	scale := float64(side) / float64(n) // cell units per source pixel
	for i := range n {
		lo, hi := float64(i)*scale, float64(i+1)*scale
		for c := int(lo); c < side && float64(c) < hi; c++ {
			if f := min(hi, float64(c+1)) - max(lo, float64(c)); f > 0 {
				out[i] = append(out[i], share{cell: c, weight: f})
			}
		}
	}
	return out
}

// luma calls fn with the luma (0..255, Rec. 601 as in JPEG) of each pixel
// of row y, x counted from the left edge, with fast paths for the types
// decoders return.
func luma(img image.Image, y int, fn func(x int, l float64)) {
	b := img.Bounds()
	switch m := img.(type) {
	case *image.YCbCr:
		row := m.Y[m.YOffset(b.Min.X, y):][:b.Dx()]
		for x, v := range row {
			fn(x, float64(v))
		}
	case *image.Gray:
		row := m.Pix[m.PixOffset(b.Min.X, y):][:b.Dx()]
		for x, v := range row {
			fn(x, float64(v))
		}
	case *image.RGBA: // premultiplied: over white adds the missing light
		row := m.Pix[m.PixOffset(b.Min.X, y):][:4*b.Dx()]
		for x := range b.Dx() {
			p := row[4*x : 4*x+4 : 4*x+4]
			white := 255 - float64(p[3])
			fn(x, rgbLuma(float64(p[0])+white, float64(p[1])+white, float64(p[2])+white))
		}
	default:
		for x := range b.Dx() {
			r, g, bl, a := img.At(b.Min.X+x, y).RGBA()
			white := float64(0xffff - a)
			fn(x, rgbLuma(float64(r)+white, float64(g)+white, float64(bl)+white)/257)
		}
	}
}

func rgbLuma(r, g, b float64) float64 { return 0.299*r + 0.587*g + 0.114*b }
