package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
)

// MinDeviceKey is the shortest device-token key accepted, in bytes: as
// long as the HMAC-SHA256 output, so the key is not the weak link.
const MinDeviceKey = 32

// ErrShortKey is returned by NewDevices for a key under MinDeviceKey bytes.
var ErrShortKey = errors.New("auth: device key shorter than 32 bytes")

// Devices issues and checks device tokens, OWASP's "device cookies": a
// client that logged in to an account once gets a token naming that
// account (its subject: a user id), and later logins presenting it are
// rate-limited per device instead of per account, so someone guessing
// the password cannot lock the owner out of a device they have used
// before.
//
// A token is "v1." + base64url(expiry ‖ nonce) + "." + base64url(HMAC):
// the subject is not in it (the login finds it) but in the MAC, so a
// token works for its own subject only. Nothing is stored: every
// instance with the same key accepts every instance's tokens.
type Devices struct {
	key []byte
	ttl time.Duration
}

const (
	devicePrefix  = "v1."
	devicePayload = 8 + 16 // expiry (Unix seconds), nonce
	deviceLen     = len(devicePrefix) + (devicePayload*8+5)/6 + 1 + (sha256.Size*8+5)/6
)

// NewDevices returns a Devices that signs with key and issues tokens
// valid for ttl. The key must be the same on every instance and at least
// MinDeviceKey bytes (ErrShortKey).
func NewDevices(key []byte, ttl time.Duration) (*Devices, error) {
	if len(key) < MinDeviceKey {
		return nil, fmt.Errorf("%w: got %d", ErrShortKey, len(key))
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("auth: device token lifetime %v is not positive", ttl)
	}
	return &Devices{key: key, ttl: ttl}, nil
}

// Issue returns a fresh token for subject and when it expires.
func (d *Devices) Issue(subject string, now time.Time) (token string, expires time.Time) {
	expires = now.Add(d.ttl).Truncate(time.Second)
	var p [devicePayload]byte
	binary.BigEndian.PutUint64(p[:8], uint64(expires.Unix()))
	_, _ = rand.Read(p[8:]) // crypto/rand.Read never fails (Go 1.24+)
	enc := base64.RawURLEncoding
	return devicePrefix + enc.EncodeToString(p[:]) + "." + enc.EncodeToString(d.mac(subject, p[:])), expires
}

// Check returns the device's id (its nonce, URL-safe) if token was issued
// with this key for subject and has not expired at now; ok is false for
// anything else, malformed input included.
func (d *Devices) Check(token, subject string, now time.Time) (device string, ok bool) {
	if len(token) != deviceLen || token[:len(devicePrefix)] != devicePrefix {
		return "", false
	}
	payload, sig, found := strings.Cut(token[len(devicePrefix):], ".")
	if !found {
		return "", false
	}
	enc := base64.RawURLEncoding
	p, err := enc.DecodeString(payload)
	if err != nil || len(p) != devicePayload {
		return "", false
	}
	mac, err := enc.DecodeString(sig)
	if err != nil || !hmac.Equal(mac, d.mac(subject, p)) {
		return "", false
	}
	exp := int64(binary.BigEndian.Uint64(p[:8]))
	if exp < 0 || now.Unix() >= exp {
		return "", false
	}
	return enc.EncodeToString(p[8:]), true
}

// mac signs the payload for subject. The label keeps the key from ever
// signing anything that means something else; the subject's length is
// in it, so no subject/payload split can be shifted.
func (d *Devices) mac(subject string, payload []byte) []byte {
	m := hmac.New(sha256.New, d.key)
	m.Write([]byte("onebox device token v1\x00"))
	m.Write(binary.BigEndian.AppendUint32(nil, uint32(len(subject))))
	m.Write([]byte(subject))
	m.Write(payload)
	return m.Sum(nil)
}
