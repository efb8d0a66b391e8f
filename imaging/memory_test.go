package imaging_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/png"
	"runtime"
	"strings"
	"testing"

	"onebox/imaging"
)

// Headers alone, a few dozen bytes each, declaring images of any size:
// Probe reads no further, so the estimate can be tested on the numbers.

// pngIHDR is a PNG signature and IHDR chunk.
func pngIHDR(w, h uint32, depth, colorType byte) []byte {
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, depth, colorType, 0, 0, 0)
	chunk := append([]byte("IHDR"), ihdr...)
	out := []byte("\x89PNG\r\n\x1a\n")
	out = binary.BigEndian.AppendUint32(out, uint32(len(ihdr)))
	out = append(out, chunk...)
	return binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(chunk))
}

// jpegSOF is SOI, a start-of-frame segment (sof: 0xc0 baseline, 0xc2
// progressive) whose components have the given sampling factors (0x22 is
// 2×2), and the start of a scan, where DecodeConfig stops.
func jpegSOF(w, h uint16, sof byte, sampling ...byte) []byte {
	seg := []byte{8}
	seg = binary.BigEndian.AppendUint16(seg, h)
	seg = binary.BigEndian.AppendUint16(seg, w)
	seg = append(seg, byte(len(sampling)))
	for i, hv := range sampling {
		seg = append(seg, byte(i+1), hv, 0)
	}
	out := []byte{0xff, 0xd8, 0xff, sof}
	out = binary.BigEndian.AppendUint16(out, uint16(2+len(seg)))
	out = append(out, seg...)
	return append(out, 0xff, 0xda, 0, 2)
}

// webpVP8X is a RIFF with a VP8X header (alpha flag as given) followed by
// the headers of the named chunks, empty.
func webpVP8X(w, h uint32, alpha bool, chunks ...string) []byte {
	var flags byte
	if alpha {
		flags = 1 << 4
	}
	vp8x := []byte{flags, 0, 0, 0}
	vp8x = append(vp8x, byte(w-1), byte((w-1)>>8), byte((w-1)>>16))
	vp8x = append(vp8x, byte(h-1), byte((h-1)>>8), byte((h-1)>>16))
	body := []byte("WEBPVP8X")
	body = binary.LittleEndian.AppendUint32(body, uint32(len(vp8x)))
	body = append(body, vp8x...)
	for _, c := range chunks {
		body = append(body, c...)
		body = binary.LittleEndian.AppendUint32(body, 0)
	}
	out := binary.LittleEndian.AppendUint32([]byte("RIFF"), uint32(len(body)))
	return append(out, body...)
}

func mustProbe(t *testing.T, data []byte) imaging.Header {
	t.Helper()
	h, err := imaging.Probe(bytes.NewReader(data), imaging.DefaultMaxPixels)
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	return h
}

// TestDecodeBytesCoversMeasuredPeaks holds the estimate to the live heap
// peaks measured with bench/decodepeak (GOGC=1, the file read from disk
// as the worker reads it) for files of these headers and sizes: an
// estimate below them would let decodes hold more than the budget. The
// upper bounds, in bytes per pixel, keep it from refusing ordinary
// photos for no reason.
func TestDecodeBytesCoversMeasuredPeaks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		data     []byte
		file     int64   // bytes
		measured int64   // MiB, the largest live heap
		most     float64 // bytes per pixel, file included
	}{
		// The NRGBA64 and its RGBA copy.
		{"png 16-bit rgba", pngIHDR(7000, 7000, 16, 6), 2_241_832, 561, 12.5},
		{"png 16-bit gray, as rgba (tRNS makes it NRGBA64)", pngIHDR(7000, 7000, 16, 0), 2_241_832, 561, 12.5},
		// No orientation: with one it would hold two RGBA.
		{"png 8-bit rgb", pngIHDR(4032, 3024, 8, 2), 24_604_933, 70, 12},
		{"png 8-bit gray, as rgb (tRNS makes it NRGBA)", pngIHDR(4032, 3024, 8, 0), 24_604_933, 70, 12},
		// Noise, so the PNG variants' buffers are as large as they get;
		// at 2048 wide the largest variant is the image itself.
		{"png 8-bit rgba 2048x2048", pngIHDR(2048, 2048, 8, 6), 15_329_590, 54, 20},
		// The int32 coefficients.
		{"jpeg progressive 4:2:0", jpegSOF(4000, 3000, 0xc2, 0x22, 0x11, 0x11), 6_537_961, 92, 9.5},
		{"jpeg progressive 4:4:4", jpegSOF(4000, 3000, 0xc2, 0x11, 0x11, 0x11), 6_607_974, 178, 21},
		{"jpeg baseline 4:2:0", jpegSOF(4000, 3000, 0xc0, 0x22, 0x11, 0x11), 6_973_766, 24, 5.5},
		{"webp lossless", webpVP8X(4032, 3024, false, "VP8L"), 11_355_724, 59, 12},
		{"webp lossy with alpha", webpVP8X(4032, 3024, true, "ALPH", "VP8 "), 790_242, 76, 12},
		{"webp lossy", webpVP8X(4032, 3024, false, "VP8 "), 789_444, 22, 5.5},
		// The header alone does not say which bitstream follows: the
		// costliest is assumed.
		{"webp vp8x, bitstream unseen, as lossy with alpha", webpVP8X(4032, 3024, false), 790_242, 76, 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := mustProbe(t, tt.data)
			h.FileSize = tt.file
			px := float64(h.Width) * float64(h.Height)
			got := h.DecodeBytes()
			if got < tt.measured<<20 || float64(got) > tt.most*px {
				t.Errorf("DecodeBytes = %d MiB, %.2f bytes per pixel; want at least %d MiB, at most %.1f bytes per pixel",
					got>>20, float64(got)/px, tt.measured, tt.most)
			}
		})
	}
}

func TestDecodeBytesCountsTheFile(t *testing.T) {
	t.Parallel()
	h := mustProbe(t, jpegSOF(4000, 3000, 0xc2, 0x22, 0x11, 0x11)) // decoding is its costliest phase
	without := h.DecodeBytes()
	h.FileSize = 20 << 20
	if got := h.DecodeBytes(); got != without+20<<20 {
		t.Errorf("DecodeBytes with a 20 MiB file = %d, want %d", got, without+20<<20)
	}
}

// TestOrdinaryPhotosFitTheDefaultBudget: a 12-megapixel camera JPEG (and
// its 20 MiB worst-case file) fits the default budget (half of the
// default 512 MiB soft limit) several times over, so photo workers
// decode side by side.
func TestOrdinaryPhotosFitTheDefaultBudget(t *testing.T) {
	t.Parallel()
	const defaultBudget = 256 << 20
	for _, data := range [][]byte{
		jpegSOF(4032, 3024, 0xc0, 0x22, 0x11, 0x11),
		jpegSOF(4032, 3024, 0xc0, 0x21, 0x11, 0x11), // 4:2:2
	} {
		h := mustProbe(t, data)
		h.FileSize = 20 << 20
		if n := h.DecodeBytes(); n > defaultBudget/2 {
			t.Errorf("%d×%d JPEG: DecodeBytes = %d MiB, want at most %d", h.Width, h.Height, n>>20, defaultBudget/2>>20)
		}
	}
}

func TestCheckMemory(t *testing.T) {
	t.Parallel()
	h := mustProbe(t, pngIHDR(7000, 7000, 16, 6)) // the 49-megapixel 16-bit PNG that took 561 MiB
	need := h.DecodeBytes()
	if err := h.CheckMemory(need); err != nil {
		t.Errorf("CheckMemory(exactly its estimate) = %v, want nil", err)
	}
	err := h.CheckMemory(need - 1)
	var re *imaging.RejectError
	if !errors.As(err, &re) || !errors.Is(err, imaging.ErrTooMuchMemory) || !errors.Is(err, imaging.ErrTooLarge) {
		t.Fatalf("CheckMemory(one byte short) = %v, want a RejectError wrapping ErrTooMuchMemory and ErrTooLarge", err)
	}
	err = h.CheckMemory(256 << 20)
	if !errors.As(err, &re) || re.Reason != "this image needs about 565 MiB to process; the limit is 256 MiB" {
		t.Errorf("CheckMemory(256 MiB) = %v; want the need and the limit in the reason", err)
	}
	if !strings.HasPrefix(err.Error(), re.Reason) {
		t.Errorf("Error() = %q", err)
	}
}

// TestDecodeReadsASeekableFileOnce: DecodeBytes counts the file once, so
// Decode must not hold more (a buffer growing by doubling held up to
// three times the file). The file is a small PNG followed by 8 MiB the
// decoder never looks at. It measures process-wide allocation, so it
// does not run in parallel with other tests.
func TestDecodeReadsASeekableFileOnce(t *testing.T) {
	var small bytes.Buffer
	if err := png.Encode(&small, image.NewGray(image.Rect(0, 0, 16, 16))); err != nil {
		t.Fatal(err)
	}
	const pad = 8 << 20
	data := append(small.Bytes(), make([]byte, pad)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := imaging.Decode(context.Background(), bytes.NewReader(data), 0)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	// Once is pad; the race detector's build allocates a second,
	// short-lived copy in bytes.Buffer.Grow. Growing by doubling from
	// the header's bytes allocates four times pad or more.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2*pad+pad/2 {
		t.Errorf("Decode of a %d MiB file allocated %d MiB", len(data)>>20, alloc>>20)
	}
}

// TestDecodeKeepsAnRGBImageInPlace: Go decodes an 8-bit RGB PNG to an
// opaque image.RGBA, which is already the working layout; copying it
// would double what the estimate charges for it. It measures
// process-wide allocation, so it does not run in parallel.
func TestDecodeKeepsAnRGBImageInPlace(t *testing.T) {
	const side = 1024 // an RGBA of 4 MiB
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	var buf bytes.Buffer
	// png.Encode writes an opaque RGBA as 8-bit RGB (colour type 2).
	rgb := image.NewRGBA(image.Rect(0, 0, side, side))
	for i := 3; i < len(rgb.Pix); i += 4 {
		rgb.Pix[i] = 0xff
	}
	if err := enc.Encode(&buf, rgb); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	if data[25] != 2 {
		t.Fatalf("colour type %d, want 2 (RGB)", data[25])
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	img, err := imaging.Decode(context.Background(), bytes.NewReader(data), 0)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := img.Pixels.(*image.RGBA); !ok || img.HasAlpha {
		t.Fatalf("Pixels %T, HasAlpha %v; want an opaque *image.RGBA", img.Pixels, img.HasAlpha)
	}
	const pixels = 4 * side * side
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > pixels+pixels/2 {
		t.Errorf("Decode of a %d×%d RGB PNG allocated %d MiB; its pixels are %d MiB", side, side, alloc>>20, pixels>>20)
	}
}
