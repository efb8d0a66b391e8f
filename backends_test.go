package main

import (
	"io"
	"strings"
	"testing"
)

// TestBackendTableIsWhatConfigAccepts: every scheme the table opens
// passes configuration, and one it lacks is refused with the table's
// list, so the two cannot drift apart.
func TestBackendTableIsWhatConfigAccepts(t *testing.T) {
	t.Parallel()
	for env, schemes := range backendTable().schemes() {
		for _, s := range append(schemes, "gopher") {
			v := s + "://host/x"
			switch s {
			case "sqlite", "file":
				v = s + ":x"
			case "", "none":
				v = s
			}
			err := run(t.Context(), []string{"config"}, func(k string) (string, bool) {
				if k == env {
					return v, true
				}
				return "", false
			}, io.Discard, io.Discard)
			if s == "gopher" {
				if err == nil || !strings.Contains(err.Error(), "want one of "+strings.Join(schemes, ", ")) {
					t.Errorf("%s=%s: %v, want unknown scheme, want one of %v", env, v, err, schemes)
				}
			} else if err != nil {
				t.Errorf("%s=%s: %v", env, v, err)
			}
		}
	}
}
