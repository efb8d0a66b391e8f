package app

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

const (
	minHandle, maxHandle     = 3, 30
	minPassword, maxPassword = 8, 256 // bytes; the cap keeps hashing cost fixed
	maxDisplayName           = 64     // characters
	maxBio                   = 1000   // characters
)

// reservedHandles would collide with routes or mislead readers.
var reservedHandles = map[string]bool{"me": true, "admin": true, "root": true, "ops": true, "onebox": true, "system": true}

// checkHandle returns "" or why the handle is not acceptable. Handles are
// ASCII letters, digits and underscores, starting with a letter; they are
// unique case-insensitively (the store compares a lower-cased key).
func checkHandle(h string) string {
	if len(h) < minHandle || len(h) > maxHandle {
		return "must be 3 to 30 characters"
	}
	for i, r := range h {
		letter := (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !(letter || r == '_' || (r >= '0' && r <= '9')) || (i == 0 && !letter) {
			return "must start with a letter and hold only letters, digits and underscores"
		}
	}
	if reservedHandles[strings.ToLower(h)] {
		return "is reserved"
	}
	return ""
}

func checkPassword(p string) string {
	if len(p) < minPassword {
		return "must be at least 8 characters"
	}
	if len(p) > maxPassword {
		return "must be at most 256 bytes"
	}
	return ""
}

// checkText validates free text: at most max characters, no control
// characters other than newlines and tabs (when multiline).
func checkText(s string, max int, multiline bool) string {
	if utf8.RuneCountInString(s) > max {
		return "must be at most " + strconv.Itoa(max) + " characters"
	}
	for _, r := range s {
		if unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\t')) {
			return "must not contain control characters"
		}
	}
	return ""
}
