package media_test

import (
	"strings"
	"testing"

	"onebox/media"
)

func TestValidKey(t *testing.T) {
	t.Parallel()
	seg := func(n int) string { return strings.Repeat("a", n) }
	segments := func(n int) string { return strings.Repeat("a/", n-1) + "a" }
	// A key of exactly MaxKeyLen bytes in MaxKeySegments segments.
	longest := strings.Repeat(seg(31)+"/", media.MaxKeySegments-1) + seg(media.MaxKeyLen-32*(media.MaxKeySegments-1))
	tests := []struct {
		key  string
		want bool
	}{
		{"photos/0190f3c2-7a6b-7c3d-9e1f-0a1b2c3d4e5f/w640.jpg", true},
		{"private/originals/0190f3c2-7a6b-7c3d-9e1f-0a1b2c3d4e5f", true},
		{"k", true},
		{"0", true},
		{"a.b-c_d", true},
		{"a_", true},
		{"a-", true},
		{seg(media.MaxKeySegmentLen), true},
		{seg(media.MaxKeySegmentLen) + "/" + seg(media.MaxKeySegmentLen-1), true},
		{segments(media.MaxKeySegments), true},
		{longest, true},

		{"", false},
		{seg(media.MaxKeySegmentLen + 1), false},
		{"photos/" + seg(300), false}, // the 500 of issue 11
		{segments(media.MaxKeySegments + 1), false},
		{longest + "a", false},
		{"PRIVATE/originals/x", false},
		{"Private/originals/x", false},
		{"private/../x", false},
		{"Private/..", false},
		{"photos/P1/w640.jpg", false},
		{".", false},
		{"..", false},
		{"../x", false},
		{"a/..", false},
		{"a..b", false},
		{"a/./b", false},
		{".hidden", false},
		{"a/.meta", false},
		{"_a", false},
		{"-a", false},
		{"a.", false},
		{"private./x", false},
		{"/abs", false},
		{"a/", false},
		{"a//b", false},
		{"a\\b", false},
		{"a\x00b", false},
		{"a b", false},
		{"a?b", false},
		{"a%2fb", false},
		{"a:b", false},
		{"privat~1/x", false},
		{"é", false},
		{"a\u0130", false},
	}
	for _, tt := range tests {
		if got := media.ValidKey(tt.key); got != tt.want {
			t.Errorf("ValidKey(%.40q) (%d bytes) = %v, want %v", tt.key, len(tt.key), got, tt.want)
		}
	}
}

func TestPublic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key  string
		want bool
	}{
		{"photos/p1/w640.jpg", true},
		{"privates/x", true},
		{"privatex", true},
		{"x/private/y", true},
		{"private", false},
		{"private/originals/p1", false},
		{"PRIVATE/originals/p1", false},
		{"Private/originals/p1", false},
		{"photos/../private/originals/p1", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := media.Public(tt.key); got != tt.want {
			t.Errorf("Public(%q) = %v, want %v", tt.key, got, tt.want)
		}
	}
}
