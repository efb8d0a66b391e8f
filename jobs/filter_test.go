package jobs_test

import (
	"net/url"
	"strings"
	"testing"

	"onebox/jobs"
)

// TestParseRedrive: a redrive names its dead jobs or asks for all of
// them; a list may name none. Malformed filters fail either way.
func TestParseRedrive(t *testing.T) {
	t.Parallel()
	tests := []struct {
		query         string
		list, redrive bool // whether each parse accepts it
	}{
		{"", true, false},
		{"all=true", true, true},
		{"all=false", true, false},
		{"kind=photo.process", true, true},
		{"error=timeout", true, true},
		{"id=a&id=b", true, true},
		{"id=", false, false},
		{"id=a%20b&all=true", false, false},
		{"kind=" + strings.Repeat("k", 1001), false, false},
	}
	for _, tt := range tests {
		q, err := url.ParseQuery(tt.query)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jobs.ParseDeadFilter(q); (err == nil) != tt.list {
			t.Errorf("ParseDeadFilter(%q): %v, want accepted %v", tt.query, err, tt.list)
		}
		if _, err := jobs.ParseRedrive(q); (err == nil) != tt.redrive {
			t.Errorf("ParseRedrive(%q): %v, want accepted %v", tt.query, err, tt.redrive)
		}
	}
}
