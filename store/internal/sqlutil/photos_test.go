package sqlutil_test

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	"onebox/store"
	"onebox/store/internal/sqlutil"
)

func TestVariantsColumn(t *testing.T) {
	t.Parallel()
	thumb := store.Variant{Name: "thumb", Key: "k/t", Width: 2, Height: 1, Size: 3, ContentType: "image/webp"}
	tests := []struct {
		name string
		vs   []store.Variant
		// stored is the column as both stores hold it: dbcopy copies it
		// unchanged, so its field names must not drift.
		stored string
	}{
		{"none", nil, `[]`},
		{"one", []store.Variant{thumb}, `[{"name":"thumb","key":"k/t","width":2,"height":1,"size":3,"content_type":"image/webp"}]`},
	}
	for _, tt := range tests {
		got, err := sqlutil.FormatVariants(tt.vs)
		if err != nil || got != tt.stored {
			t.Errorf("%s: FormatVariants = %s, %v; want %s", tt.name, got, err, tt.stored)
		}
		back, err := sqlutil.ParseVariants([]byte(tt.stored))
		if err != nil || !reflect.DeepEqual(back, tt.vs) {
			t.Errorf("%s: ParseVariants = %#v, %v; want %#v", tt.name, back, err, tt.vs)
		}
	}
	if _, err := sqlutil.ParseVariants([]byte(`{`)); err == nil {
		t.Error("ParseVariants of broken JSON: no error")
	}
}

func TestPhotoKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		original string
		variants []store.Variant
		want     []string
	}{
		{"original then variants", "o", []store.Variant{{Key: "a"}, {Key: "b"}}, []string{"o", "a", "b"}},
		{"empty keys left out", "", []store.Variant{{Key: ""}, {Key: "b"}}, []string{"b"}},
		{"nothing", "", nil, []string{}},
	}
	for _, tt := range tests {
		if got := sqlutil.PhotoKeys(tt.original, tt.variants); !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestSameRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, stored, digest string
		want                 error
	}{
		{"same", "d1", "d1", nil},
		{"key from before digests", "", "d1", nil},
		{"request without digest", "d1", "", nil},
		{"different", "d1", "d2", store.ErrIdempotencyMismatch},
	}
	for _, tt := range tests {
		if err := sqlutil.SameRequest("test", "q", tt.stored, tt.digest); !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
}
