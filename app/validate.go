package app

import (
	"fmt"
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
// unique case-insensitively (the store compares a lower-cased key). Being
// ASCII, they hold no format character (category Cf) and no look-alike.
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
// characters other than newlines and tabs (when multiline), and no line
// or paragraph separator (U+2028, U+2029) in a single line.
func checkText(s string, max int, multiline bool) string {
	if utf8.RuneCountInString(s) > max {
		return "must be at most " + strconv.Itoa(max) + " characters"
	}
	for _, r := range s {
		if unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\t')) {
			return "must not contain control characters"
		}
		if !multiline && (r == '\u2028' || r == '\u2029') {
			return "must be a single line"
		}
	}
	return ""
}

// checkDisplayName validates a display name: one line of at most
// maxDisplayName characters, without the format characters nameFormat
// refuses.
func checkDisplayName(s string) string {
	if msg := checkText(s, maxDisplayName, false); msg != "" {
		return msg
	}
	return nameFormat(s)
}

// checkBio validates a bio: up to maxBio characters over several lines,
// without the format characters bioFormat refuses.
func checkBio(s string) string {
	if msg := checkText(s, maxBio, true); msg != "" {
		return msg
	}
	return bioFormat(s)
}

// Format characters (Unicode category Cf) are invisible. Some reorder the
// text around them: the bidi overrides, embeddings and isolates (U+202A–
// U+202E, U+2066–U+2069) make "moc.elpmaxe" read as a domain, spilling
// into whatever a client shows next. Some only hide: U+200B, U+2060,
// U+FEFF and the tag characters (U+E0000–U+E007F, which can spell a whole
// hidden message). Two, the joiners U+200C (ZWNJ) and U+200D (ZWJ), are
// part of how people write: the family and rainbow-flag emoji are
// several emoji joined by ZWJ (U+1F468 U+200D U+1F469 U+200D U+1F467);
// Sinhala ("Sri", U+0DC1 U+0DCA U+200D U+0DBB U+0DD3), Devanagari half
// forms and Persian words ("mi-shavad", U+0645 U+06CC U+200C ...) need
// ZWJ or ZWNJ. The tag characters also spell the flags of England,
// Scotland and Wales.
//
// A display name is one short line that readers use to recognise someone,
// so it is strict: no format character except a joiner that joins, that
// is, stands between two visible characters of which neither is ASCII nor
// Latin, Greek or Cyrillic (the alphabets in which a joiner changes
// nothing and so only hides: "al\u200dice" shows as "alice"), and the
// three flag sequences. A bio is running text, where the directional
// marks (U+200E, U+200F, U+061C) place punctuation in mixed-direction
// sentences, U+200B marks word breaks in Thai, Lao and Khmer, and a soft
// hyphen or word joiner guides line breaking: those and the joiners are
// allowed anywhere; what reorders text beyond its neighbours, hides a
// message or is deprecated is refused.

// flagTags are the tag sequences after U+1F3F4 (🏴) that form the
// recommended subdivision flags (Unicode's RGI emoji set, UTS #51): GB-ENG,
// GB-SCT and GB-WLS, each ended by U+E007F CANCEL TAG.
var flagTags = []string{
	"\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F",
	"\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F",
	"\U000E0067\U000E0062\U000E0077\U000E006C\U000E0073\U000E007F",
}

// bioFormats are the format characters a bio may hold.
var bioFormats = map[rune]bool{
	'\u00AD': true, // soft hyphen
	'\u061C': true, // Arabic letter mark
	'\u200B': true, // zero width space: word breaks in Thai, Lao, Khmer
	'\u200C': true, // zero width non-joiner
	'\u200D': true, // zero width joiner
	'\u200E': true, // left-to-right mark
	'\u200F': true, // right-to-left mark
	'\u2060': true, // word joiner
}

// nameFormat returns "" or why s holds a format character a display
// name may not.
func nameFormat(s string) string {
	prev := rune(-1) // none yet
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == '\U0001F3F4' {
			if n := flagTagLen(s[i+size:]); n > 0 {
				i, prev = i+size+n, r
				continue
			}
		}
		if unicode.Is(unicode.Cf, r) {
			next, _ := utf8.DecodeRuneInString(s[i+size:]) // RuneError at the end
			if !(r == '\u200C' || r == '\u200D') || !joinable(prev) || !joinable(next) {
				return formatDetail(r)
			}
		}
		i, prev = i+size, r
	}
	return ""
}

// joinable reports whether a joiner may stand next to r in a display
// name: r is visible, and neither ASCII nor of the Latin, Greek or
// Cyrillic script. Emoji, their modifiers and variation selectors, and
// the letters and marks of the scripts that use joiners all qualify.
func joinable(r rune) bool {
	return r > unicode.MaxASCII && r != utf8.RuneError &&
		!unicode.IsSpace(r) && !unicode.IsControl(r) && !unicode.Is(unicode.Cf, r) &&
		!unicode.In(r, unicode.Latin, unicode.Greek, unicode.Cyrillic)
}

// bioFormat returns "" or why s holds a format character a bio may not.
func bioFormat(s string) string {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == '\U0001F3F4' {
			size += flagTagLen(s[i+size:])
		} else if unicode.Is(unicode.Cf, r) && !bioFormats[r] {
			return formatDetail(r)
		}
		i += size
	}
	return ""
}

// flagTagLen is the length of the flag tag sequence s starts with, or 0.
func flagTagLen(s string) int {
	for _, t := range flagTags {
		if strings.HasPrefix(s, t) {
			return len(t)
		}
	}
	return 0
}

func formatDetail(r rune) string {
	return fmt.Sprintf("must not contain the invisible formatting character U+%04X here", r)
}
