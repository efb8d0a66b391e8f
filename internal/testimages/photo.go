package testimages

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Photo draws a w×h picture with a photo's structure: a sky-to-ground
// gradient, soft and hard-edged shapes in front of it, and fine texture.
// The same size and seed give the same pixels; different seeds give
// pictures a perceptual hash tells apart.
func Photo(w, h int, seed uint64) *image.RGBA {
	rng := rand.New(rand.NewPCG(seed, 0x6f6e65626f78))
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	top, bottom, ground := randColor(rng), randColor(rng), randColor(rng)
	horizon := h * (35 + rng.IntN(30)) / 100
	noise := 6 + rng.IntN(6) // ± levels of texture, as sensor noise would add
	for y := range h {
		var row [3]float64
		if y < horizon {
			f := float64(y) / float64(max(horizon, 1))
			for c := range 3 {
				row[c] = lerp(top[c], bottom[c], f)
			}
		} else {
			f := float64(y-horizon) / float64(max(h-horizon, 1))
			for c := range 3 {
				row[c] = lerp(ground[c], ground[c]*0.5, f)
			}
		}
		p := img.Pix[y*img.Stride:]
		for x := range w {
			n := float64(int(hash(uint64(x), uint64(y), seed)%uint64(2*noise+1)) - noise)
			// One 32-bit store a pixel: four byte stores cost four times
			// as much under the race detector.
			binary.LittleEndian.PutUint32(p[4*x:], rgba(clamp(row[0]+n), clamp(row[1]+n), clamp(row[2]+n)))
		}
	}
	side := float64(min(w, h))
	for range 10 + rng.IntN(6) {
		s := shape{
			cx: rng.Float64() * float64(w), cy: rng.Float64() * float64(h),
			rx: side * (0.05 + 0.25*rng.Float64()), ry: side * (0.05 + 0.25*rng.Float64()),
			rect: rng.IntN(3) == 0, soft: side * 0.02 * rng.Float64(),
			col: randColor(rng), stripes: rng.IntN(4) == 0,
		}
		s.draw(img)
	}
	return img
}

// PhotoJPEG encodes Photo(w, h, seed) as a baseline 4:2:0 JPEG.
func PhotoJPEG(w, h int, seed uint64, quality int) ([]byte, error) {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, Photo(w, h, seed), &jpeg.Options{Quality: quality}); err != nil {
		return nil, fmt.Errorf("encode %dx%d photo: %w", w, h, err)
	}
	return buf.Bytes(), nil
}

type shape struct {
	cx, cy, rx, ry, soft float64
	rect, stripes        bool
	col                  [3]float64
}

// draw blends the shape over img, visiting only its bounding box.
func (s shape) draw(img *image.RGBA) {
	b := img.Bounds()
	x0, x1 := max(b.Min.X, int(s.cx-s.rx-s.soft)), min(b.Max.X, int(s.cx+s.rx+s.soft)+1)
	y0, y1 := max(b.Min.Y, int(s.cy-s.ry-s.soft)), min(b.Max.Y, int(s.cy+s.ry+s.soft)+1)
	for y := y0; y < y1; y++ {
		p := img.Pix[y*img.Stride:]
		for x := x0; x < x1; x++ {
			// d: signed distance outside the edge, in pixels (roughly).
			dx, dy := (float64(x)-s.cx)/s.rx, (float64(y)-s.cy)/s.ry
			var d float64
			if s.rect {
				d = (max(math.Abs(dx), math.Abs(dy)) - 1) * min(s.rx, s.ry)
			} else {
				d = (math.Sqrt(dx*dx+dy*dy) - 1) * min(s.rx, s.ry)
			}
			a := 1.0
			switch {
			case d > s.soft:
				continue
			case d > 0:
				a = 1 - d/max(s.soft, 1e-9)
			}
			shade := 1 - 0.3*(dy+1)/2 // lit from above
			if s.stripes && (x/6)%2 == 0 {
				shade *= 0.7
			}
			px := binary.LittleEndian.Uint32(p[4*x:])
			var ch [3]uint8
			for c := range 3 {
				ch[c] = clamp(lerp(float64(uint8(px>>(8*c))), s.col[c]*shade, a))
			}
			binary.LittleEndian.PutUint32(p[4*x:], rgba(ch[0], ch[1], ch[2]))
		}
	}
}

// rgba packs an opaque pixel as image.RGBA stores it, little-endian.
func rgba(r, g, b uint8) uint32 { return uint32(r) | uint32(g)<<8 | uint32(b)<<16 | 0xff<<24 }

func randColor(rng *rand.Rand) [3]float64 {
	return [3]float64{float64(rng.IntN(256)), float64(rng.IntN(256)), float64(rng.IntN(256))}
}

func lerp(a, b, f float64) float64 { return a + (b-a)*f }

func clamp(v float64) uint8 {
	switch {
	case v < 0:
		return 0
	case v > 255:
		return 255
	}
	return uint8(v + 0.5)
}

// hash mixes a pixel's coordinates into noise (splitmix64's finaliser).
func hash(x, y, seed uint64) uint64 {
	z := x*0x9e3779b97f4a7c15 ^ y*0xbf58476d1ce4e5b9 ^ seed
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// toCMYK converts img's pixels the way a naive RGB-to-CMYK separation
// does (color.RGBToCMYK).
func toCMYK(img *image.RGBA) *image.CMYK {
	out := image.NewCMYK(img.Bounds())
	for i := 0; i < len(img.Pix); i += 4 {
		c, m, y, k := color.RGBToCMYK(img.Pix[i], img.Pix[i+1], img.Pix[i+2])
		copy(out.Pix[i:], []byte{c, m, y, k})
	}
	return out
}

// ParseSize reads "WIDTHxHEIGHT", as the generator's -size and the
// benchmarks' -generate flags take it; each side is 1 to 20000.
func ParseSize(s string) (w, h int, err error) {
	ws, hs, _ := strings.Cut(s, "x")
	w, werr := strconv.Atoi(ws)
	h, herr := strconv.Atoi(hs)
	if werr != nil || herr != nil || w < 1 || h < 1 || w > 20000 || h > 20000 {
		return 0, 0, fmt.Errorf("size %q: want WIDTHxHEIGHT, each 1 to 20000", s)
	}
	return w, h, nil
}
