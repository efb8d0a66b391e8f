package imaging_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"testing"

	xdraw "golang.org/x/image/draw"

	"onebox/imaging"
	"onebox/internal/testimages"
)

func TestVariantsSizes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		w, h  int
		opts  imaging.Options
		want  []image.Point // the never-upscale rule, written out
		names []string
	}{
		{"landscape 2100x1400", 2100, 1400, imaging.Options{},
			[]image.Point{{128, 85}, {256, 171}, {512, 341}, {1024, 683}, {2048, 1365}, {256, 256}},
			[]string{"w128", "w256", "w512", "w1024", "w2048", "thumb"}},
		{"smaller than some widths", 300, 200, imaging.Options{},
			[]image.Point{{128, 85}, {256, 171}, {300, 200}, {200, 200}},
			[]string{"w128", "w256", "w512", "thumb"}},
		{"exactly a width", 256, 100, imaging.Options{},
			[]image.Point{{128, 50}, {256, 100}, {100, 100}},
			[]string{"w128", "w256", "thumb"}},
		{"1x1", 1, 1, imaging.Options{}, []image.Point{{1, 1}, {1, 1}}, []string{"w128", "thumb"}},
		{"thin sliver", 2000, 3, imaging.Options{},
			[]image.Point{{128, 1}, {256, 1}, {512, 1}, {1024, 2}, {2000, 3}, {3, 3}},
			[]string{"w128", "w256", "w512", "w1024", "w2048", "thumb"}},
		{"custom unsorted widths", 1000, 500, imaging.Options{Widths: []int{600, 100, 100}, Thumb: 50},
			[]image.Point{{100, 50}, {600, 300}, {50, 50}},
			[]string{"w100", "w600", "thumb"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			img := &imaging.Image{Pixels: gradient(tt.w, tt.h), Width: tt.w, Height: tt.h, Format: imaging.PNG}
			outs, err := imaging.Variants(context.Background(), img, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(outs) != len(tt.want) {
				t.Fatalf("%d outputs, want %d", len(outs), len(tt.want))
			}
			for i, o := range outs {
				cfg, err := jpeg.DecodeConfig(bytes.NewReader(o.Data))
				if err != nil {
					t.Fatalf("%s: %v", o.Name, err)
				}
				got := image.Pt(cfg.Width, cfg.Height)
				if o.Name != tt.names[i] || got != tt.want[i] || o.Width != got.X || o.Height != got.Y {
					t.Errorf("output %d: %s %v (says %dx%d); want %s %v", i, o.Name, got, o.Width, o.Height, tt.names[i], tt.want[i])
				}
			}
		})
	}
}

// gradient is an opaque test picture with detail in both directions.
func gradient(w, h int) *image.YCbCr {
	m := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	for y := range h {
		for x := range w {
			m.Y[m.YOffset(x, y)] = uint8((x*255/max(w, 1) + y*7) % 256)
			c := m.COffset(x, y)
			m.Cb[c], m.Cr[c] = uint8(x), uint8(y)
		}
	}
	return m
}

func TestVariantsInvalid(t *testing.T) {
	t.Parallel()
	img := &imaging.Image{Pixels: gradient(10, 10), Width: 10, Height: 10}
	tests := []struct {
		name string
		img  *imaging.Image
		opts imaging.Options
	}{
		{"nil image", nil, imaging.Options{}},
		{"zero width", img, imaging.Options{Widths: []int{0, 100}}},
		{"negative thumb", img, imaging.Options{Thumb: -1}},
		{"quality 101", img, imaging.Options{JPEGQuality: 101}},
		{"size mismatch", &imaging.Image{Pixels: gradient(10, 10), Width: 20, Height: 10}, imaging.Options{}},
		{"not a working layout", &imaging.Image{Pixels: image.NewNRGBA(image.Rect(0, 0, 10, 10)), Width: 10, Height: 10}, imaging.Options{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := imaging.Variants(context.Background(), tt.img, tt.opts); err == nil {
				t.Fatal("Variants accepted invalid input")
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := imaging.Variants(ctx, img, imaging.Options{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("Variants with a cancelled context: %v", err)
		}
	})
}

// TestVariantsQuality compares the cascade (each size from the next
// larger) with a direct high-quality downscale by x/image/draw, per
// channel, so a chroma misplacement or a filter bug shows. The reference
// goes through the same encoder, so the margin is the resizer's alone.
func TestVariantsQuality(t *testing.T) {
	t.Parallel()
	const margin = 0.7 // mean absolute difference per channel, of 255
	for _, file := range []string{
		"orientation/Landscape_6.jpg",                      // rotated 4:2:0, three cascade steps
		"formats/jpeg_baseline_synthetic_1024x768.jpg",     // 4:2:0, hard and soft edges
		"formats/jpeg_cmyk_adobe_no_profile_synthetic.jpg", // opaque RGBA
		"formats/webp_lossless_synthetic_160x100.webp",     // alpha (non-premultiplied source)
		"formats/jpeg_gray_concert.jpg",                    // gray
	} {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			img := mustDecode(t, file)
			outs, err := imaging.Variants(context.Background(), img, imaging.Options{Widths: []int{128, 256, 1024, 2048}, JPEGQuality: 100})
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range outs {
				if o.Name != "w128" && o.Name != "thumb" {
					continue
				}
				got, _, err := image.Decode(bytes.NewReader(o.Data))
				if err != nil {
					t.Fatal(err)
				}
				src := img.Pixels
				if o.Name == "thumb" { // the centre square
					b := src.Bounds()
					s := min(b.Dx(), b.Dy())
					x0, y0 := (b.Dx()-s)/2, (b.Dy()-s)/2
					src = src.(interface {
						SubImage(image.Rectangle) image.Image
					}).SubImage(image.Rect(x0, y0, x0+s, y0+s))
				}
				ref := image.NewRGBA(got.Bounds())
				xdraw.CatmullRom.Scale(ref, ref.Bounds(), src, src.Bounds(), xdraw.Src, nil)
				var encoded image.Image = ref
				if o.ContentType == "image/jpeg" {
					var buf bytes.Buffer
					if err := jpeg.Encode(&buf, ref, &jpeg.Options{Quality: 100}); err != nil {
						t.Fatal(err)
					}
					if encoded, err = jpeg.Decode(&buf); err != nil {
						t.Fatal(err)
					}
				}
				d, floor := channelDiff(got, ref), channelDiff(encoded, ref)
				if d > floor+margin {
					t.Errorf("%s differs from a direct downscale by %.2f per channel; encoding alone costs %.2f", o.Name, d, floor)
				}
			}
		})
	}
}

func channelDiff(a, b image.Image) float64 {
	var sum, n float64
	r := a.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			// Premultiplied: colour under near-zero alpha does not count.
			c1 := color.RGBAModel.Convert(a.At(x, y)).(color.RGBA)
			c2 := color.RGBAModel.Convert(b.At(x, y)).(color.RGBA)
			for _, d := range []int{int(c1.R) - int(c2.R), int(c1.G) - int(c2.G), int(c1.B) - int(c2.B), int(c1.A) - int(c2.A)} {
				sum += math.Abs(float64(d))
			}
			n += 4
		}
	}
	return sum / n
}

// TestMetadata: EXIF (with GPS) never survives, the ICC profile does,
// byte for byte, in every output.
func TestMetadata(t *testing.T) {
	t.Parallel()
	t.Run("icc kept", func(t *testing.T) {
		t.Parallel()
		src := mustRead(t, "formats/jpeg_progressive_icc_500KB.jpg")
		profile := iccOf(t, src)
		if len(profile) < 300_000 {
			t.Fatalf("test file has a %d-byte profile; want ~400 KB", len(profile))
		}
		img := mustDecode(t, "formats/jpeg_progressive_icc_500KB.jpg")
		if !bytes.Equal(img.ICC, profile) {
			t.Fatalf("Image.ICC is %d bytes, differs from the file's %d", len(img.ICC), len(profile))
		}
		outs, err := imaging.Variants(context.Background(), img, imaging.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range outs {
			if got := iccOf(t, o.Data); !bytes.Equal(got, profile) {
				t.Errorf("%s: embedded profile is %d bytes, differs from the source", o.Name, len(got))
			}
			if _, err := jpeg.Decode(bytes.NewReader(o.Data)); err != nil {
				t.Errorf("%s: output with profile does not decode: %v", o.Name, err)
			}
		}
	})
	for _, file := range []string{"synthetic gps", "formats/jpeg_gray_concert.jpg", "formats/jpeg_cmyk_small_adobe.jpg",
		"orientation/Landscape_6.jpg", "formats/png_exif_chunk_exif2c08.png", "formats/jpeg_progressive_app13_multiple.jpg"} {
		t.Run("stripped "+file, func(t *testing.T) {
			t.Parallel()
			var data []byte
			if file == "synthetic gps" {
				data = jpegWithGPS(t)
			} else {
				data = mustRead(t, file)
			}
			img, err := imaging.Decode(context.Background(), bytes.NewReader(data), 0)
			if err != nil {
				t.Fatal(err)
			}
			outs, err := imaging.Variants(context.Background(), img, imaging.Options{})
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range outs {
				for _, s := range headerSegments(t, o.Data) {
					if s.marker >= 0xe0 && s.marker <= 0xef && !(s.marker == 0xe2 && bytes.HasPrefix(s.data, []byte("ICC_PROFILE\x00"))) {
						t.Errorf("%s: APP%d segment %q... survived", o.Name, s.marker-0xe0, s.data[:min(len(s.data), 12)])
					}
				}
				if bytes.Contains(o.Data, []byte("Exif\x00")) || bytes.Contains(o.Data, []byte("N 51 30 26")) {
					t.Errorf("%s: EXIF or GPS bytes survived", o.Name)
				}
			}
		})
	}
	t.Run("cmyk profile dropped", func(t *testing.T) {
		t.Parallel()
		// A CMYK profile cannot describe the converted RGB pixels.
		data := withAPP2(mustRead(t, "formats/jpeg_cmyk_small_adobe.jpg"), fakeICC("CMYK"))
		img, err := imaging.Decode(context.Background(), bytes.NewReader(data), 0)
		if err != nil {
			t.Fatal(err)
		}
		if img.ICC == nil {
			t.Fatal("the CMYK profile was not read")
		}
		outs, err := imaging.Variants(context.Background(), img, imaging.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range outs {
			if len(iccOf(t, o.Data)) != 0 {
				t.Errorf("%s carries the CMYK profile", o.Name)
			}
		}
	})
	t.Run("png keeps profile as iCCP", func(t *testing.T) {
		t.Parallel()
		img := mustDecode(t, "formats/png_rgba8_basn6a08.png")
		img.ICC = fakeICC("RGB ")
		outs, err := imaging.Variants(context.Background(), img, imaging.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range outs {
			if _, err := png.Decode(bytes.NewReader(o.Data)); err != nil || !bytes.Contains(o.Data[:64], []byte("iCCP")) {
				t.Errorf("%s: decode %v, iCCP after IHDR: %v", o.Name, err, bytes.Contains(o.Data[:64], []byte("iCCP")))
			}
		}
	})
}

// fakeICC is a minimal structurally valid profile header for a colour
// space.
func fakeICC(space string) []byte {
	p := make([]byte, 132)
	binary.BigEndian.PutUint32(p, uint32(len(p)))
	copy(p[16:], space)
	copy(p[36:], "acsp")
	return p
}

// withAPP2 inserts icc as one APP2 ICC_PROFILE segment after SOI.
func withAPP2(j, icc []byte) []byte {
	seg := []byte{0xff, 0xe2, 0, 0}
	seg = append(seg, "ICC_PROFILE\x00\x01\x01"...)
	seg = append(seg, icc...)
	binary.BigEndian.PutUint16(seg[2:], uint16(len(seg)-2))
	return append(append(append([]byte{}, j[:2]...), seg...), j[2:]...)
}

// jpegWithGPS builds a JPEG whose EXIF has orientation 6 and a GPS IFD
// with a latitude and a recognisable text marker.
func jpegWithGPS(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, gradient(64, 32), nil); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	tiff := []byte("II*\x00")
	tiff = le.AppendUint32(tiff, 8)
	tiff = le.AppendUint16(tiff, 2) // IFD0: orientation, GPS pointer
	tiff = append(tiff, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0)
	tiff = append(tiff, 0x25, 0x88, 4, 0, 1, 0, 0, 0)
	tiff = le.AppendUint32(tiff, 8+2+2*12+4)
	tiff = le.AppendUint32(tiff, 0) // no IFD1
	// GPS IFD: GPSLatitudeRef "N", and a user comment style marker.
	tiff = le.AppendUint16(tiff, 1)
	tiff = append(tiff, 0x01, 0x00, 2, 0, 2, 0, 0, 0, 'N', 0, 0, 0)
	tiff = le.AppendUint32(tiff, 0)
	tiff = append(tiff, "N 51 30 26"...)
	app1 := append([]byte("Exif\x00\x00"), tiff...)
	seg := binary.BigEndian.AppendUint16([]byte{0xff, 0xe1}, uint16(len(app1)+2))
	seg = append(seg, app1...)
	j := buf.Bytes()
	out := append(append(append([]byte{}, j[:2]...), seg...), j[2:]...)

	img, err := imaging.Decode(context.Background(), bytes.NewReader(out), 0)
	if err != nil || img.Width != 32 || img.Height != 64 {
		t.Fatalf("synthetic EXIF JPEG: %v; want 32x64 after orientation 6", err)
	}
	return out
}

func TestTransparency(t *testing.T) {
	t.Parallel()
	for _, file := range []string{"formats/webp_lossless_synthetic_160x100.webp", "formats/webp_lossy_alpha_synthetic_hopper.webp"} {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			img := mustDecode(t, file)
			outs, err := imaging.Variants(context.Background(), img, imaging.Options{Widths: []int{64, 2048}, Thumb: 32})
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range outs {
				m, err := png.Decode(bytes.NewReader(o.Data))
				if err != nil {
					t.Fatalf("%s: %v", o.Name, err)
				}
				if m.(interface{ Opaque() bool }).Opaque() {
					t.Errorf("%s lost its transparency", o.Name)
				}
			}
		})
	}
}

// TestDeterministic: a retried job must write the same bytes.
func TestDeterministic(t *testing.T) {
	t.Parallel()
	for _, file := range []string{"orientation/Landscape_8.jpg", "formats/png_rgba16_basn6a16.png", "formats/jpeg_progressive_icc_500KB.jpg"} {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			var first []imaging.Output
			for i := range 3 {
				img := mustDecode(t, file)
				outs, err := imaging.Variants(context.Background(), img, imaging.Options{})
				if err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					first = outs
					continue
				}
				for j := range outs {
					if !bytes.Equal(outs[j].Data, first[j].Data) {
						t.Fatalf("run %d: %s differs", i, outs[j].Name)
					}
				}
			}
		})
	}
}

func BenchmarkVariants12MP(b *testing.B) {
	data := testimages.Photo12MP(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		img, err := imaging.Decode(ctx, bytes.NewReader(data), imaging.DefaultMaxPixels)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := imaging.Variants(ctx, img, imaging.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
