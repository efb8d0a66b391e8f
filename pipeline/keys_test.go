package pipeline_test

import (
	"image"
	"image/color"
	"testing"

	"github.com/google/uuid"

	"onebox/imaging"
	"onebox/media"
	"onebox/photos"
)

// TestKeysAreValid: every key the pipeline writes follows the media key
// grammar, or storage would refuse it. The names and types are those
// imaging.Variants gives, with the pipeline's options (default widths),
// for an opaque image wider than every width and for one with
// transparency; the ids are those the upload makes.
func TestKeysAreValid(t *testing.T) {
	t.Parallel()
	opaque := image.NewRGBA(image.Rect(0, 0, 2100, 16))
	for i := range opaque.Pix {
		opaque.Pix[i] = 0xff
	}
	clear := image.NewRGBA(image.Rect(0, 0, 16, 16))
	clear.Set(0, 0, color.RGBA{R: 0xff, A: 0xff})
	var keys []string
	types := make(map[string]bool)
	for _, img := range []*imaging.Image{
		{Pixels: opaque, Width: 2100, Height: 16},
		{Pixels: clear, Width: 16, Height: 16, HasAlpha: true},
	} {
		outs, err := imaging.Variants(t.Context(), img, imaging.Options{})
		if err != nil {
			t.Fatal(err)
		}
		id, err := uuid.NewV7()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, photos.OriginalKey(id.String()))
		for _, o := range outs {
			keys = append(keys, photos.VariantKey(id.String(), o.Name, o.ContentType))
			types[o.ContentType] = true
		}
	}
	if !types["image/jpeg"] || !types["image/png"] || len(keys) < 2+6 {
		t.Fatalf("the images gave %d keys of types %v; want every default width and both types", len(keys), types)
	}
	for _, key := range keys {
		if !media.ValidKey(key) {
			t.Errorf("pipeline key %q is not a valid media key", key)
		}
	}
	if media.Public(keys[0]) {
		t.Errorf("original %q is public", keys[0])
	}
	if !media.Public(keys[1]) {
		t.Errorf("variant %q is not public", keys[1])
	}
}
