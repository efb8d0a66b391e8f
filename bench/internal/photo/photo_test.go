package photo_test

import (
	"bytes"
	"image/jpeg"
	"testing"

	"onebox/bench/internal/photo"
)

func TestParseSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		w, h int
		ok   bool
	}{
		{"4032x3024", 4032, 3024, true},
		{"1x1", 1, 1, true},
		{"0x10", 0, 0, false},
		{"10x-1", 0, 0, false},
		{"4032", 0, 0, false},
		{"4032x3024x2", 0, 0, false},
		{"4032x3024junk", 0, 0, false},
		{"x", 0, 0, false},
	} {
		w, h, err := photo.ParseSize(tc.in)
		if (err == nil) != tc.ok || w != tc.w || h != tc.h {
			t.Errorf("ParseSize(%q) = %d, %d, %v; want %d, %d, ok %v", tc.in, w, h, err, tc.w, tc.h, tc.ok)
		}
	}
}

func TestGenerate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ w, h int }{{1, 1}, {33, 17}, {640, 480}} {
		data, err := photo.Generate(tc.w, tc.h)
		if err != nil {
			t.Fatalf("Generate(%d, %d): %v", tc.w, tc.h, err)
		}
		img, err := jpeg.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("Generate(%d, %d) does not decode: %v", tc.w, tc.h, err)
		}
		if b := img.Bounds(); b.Dx() != tc.w || b.Dy() != tc.h {
			t.Errorf("Generate(%d, %d) is %dx%d", tc.w, tc.h, b.Dx(), b.Dy())
		}
		again, err := photo.Generate(tc.w, tc.h)
		if err != nil || !bytes.Equal(data, again) {
			t.Errorf("Generate(%d, %d) is not deterministic (err %v)", tc.w, tc.h, err)
		}
	}
	// A photo is not flat: a camera JPEG takes about 2 bits a pixel (the
	// 12-MP Olympus photo this replaces: 1.9); a gradient alone takes a
	// tenth of that, and decodes faster than any real photo.
	data, err := photo.Generate(640, 480)
	if err != nil {
		t.Fatal(err)
	}
	if bits := float64(len(data)) * 8 / (640 * 480); bits < 1.5 {
		t.Errorf("Generate(640, 480) takes %.2f bits a pixel, want a photo's (over 1.5)", bits)
	}
}
