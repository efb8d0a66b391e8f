package imaging_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"onebox/imaging"
	"onebox/internal/testimages"
)

// FuzzDecode: no input may panic or hang Decode (or Variants on what it
// accepts). Seeds are small corpus files of every format, damaged ones
// included; crashers found are kept under testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{
		"formats/png_1x1_s01n3p01.png", "formats/png_rgba8_basn6a08.png", "formats/png_exif_chunk_exif2c08.png",
		"formats/png_palette_trns_tbbn3p08.png", "formats/jpeg_gray_hopper.jpg", "formats/jpeg_baseline_testorig.jpg",
		"formats/webp_lossy_synthetic_hopper.webp", "formats/webp_lossless_synthetic_160x100.webp", "orientation/webp_hopper_orientation_2.webp",
		"broken/jpeg_exif_two_app1_1x1.jpg", "broken/webp_very_short_synthetic.webp", "broken/png_xdtn0g01.png",
	} {
		f.Add(testimages.Read(f, name))
	}
	f.Add(animatedWebP())
	f.Add(pngHeader(2000, 2000))
	f.Add([]byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		img, err := imaging.Decode(ctx, bytes.NewReader(data), 4_000_000)
		if err != nil {
			var re *imaging.RejectError
			if !errors.As(err, &re) || re.Reason == "" {
				t.Fatalf("Decode error %v is not a RejectError with a reason", err)
			}
			return
		}
		if img.Width*img.Height > 4_000_000 {
			t.Fatalf("decoded %dx%d past the limit", img.Width, img.Height)
		}
		if _, err := imaging.Variants(ctx, img, imaging.Options{Widths: []int{16, 64}, Thumb: 16}); err != nil {
			t.Fatalf("Variants: %v", err)
		}
	})
}
