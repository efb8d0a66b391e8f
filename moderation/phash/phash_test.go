package phash_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"strings"
	"testing"

	"onebox/imaging"
	"onebox/internal/testimages"
	"onebox/moderation/moderationtest"
	"onebox/moderation/phash"
)

func mustDecode(t testing.TB, rel string) *imaging.Image {
	t.Helper()
	img, err := imaging.Decode(context.Background(), bytes.NewReader(testimages.Read(t, rel)), 0)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// reencode returns the named variant of img, decoded: resized and
// re-encoded at the given JPEG quality, as a re-upload would be.
func reencode(t *testing.T, img *imaging.Image, width, quality int) image.Image {
	t.Helper()
	outs, err := imaging.Variants(context.Background(), img, imaging.Options{Widths: []int{width}, JPEGQuality: quality})
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := image.Decode(bytes.NewReader(outs[0].Data))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// distinct are pictures of different things.
var distinct = []string{
	"formats/jpeg_baseline_synthetic_1024x768.jpg",
	"orientation/Landscape_1.jpg",
	"formats/jpeg_gray_concert.jpg",
	"formats/jpeg_progressive_app13_multiple.jpg",
	"formats/gif_static_synthetic_400x267.gif",
	"formats/jpeg_baseline_testorig.jpg",
	"formats/jpeg_gray_hopper.jpg",
	"formats/jpeg_cmyk_adobe_no_profile_synthetic.jpg",
	"formats/webp_lossless_synthetic_160x100.webp",
	"broken/jpeg_junk_before_marker.jpg",
}

func TestHashSurvivesResizeAndReencode(t *testing.T) {
	t.Parallel()
	for _, file := range distinct {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			img := mustDecode(t, file)
			orig := phash.Hash(img.Pixels)
			for _, v := range []struct{ width, quality int }{{1024, 90}, {256, 60}, {64, 30}} {
				if img.Width < v.width {
					continue
				}
				h := phash.Hash(reencode(t, img, v.width, v.quality))
				if d := phash.Distance(orig, h); d > phash.DefaultMaxDistance {
					t.Errorf("width %d quality %d: distance %d > %d", v.width, v.quality, d, phash.DefaultMaxDistance)
				}
			}
		})
	}
	t.Run("orientation", func(t *testing.T) {
		t.Parallel()
		// Different JPEG encodes of one photo, turned upright by Decode.
		ref := phash.Hash(mustDecode(t, "orientation/Landscape_1.jpg").Pixels)
		for _, n := range []string{"3", "6", "8"} {
			h := phash.Hash(mustDecode(t, "orientation/Landscape_"+n+".jpg").Pixels)
			if d := phash.Distance(ref, h); d > phash.DefaultMaxDistance {
				t.Errorf("Landscape_%s: distance %d", n, d)
			}
		}
	})
}

func TestHashTellsPicturesApart(t *testing.T) {
	t.Parallel()
	hashes := make([]uint64, len(distinct))
	for i, file := range distinct {
		hashes[i] = phash.Hash(mustDecode(t, file).Pixels)
	}
	for i := range hashes {
		for j := i + 1; j < len(hashes); j++ {
			if d := phash.Distance(hashes[i], hashes[j]); d <= 10 {
				t.Errorf("%s and %s: distance %d <= 10", distinct[i], distinct[j], d)
			}
		}
	}
}

func TestHashEdgeCases(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		img  image.Image
	}{
		{"empty", image.NewRGBA(image.Rect(0, 0, 0, 0))},
		{"1x1", image.NewGray(image.Rect(0, 0, 1, 1))},
		{"offset bounds", image.NewNRGBA(image.Rect(-5, 7, 40, 60))},
		{"3x100", image.NewCMYK(image.Rect(0, 0, 3, 100))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_ = phash.Hash(tt.img) // must not panic
		})
	}
	t.Run("same picture in any layout", func(t *testing.T) {
		t.Parallel()
		img := mustDecode(t, "formats/jpeg_baseline_testorig.jpg")
		rgba := image.NewRGBA(img.Pixels.Bounds())
		nrgba := image.NewNRGBA(img.Pixels.Bounds())
		for y := range img.Height {
			for x := range img.Width {
				rgba.Set(x, y, img.Pixels.At(x, y))
				nrgba.Set(x, y, img.Pixels.At(x, y))
			}
		}
		ref := phash.Hash(img.Pixels)
		for _, m := range []image.Image{rgba, nrgba} {
			if d := phash.Distance(ref, phash.Hash(m)); d > 2 {
				t.Errorf("%T: distance %d from the YCbCr original", m, d)
			}
		}
	})
}

func TestParseBlocklist(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    []uint64
		wantErr string // substring; the error must wrap ErrBadBlocklist
	}{
		{"empty", "", nil, ""},
		{"comments and blanks", "# header\n\n  d1c4e0f0a0b0c0e0  # trailing\n0x00000000000000ff\n\t# indented comment\n",
			[]uint64{0xd1c4e0f0a0b0c0e0, 0xff}, ""},
		{"upper case", "FFFFFFFFFFFFFFFF\n", []uint64{^uint64(0)}, ""},
		{"short hash", "1f\n", []uint64{0x1f}, ""},
		{"not hex", "abc\nxyz\n", nil, "line 2"},
		{"too long", "1234567890abcdef0\n", nil, "line 1"},
		{"two fields", "1234 5678\n", nil, "line 1"},
		{"negative", "-1\n", nil, "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := phash.ParseBlocklist(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if !errors.Is(err, phash.ErrBadBlocklist) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseBlocklist error %v; want ErrBadBlocklist at %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("ParseBlocklist = %x, want %x", got, tt.want)
			}
		})
	}
	t.Run("line too long", func(t *testing.T) {
		t.Parallel()
		_, err := phash.ParseBlocklist(strings.NewReader(strings.Repeat("#", 1<<20)))
		if err == nil {
			t.Fatal("a 1 MB line was accepted")
		}
	})
}

func TestModerator(t *testing.T) {
	t.Parallel()
	blocked := mustDecode(t, "formats/jpeg_baseline_synthetic_1024x768.jpg")
	allowed := mustDecode(t, "broken/jpeg_junk_before_marker.jpg") // a 1024x768 photo
	list := fmt.Sprintf("# known bad\n%016x\n", phash.Hash(blocked.Pixels))
	hashes, err := phash.ParseBlocklist(strings.NewReader(list))
	if err != nil {
		t.Fatal(err)
	}
	m := phash.New(hashes, 0)
	moderationtest.Run(t, m, blocked.Pixels, allowed.Pixels)

	t.Run("re-encoded copy is refused", func(t *testing.T) {
		t.Parallel()
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, reencode(t, blocked, 512, 50), &jpeg.Options{Quality: 40}); err != nil {
			t.Fatal(err)
		}
		copyImg, err := imaging.Decode(context.Background(), &buf, 0)
		if err != nil {
			t.Fatal(err)
		}
		v, err := m.Moderate(context.Background(), copyImg.Pixels)
		if err != nil || v.Allowed || v.Reason != "matches a blocked image" {
			t.Fatalf("Moderate = %+v, %v", v, err)
		}
	})
	t.Run("empty list allows", func(t *testing.T) {
		t.Parallel()
		v, err := phash.New(nil, 0).Moderate(context.Background(), blocked.Pixels)
		if err != nil || !v.Allowed {
			t.Fatalf("Moderate = %+v, %v", v, err)
		}
	})
}
