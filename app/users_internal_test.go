package app

import (
	"strings"
	"testing"

	"github.com/google/uuid"
)

// TestValidID: validID accepts exactly what uuid.Parse accepts in 36
// characters, in lower case.
func TestValidID(t *testing.T) {
	t.Parallel()
	reference := func(id string) bool {
		_, err := uuid.Parse(id)
		return len(id) == 36 && err == nil && strings.ToLower(id) == id
	}
	for _, id := range []string{
		"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
		"0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B",
		"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5B",
		"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5g",
		"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5",
		"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b0",
		"0190a1b2c-3d4-7e5f-8a9b-0c1d2e3f4a5b",
		"0190a1b2-c3d4-7e5f-8a9b_0c1d2e3f4a5b",
		"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a-b",
		"{0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5}",
		"urn:uuid:0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
		"0190a1b2c3d47e5f8a9b0c1d2e3f4a5b",
		"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5\x00",
		"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5é",
		"00000000-0000-0000-0000-000000000000",
		"ffffffff-ffff-ffff-ffff-ffffffffffff",
		"",
	} {
		if got, want := validID(id), reference(id); got != want {
			t.Errorf("validID(%q) = %v, want %v", id, got, want)
		}
	}
}

// TestClientKey: an IPv4 address in any spelling is its dotted form (an
// address already in it is returned as is), IPv6 its /64.
func TestClientKey(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ ip, want string }{
		{"127.0.0.1", "127.0.0.1"},
		{"::ffff:127.0.0.1", "127.0.0.1"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"not an address", "not an address"},
	} {
		if got := clientKey(tt.ip); got != tt.want {
			t.Errorf("clientKey(%q) = %q, want %q", tt.ip, got, tt.want)
		}
	}
}
