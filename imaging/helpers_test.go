package imaging_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"image"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"testing"

	xdraw "golang.org/x/image/draw"

	"onebox/imaging"
	"onebox/internal/testimages"
)

// imagesDir is the repository's test corpus (see its SOURCES.tsv).
func imagesDir(t testing.TB) string {
	t.Helper()
	return testimages.Dir(t)
}

func mustRead(t testing.TB, rel string) []byte {
	t.Helper()
	return testimages.Read(t, rel)
}

// eachFile runs fn in a parallel subtest for every corpus file matching
// the glob patterns (relative to imagesDir), and fails if there are fewer
// than atLeast.
func eachFile(t *testing.T, atLeast int, fn func(t *testing.T, name string, data []byte), patterns ...string) {
	t.Helper()
	var files []string
	for _, p := range patterns {
		m, err := filepath.Glob(filepath.Join(imagesDir(t), p))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < atLeast {
		t.Fatalf("%v: %d files, want at least %d", patterns, len(files), atLeast)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			fn(t, filepath.Base(path), data)
		})
	}
}

func mustDecode(t testing.TB, rel string) *imaging.Image {
	t.Helper()
	img, err := imaging.Decode(context.Background(), bytes.NewReader(mustRead(t, rel)), imaging.DefaultMaxPixels)
	if err != nil {
		t.Fatalf("Decode(%s): %v", rel, err)
	}
	return img
}

// gray32 is an independent reference downscale (x/image/draw) to 32×32
// grayscale, for comparing pictures regardless of size and encoding.
func gray32(m image.Image) []float64 {
	rgba := image.NewRGBA(image.Rect(0, 0, 32, 32))
	xdraw.CatmullRom.Scale(rgba, rgba.Bounds(), m, m.Bounds(), xdraw.Src, nil)
	out := make([]float64, 0, 32*32)
	for y := range 32 {
		for x := range 32 {
			out = append(out, float64(color.GrayModel.Convert(rgba.At(x, y)).(color.Gray).Y))
		}
	}
	return out
}

func meanAbsDiff(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += math.Abs(a[i] - b[i])
	}
	return s / float64(len(a))
}

// jpegSegment is one marker segment of an encoded JPEG.
type jpegSegment struct {
	marker byte
	data   []byte
}

// headerSegments lists the segments of JPEG j up to the start of scan.
func headerSegments(t testing.TB, j []byte) []jpegSegment {
	t.Helper()
	if !bytes.HasPrefix(j, []byte{0xff, 0xd8}) {
		t.Fatalf("not a JPEG: % x", j[:min(len(j), 4)])
	}
	var segs []jpegSegment
	for p := j[2:]; len(p) >= 4 && p[0] == 0xff && p[1] != 0xda; {
		n := int(binary.BigEndian.Uint16(p[2:]))
		if n < 2 || 2+n > len(p) {
			t.Fatalf("bad segment length %d", n)
		}
		segs = append(segs, jpegSegment{marker: p[1], data: p[4 : 2+n]})
		p = p[2+n:]
	}
	return segs
}

// iccOf joins the APP2 ICC_PROFILE chunks of JPEG j by sequence number.
func iccOf(t testing.TB, j []byte) []byte {
	t.Helper()
	const magic = "ICC_PROFILE\x00"
	parts := map[byte][]byte{}
	for _, s := range headerSegments(t, j) {
		if s.marker == 0xe2 && bytes.HasPrefix(s.data, []byte(magic)) {
			parts[s.data[len(magic)]] = s.data[len(magic)+2:]
		}
	}
	var icc []byte
	for i := 1; i <= len(parts); i++ {
		icc = append(icc, parts[byte(i)]...)
	}
	return icc
}

// expectedSizes applies the documented never-upscale rule: every width
// below the image's, then one variant at the native size, then the
// thumbnail.
func expectedSizes(w, h int, widths []int, thumb int) []image.Point {
	var out []image.Point
	for _, vw := range widths {
		if vw >= w {
			out = append(out, image.Pt(w, h))
			break
		}
		out = append(out, image.Pt(vw, max(1, int(math.Round(float64(h)*float64(vw)/float64(w))))))
	}
	side := min(thumb, w, h)
	return append(out, image.Pt(side, side))
}
