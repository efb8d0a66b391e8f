package imaging_test

import (
	"bytes"
	"errors"
	"testing"
	"testing/iotest"

	"onebox/imaging"
	"onebox/internal/testimages"
)

// FuzzProbe: FuzzDecode reaches Probe only through Decode, which spends
// most of its time decoding pixels; this target hits the header parsers
// alone, many times faster. Whatever the bytes, Probe either refuses them
// with a *RejectError that has a reason or returns a header within the
// pixel limit whose format is what Sniff says; reading the same bytes one
// at a time gives the same header and no smaller memory estimate.
func FuzzProbe(f *testing.F) {
	for _, name := range []string{
		"formats/png_1x1_s01n3p01.png", "formats/jpeg_gray_hopper.jpg", "formats/webp_lossless_synthetic_160x100.webp",
		"orientation/webp_hopper_orientation_2.webp", "broken/jpeg_exif_two_app1_1x1.jpg", "broken/webp_very_short_synthetic.webp",
	} {
		f.Add(testimages.Read(f, name))
	}
	f.Add(animatedWebP())
	f.Add(pngHeader(2000, 2000))
	f.Add(pngHeader(0, 1))
	f.Add([]byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"))
	f.Add([]byte("RIFF\x1a\x00\x00\x00WEBPVP8X"))
	f.Add([]byte("\xff\xd8\xff"))
	const maxPixels = 1 << 20
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := imaging.Probe(bytes.NewReader(data), maxPixels)
		slow, slowErr := imaging.Probe(iotest.OneByteReader(bytes.NewReader(data)), maxPixels)
		if (err == nil) != (slowErr == nil) || h.Format != slow.Format || h.Width != slow.Width || h.Height != slow.Height || h.Animated != slow.Animated {
			t.Fatalf("Probe gave %+v, %v; one byte at a time %+v, %v", h, err, slow, slowErr)
		}
		// The memory estimate may differ, as it reads what metadata
		// came with the header: with fewer bytes it may only grow.
		if slow.DecodeBytes() < h.DecodeBytes() {
			t.Fatalf("one byte at a time estimates %d bytes, less than %d", slow.DecodeBytes(), h.DecodeBytes())
		}
		if err != nil {
			var re *imaging.RejectError
			if !errors.As(err, &re) || re.Reason == "" {
				t.Fatalf("Probe error %v is not a RejectError with a reason", err)
			}
			return
		}
		if h.Width <= 0 || h.Height <= 0 || int64(h.Width)*int64(h.Height) > maxPixels {
			t.Fatalf("header %dx%d outside (0, %d] pixels", h.Width, h.Height, maxPixels)
		}
		if format, err := imaging.Sniff(data); err != nil || format != h.Format {
			t.Fatalf("Probe says %q, Sniff %q (%v)", h.Format, format, err)
		}
	})
}
