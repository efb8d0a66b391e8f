// Package photo makes the large test photo the benchmarks use, in Go, so
// they need no image from outside the repository.
package photo

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// ParseSize reads "WIDTHxHEIGHT", as the -generate flags take it.
func ParseSize(s string) (w, h int, err error) {
	ws, hs, _ := strings.Cut(s, "x")
	w, werr := strconv.Atoi(ws)
	h, herr := strconv.Atoi(hs)
	if werr != nil || herr != nil || w < 1 || h < 1 {
		return 0, 0, fmt.Errorf("size %q: want WIDTHxHEIGHT, both at least 1", s)
	}
	return w, h, nil
}

// Generate makes a w×h JPEG that a camera could have taken, as far as the
// decoder and the resizer can tell: 4:2:0 YCbCr at quality 90, smooth
// gradients and soft blobs (the sky and the subject) under fine sensor-like
// noise, so the file is about as large as a real photo of that size (a
// 12-MP camera JPEG is 2–5 MB; a flat image would be a few hundred KB and
// decode faster than any real one). It is deterministic: the same size
// gives the same bytes, so runs and machines compare.
func Generate(w, h int) ([]byte, error) {
	img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	rng := rand.New(rand.NewPCG(1, 2))
	type blob struct{ x, y, r, dy, dcb, dcr float64 }
	blobs := make([]blob, 12)
	for i := range blobs {
		blobs[i] = blob{x: rng.Float64() * float64(w), y: rng.Float64() * float64(h),
			r: (0.05 + 0.2*rng.Float64()) * float64(max(w, h)), dy: 120*rng.Float64() - 60,
			dcb: 60*rng.Float64() - 30, dcr: 60*rng.Float64() - 30}
	}
	// field is the smooth picture at (x, y): luma and the two chroma
	// offsets.
	field := func(x, y float64) (yy, cb, cr float64) {
		fx, fy := x/float64(w), y/float64(h)
		yy = 70 + 110*fy + 25*math.Sin(6*fx+3*fy)
		cb, cr = 20*(0.5-fy), 15*math.Cos(4*fx)
		for _, b := range blobs {
			dx, dy := x-b.x, y-b.y
			k := math.Exp(-(dx*dx + dy*dy) / (2 * b.r * b.r))
			yy += k * b.dy
			cb += k * b.dcb
			cr += k * b.dcr
		}
		return yy, cb, cr
	}
	clamp := func(v float64) uint8 { return uint8(max(0, min(255, math.Round(v)))) }
	// The smooth field changes slowly: compute it on an 8×8 grid and
	// hold it per block, which keeps 12 MP under a second; the noise is
	// per pixel.
	for by := 0; by < h; by += 8 {
		for bx := 0; bx < w; bx += 8 {
			yy, cb, cr := field(float64(bx+4), float64(by+4))
			for y := by; y < min(by+8, h); y++ {
				for x := bx; x < min(bx+8, w); x++ {
					img.Y[img.YOffset(x, y)] = clamp(yy + 6*rng.NormFloat64())
				}
			}
			for y := by; y < min(by+8, h); y += 2 {
				for x := bx; x < min(bx+8, w); x += 2 {
					i := img.COffset(x, y)
					img.Cb[i] = clamp(128 + cb + 2*rng.NormFloat64())
					img.Cr[i] = clamp(128 + cr + 2*rng.NormFloat64())
				}
			}
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
