package sqlutil

import (
	"encoding/json"
	"fmt"

	"onebox/store"
)

// variantJSON is the stored form of a store.Variant, one for both
// stores, so rows copy between them as they are. The column's format
// belongs here, not to the domain type's field names; a field added to
// store.Variant breaks the conversions until it is added here.
type variantJSON struct {
	Name        string `json:"name"`
	Key         string `json:"key"`
	Width       int    `json:"width"`
	Height      int    `json:"height"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type"`
}

// FormatVariants is the variants column's JSON array; "[]" for none.
func FormatVariants(vs []store.Variant) (string, error) {
	out := make([]variantJSON, len(vs))
	for i, v := range vs {
		out[i] = variantJSON(v)
	}
	b, err := json.Marshal(out)
	return string(b), err
}

// ParseVariants reads a column written by FormatVariants. No variants
// parse as nil. What type the driver hands over is the store's to check.
func ParseVariants(b []byte) ([]store.Variant, error) {
	var in []variantJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("variants column: %w", err)
	}
	var vs []store.Variant
	for _, v := range in {
		vs = append(vs, store.Variant(v))
	}
	return vs, nil
}

// PhotoKeys lists a photo's media keys: the original, then its variants.
func PhotoKeys(original string, variants []store.Variant) []string {
	keys := make([]string, 0, 1+len(variants))
	if original != "" {
		keys = append(keys, original)
	}
	for _, v := range variants {
		if v.Key != "" {
			keys = append(keys, v.Key)
		}
	}
	return keys
}

// SameRequest is nil when a request with digest may be answered with what
// an idempotency key with stored made: an empty stored digest is a key
// taken before digests were kept, and matches any; an empty digest asks
// nothing. Otherwise it is store.ErrIdempotencyMismatch, its message
// begun with dialect and the query's name.
func SameRequest(dialect, name, stored, digest string) error {
	if stored == "" || digest == "" || stored == digest {
		return nil
	}
	return fmt.Errorf("%s %s: %w", dialect, name, store.ErrIdempotencyMismatch)
}
