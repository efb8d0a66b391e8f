package imaging_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	_ "image/gif" // the outputs are checked with image.Decode
	_ "image/jpeg"
	_ "image/png"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"onebox/imaging"
	"onebox/internal/testimages"
)

func TestSniff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		head string
		want imaging.Format
	}{
		{"jpeg", "\xff\xd8\xff\xe0\x00\x10JFIF", imaging.JPEG},
		{"png", "\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", imaging.PNG},
		{"gif87", "GIF87a\x01\x00", imaging.GIF},
		{"gif89", "GIF89a\x01\x00", imaging.GIF},
		{"webp", "RIFF\x10\x00\x00\x00WEBPVP8 ", imaging.WebP},
		{"empty", "", ""},
		{"text", "hello, this is not an image", ""},
		{"riff wave", "RIFF\x10\x00\x00\x00WAVEfmt ", ""},
		{"short webp", "RIFF\x10\x00\x00\x00WEB", ""},
		{"svg", "<svg xmlns='http://www.w3.org/2000/svg'/>", ""},
		{"jpeg lookalike", "\xff\xd8\x00", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := imaging.Sniff([]byte(tt.head))
			if tt.want == "" {
				var re *imaging.RejectError
				if !errors.Is(err, imaging.ErrUnsupported) || !errors.As(err, &re) || re.Reason == "" {
					t.Fatalf("Sniff = %q, %v; want a RejectError wrapping ErrUnsupported", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Sniff = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestDecodeCorpus decodes every file in formats/ and orientation/ and
// renders its variants, checking every output's real size and type.
func TestDecodeCorpus(t *testing.T) {
	t.Parallel()
	// Files that must be refused, and why.
	refused := map[string]error{
		"jpeg_arithmetic_testimgari.jpg": imaging.ErrUnsupported, // valid, but Go has no arithmetic decoder
	}
	// Transparent sources must give PNG variants; the rest JPEG.
	transparent := map[string]bool{
		"png_rgba8_basn6a08.png":                 true,
		"png_rgba16_basn6a16.png":                true,
		"png_grayalpha8_basn4a08.png":            true,
		"png_palette_trns_tbbn3p08.png":          true,
		"webp_lossy_alpha_synthetic_hopper.webp": true,
		"webp_lossless_synthetic_160x100.webp":   true, // alpha 0 in its corners
		"gif_animated_rotating_squares.gif":      true, // a spinner on a transparent background
	}
	eachFile(t, 41, func(t *testing.T, name string, data []byte) {
		h, probeErr := imaging.Probe(bytes.NewReader(data), imaging.DefaultMaxPixels)
		img, err := imaging.Decode(context.Background(), bytes.NewReader(data), imaging.DefaultMaxPixels)
		if want, ok := refused[name]; ok {
			var re *imaging.RejectError
			if !errors.Is(err, want) || !errors.As(err, &re) || re.Reason == "" {
				t.Fatalf("Decode error = %v; want a RejectError wrapping %v", err, want)
			}
			return
		}
		if probeErr != nil || err != nil {
			t.Fatalf("Probe: %v; Decode: %v", probeErr, err)
		}
		if img.Format != h.Format {
			t.Errorf("Format = %q, Probe said %q", img.Format, h.Format)
		}
		byExt := map[string]imaging.Format{".jpg": imaging.JPEG, ".png": imaging.PNG, ".gif": imaging.GIF, ".webp": imaging.WebP}
		if want := byExt[filepath.Ext(name)]; img.Format != want {
			t.Errorf("Format = %q for a %s file", img.Format, filepath.Ext(name))
		}
		if img.Pixels.Bounds() != image.Rect(0, 0, img.Width, img.Height) {
			t.Errorf("Pixels.Bounds() = %v, want 0,0-%d,%d", img.Pixels.Bounds(), img.Width, img.Height)
		}
		// Only orientations 5-8 swap the sides; the corpus marks them.
		wantW, wantH := h.Width, h.Height
		if strings.HasPrefix(name, "Landscape_") && name >= "Landscape_5" {
			wantW, wantH = wantH, wantW
		}
		if img.Width != wantW || img.Height != wantH {
			t.Errorf("decoded %dx%d, want %dx%d", img.Width, img.Height, wantW, wantH)
		}
		if img.HasAlpha != transparent[name] {
			t.Errorf("HasAlpha = %v, want %v", img.HasAlpha, transparent[name])
		}

		outs, err := imaging.Variants(context.Background(), img, imaging.Options{})
		if err != nil {
			t.Fatal(err)
		}
		want := expectedSizes(img.Width, img.Height, []int{128, 256, 512, 1024, 2048}, 256)
		if len(outs) != len(want) {
			t.Fatalf("%d outputs, want %d", len(outs), len(want))
		}
		wantType := "image/jpeg"
		if transparent[name] {
			wantType = "image/png"
		}
		for i, o := range outs {
			if i == len(outs)-1 && o.Name != "thumb" || i < len(outs)-1 && !strings.HasPrefix(o.Name, "w") {
				t.Errorf("output %d is named %q", i, o.Name)
			}
			m, format, err := image.Decode(bytes.NewReader(o.Data))
			if err != nil {
				t.Fatalf("%s: decoding output: %v", o.Name, err)
			}
			if got := m.Bounds().Size(); got != want[i] || o.Width != got.X || o.Height != got.Y {
				t.Errorf("%s: %v (says %dx%d), want %v", o.Name, got, o.Width, o.Height, want[i])
			}
			if o.ContentType != wantType || "image/"+format != wantType {
				t.Errorf("%s: content type %q, data is %s, want %s", o.Name, o.ContentType, format, wantType)
			}
		}
	}, "formats/*", "orientation/*")
}

// TestOrientation checks direction, not just size: every Landscape_N
// (the same photo stored under EXIF orientation N) must look like
// Landscape_1 once decoded, and must not look like a mirror image of it.
func TestOrientation(t *testing.T) {
	t.Parallel()
	ref := gray32(mustDecode(t, "orientation/Landscape_1.jpg").Pixels)
	mirrored := gray32(mirror(mustDecode(t, "orientation/Landscape_1.jpg").Pixels))
	const maxDiff = 6.0 // of 255; the files are independent JPEG encodes
	if d := meanAbsDiff(ref, mirrored); d < 3*maxDiff {
		t.Fatalf("the picture is too symmetric to test orientation (mirror diff %.1f)", d)
	}
	for n := range 9 { // 0 is an invalid value, to be treated as 1
		name := "orientation/Landscape_" + string(rune('0'+n)) + ".jpg"
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			img := mustDecode(t, name)
			if img.Width != 1800 || img.Height != 1200 {
				t.Fatalf("decoded %dx%d, want 1800x1200", img.Width, img.Height)
			}
			if d := meanAbsDiff(gray32(img.Pixels), ref); d > maxDiff {
				t.Errorf("differs from Landscape_1 by %.1f (max %.1f)", d, maxDiff)
			}
		})
	}
	// The WebP files carry EXIF in a RIFF chunk; upright they are the
	// grayscale hopper JPEG.
	hopper := gray32(mustDecode(t, "formats/jpeg_gray_hopper.jpg").Pixels)
	for _, n := range []string{"2", "3", "4"} {
		name := "orientation/webp_hopper_orientation_" + n + ".webp"
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if d := meanAbsDiff(gray32(mustDecode(t, name).Pixels), hopper); d > 8 {
				t.Errorf("differs from the upright hopper by %.1f", d)
			}
		})
	}
}

func mirror(m image.Image) image.Image {
	b := m.Bounds()
	out := image.NewRGBA(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			out.Set(b.Max.X-1-(x-b.Min.X), y, m.At(x, y))
		}
	}
	return out
}

// TestCMYK checks that Adobe (inverted) CMYK JPEGs are not shown as
// negatives: one is red text on black, the other a park with green grass.
func TestCMYK(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file    string
		region  image.Rectangle
		check   func(r, g, b float64) bool
		meaning string
	}{
		{"formats/jpeg_cmyk_small_adobe.jpg", image.Rect(0, 0, 100, 100),
			func(r, g, b float64) bool { return r < 90 && g < 60 && b < 60 && r > 1.5*g }, "dark with red text"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			img := mustDecode(t, tt.file)
			var r, g, b, n float64
			for y := tt.region.Min.Y; y < tt.region.Max.Y; y++ {
				for x := tt.region.Min.X; x < tt.region.Max.X; x++ {
					cr, cg, cb, _ := img.Pixels.At(x, y).RGBA()
					r, g, b, n = r+float64(cr>>8), g+float64(cg>>8), b+float64(cb>>8), n+1
				}
			}
			r, g, b = r/n, g/n, b/n
			if !tt.check(r, g, b) {
				t.Errorf("mean colour of %v is (%.0f,%.0f,%.0f), not %s", tt.region, r, g, b, tt.meaning)
			}
		})
	}
	// The generated file's pixels are known: testimages.Photo through
	// color.RGBToCMYK. Decoded, it must be that picture, not its negative.
	t.Run("formats/jpeg_cmyk_adobe_no_profile_synthetic.jpg", func(t *testing.T) {
		t.Parallel()
		img := mustDecode(t, "formats/jpeg_cmyk_adobe_no_profile_synthetic.jpg")
		want := testimages.Photo(500, 333, 2)
		if d := channelDiff(img.Pixels, want); d > 6 {
			t.Errorf("differs from the picture it encodes by %.1f per channel (of 255)", d)
		}
	})
}

// TestBroken: every damaged file is refused with a clean reason or
// decodes; none panics or hangs.
func TestBroken(t *testing.T) {
	t.Parallel()
	want := map[string]error{ // nil: Go's decoders accept it
		"empty.jpg":                               imaging.ErrUnsupported,
		"text_named_as.jpg":                       imaging.ErrUnsupported,
		"png_xs1n0g01.png":                        imaging.ErrUnsupported,
		"png_xcrn0g04.png":                        imaging.ErrUnsupported,
		"jpeg_truncated_10000B_synthetic.jpg":     imaging.ErrCorrupt,
		"png_truncated_10000B_synthetic.png":      imaging.ErrCorrupt,
		"jpeg_corrupt_header_1024B_synthetic.jpg": imaging.ErrCorrupt,
		"png_broken_data_stream.png":              imaging.ErrCorrupt,
		"jpeg_exif_corrupt_struct.jpg":            imaging.ErrCorrupt,
		"jpeg_exif_invalid_tiff_header.jpg":       nil,
		"jpeg_exif_ifd_offset_10.jpg":             nil,
		"jpeg_exif_two_app1_1x1.jpg":              nil,
		"jpeg_junk_before_marker.jpg":             nil,
		"jpeg_truncated_app14.jpg":                nil,
	}
	eachFile(t, 21, func(t *testing.T, name string, data []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		img, err := imaging.Decode(ctx, bytes.NewReader(data), imaging.DefaultMaxPixels)
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatal("Decode hung")
		}
		if wantErr, listed := want[name]; listed && wantErr == nil && err != nil {
			t.Fatalf("Decode: %v; want success", err)
		}
		if err != nil {
			var re *imaging.RejectError
			if !errors.As(err, &re) {
				t.Fatalf("Decode error %v (%T) is not a RejectError", err, err)
			}
			if wantErr := want[name]; wantErr != nil && !errors.Is(err, wantErr) {
				t.Errorf("Decode error %v; want one wrapping %v", err, wantErr)
			}
			if !errors.Is(err, imaging.ErrUnsupported) && !errors.Is(err, imaging.ErrCorrupt) {
				t.Errorf("Decode error %v wraps no sentinel", err)
			}
			// A reason for people: no decoder prefixes, no Go jargon.
			if re.Reason == "" || strings.ContainsAny(re.Reason, ":") || strings.Contains(re.Reason, "invalid") {
				t.Errorf("reason %q is not a clean sentence", re.Reason)
			}
			return
		}
		if wantErr := want[name]; wantErr != nil {
			t.Fatalf("Decode succeeded; want %v", wantErr)
		}
		if _, err := imaging.Variants(ctx, img, imaging.Options{}); err != nil {
			t.Fatalf("Variants: %v", err)
		}
	}, "broken/*")
}

// pngHeader builds a PNG signature and IHDR chunk (8-bit RGBA) and no
// pixel data: a file that claims w×h in a few dozen bytes.
func pngHeader(w, h uint32) []byte {
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 6, 0, 0, 0)
	chunk := append([]byte("IHDR"), ihdr...)
	out := []byte("\x89PNG\r\n\x1a\n")
	out = binary.BigEndian.AppendUint32(out, uint32(len(ihdr)))
	out = append(out, chunk...)
	return binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(chunk))
}

// TestTooLarge refuses decompression bombs from the header, allocating
// nothing like their pixels. It measures process-wide allocation, so it
// does not run in parallel with other tests.
func TestTooLarge(t *testing.T) {
	bomb := mustRead(t, "large/bomb_jpeg_20000x14000_gray_synthetic.jpg")
	tests := []struct {
		name string
		data []byte
	}{
		{"jpeg 20000x14000", bomb},
		{"png 65536x65536", pngHeader(65536, 65536)},
		{"png 4x2^31-1", pngHeader(4, 1<<31-1)},
	}
	const limit = 50_000_000
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := imaging.Probe(bytes.NewReader(tt.data), limit)
			var re *imaging.RejectError
			if !errors.Is(err, imaging.ErrTooLarge) || !errors.As(err, &re) || !strings.Contains(re.Reason, "megapixels") {
				t.Fatalf("Probe = %+v, %v; want ErrTooLarge with a reason", h, err)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err = imaging.Decode(context.Background(), bytes.NewReader(tt.data), limit)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, imaging.ErrTooLarge) {
				t.Fatalf("Decode error %v; want ErrTooLarge", err)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2<<20 {
				t.Errorf("Decode allocated %d bytes refusing the file", alloc)
			}
		})
	}
}

func TestProbe(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file     string
		format   imaging.Format
		w, h     int
		minBytes int64 // DecodeBytes must cover at least the decoded pixels
	}{
		{"12 MP photo", imaging.JPEG, 4032, 3024, 4032 * 3024 * 2},
		{"formats/jpeg_progressive_icc_500KB.jpg", imaging.JPEG, 425, 250, 425 * 250 * 5},
		{"formats/png_rgba16_basn6a16.png", imaging.PNG, 32, 32, 32 * 32 * 8},
		{"formats/gif_animated_rotating_squares.gif", imaging.GIF, 80, 80, 80 * 80 * 4},
		{"formats/webp_lossless_synthetic_160x100.webp", imaging.WebP, 160, 100, 160 * 100 * 4},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			var data []byte
			if tt.file == "12 MP photo" {
				data = testimages.Photo12MP(t)
			} else {
				data = mustRead(t, tt.file)
			}
			h, err := imaging.Probe(bytes.NewReader(data), imaging.DefaultMaxPixels)
			if err != nil {
				t.Fatal(err)
			}
			if h.Format != tt.format || h.Width != tt.w || h.Height != tt.h || h.Animated {
				t.Errorf("Probe = %+v", h)
			}
			if got := h.DecodeBytes(); got < tt.minBytes || got > 24*int64(tt.w*tt.h)+4<<20 {
				t.Errorf("DecodeBytes = %d, want between %d and 24 bytes per pixel plus 4 MiB", got, tt.minBytes)
			}
		})
	}
}

// animatedWebP is a minimal RIFF with a VP8X header whose animation flag
// is set, followed by an ANIM chunk: what x/image/webp cannot decode.
func animatedWebP() []byte {
	vp8x := []byte{0x02, 0, 0, 0, 9, 0, 0, 9, 0, 0} // animated, 10x10
	body := []byte("WEBPVP8X")
	body = binary.LittleEndian.AppendUint32(body, uint32(len(vp8x)))
	body = append(body, vp8x...)
	body = append(body, "ANIM"...)
	body = binary.LittleEndian.AppendUint32(body, 6)
	body = append(body, 0, 0, 0, 0, 0, 0)
	out := binary.LittleEndian.AppendUint32([]byte("RIFF"), uint32(len(body)))
	return append(out, body...)
}

func TestRejectReasons(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		data   func(t *testing.T) []byte
		want   error
		reason string
	}{
		{"animated webp", func(*testing.T) []byte { return animatedWebP() }, imaging.ErrUnsupported, "animated WebP is not supported"},
		{"arithmetic jpeg", func(t *testing.T) []byte { return mustRead(t, "formats/jpeg_arithmetic_testimgari.jpg") },
			imaging.ErrUnsupported, "this kind of JPEG (for example arithmetic-coded or lossless) is not supported"},
		{"empty", func(*testing.T) []byte { return nil }, imaging.ErrUnsupported, "the file is empty"},
		{"truncated", func(t *testing.T) []byte { return mustRead(t, "broken/jpeg_truncated_10000B_synthetic.jpg") },
			imaging.ErrCorrupt, "the file is damaged or truncated"},
		{"zero width", func(*testing.T) []byte { return pngHeader(0, 10) }, imaging.ErrCorrupt, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := imaging.Decode(context.Background(), bytes.NewReader(tt.data(t)), imaging.DefaultMaxPixels)
			var re *imaging.RejectError
			if !errors.As(err, &re) || !errors.Is(err, tt.want) {
				t.Fatalf("Decode error %v; want a RejectError wrapping %v", err, tt.want)
			}
			if tt.reason != "" && re.Reason != tt.reason {
				t.Errorf("Reason = %q, want %q", re.Reason, tt.reason)
			}
		})
	}
	t.Run("animated webp probe", func(t *testing.T) {
		t.Parallel()
		h, err := imaging.Probe(bytes.NewReader(animatedWebP()), imaging.DefaultMaxPixels)
		if err != nil || !h.Animated || h.Width != 10 {
			t.Fatalf("Probe = %+v, %v; want an animated 10x10 WebP", h, err)
		}
	})
}

type failingReader struct{ err error }

func (r failingReader) Read([]byte) (int, error) { return 0, r.err }

func TestDecodeErrorsThatAreNotRejections(t *testing.T) {
	t.Parallel()
	errDisk := errors.New("disk on fire")
	data := mustRead(t, "formats/jpeg_baseline_testorig.jpg")

	_, err := imaging.Decode(context.Background(), failingReader{errDisk}, 0)
	var re *imaging.RejectError
	if !errors.Is(err, errDisk) || errors.As(err, &re) {
		t.Errorf("a failing reader gave %v; want its error, not a rejection", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := imaging.Decode(ctx, bytes.NewReader(data), 0); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled context gave %v", err)
	}
}
