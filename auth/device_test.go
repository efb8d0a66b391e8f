package auth_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"onebox/auth"
)

var deviceKey = []byte("0123456789abcdef0123456789abcdef")

func TestDevicesRefusesShortKey(t *testing.T) {
	t.Parallel()
	if _, err := auth.NewDevices(deviceKey[:31], time.Hour); !errors.Is(err, auth.ErrShortKey) {
		t.Fatalf("31-byte key: err = %v, want ErrShortKey", err)
	}
	if _, err := auth.NewDevices(deviceKey, 0); err == nil {
		t.Fatal("zero lifetime accepted")
	}
}

func TestDeviceToken(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d, err := auth.NewDevices(deviceKey, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := auth.NewDevices([]byte(strings.Repeat("k", 32)), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tok, exp := d.Issue("alice", now)
	if !exp.Equal(now.Add(time.Hour)) {
		t.Fatalf("expires %v, want %v", exp, now.Add(time.Hour))
	}
	id, ok := d.Check(tok, "alice", now)
	if !ok || id == "" {
		t.Fatalf("fresh token refused: %q %v", id, ok)
	}
	tok2, _ := d.Issue("alice", now)
	if id2, _ := d.Check(tok2, "alice", now); id2 == id {
		t.Fatal("two tokens share a device id")
	}
	// Flip one character of the signature or the payload.
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	tests := []struct {
		name    string
		d       *auth.Devices
		token   string
		subject string
		now     time.Time
	}{
		{"other subject", d, tok, "bob", now},
		{"subject differs in case", d, tok, "Alice", now},
		{"empty subject", d, tok, "", now},
		{"expired", d, tok, "alice", now.Add(time.Hour)},
		{"other key", other, tok, "alice", now},
		{"payload tampered", d, flip(tok, 5), "alice", now},
		{"signature tampered", d, flip(tok, len(tok)-3), "alice", now},
		{"truncated", d, tok[:len(tok)-1], "alice", now},
		{"extended", d, tok + "A", "alice", now},
		{"other version", d, "v2" + tok[2:], "alice", now},
		{"empty", d, "", "alice", now},
		{"session token", d, strings.Repeat("A", 43), "alice", now},
	}
	for _, tt := range tests {
		if id, ok := tt.d.Check(tt.token, tt.subject, tt.now); ok {
			t.Errorf("%s: accepted as device %q", tt.name, id)
		}
	}
	if _, ok := d.Check(tok, "alice", now.Add(time.Hour-time.Second)); !ok {
		t.Error("refused a second before expiry")
	}
}
