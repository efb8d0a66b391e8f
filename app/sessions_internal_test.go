package app

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"onebox/store"
)

// TestSessionValue: the cached session reads back whole, and without a
// token it is the form the releases before tokens parse (user id, space,
// expiry), so they keep accepting it from a shared cache.
func TestSessionValue(t *testing.T) {
	exp := time.Unix(1_800_000_000, 123)
	for _, tc := range []struct {
		name string
		tok  store.Token
	}{{"no token", ""}, {"token", "0/16B3748"}} {
		t.Run(tc.name, func(t *testing.T) {
			v := string(sessionValue("u1", exp, tc.tok))
			user, rest, _ := strings.Cut(v, " ")
			ns, tok, _ := strings.Cut(rest, " ")
			if user != "u1" || ns != strconv.FormatInt(exp.UnixNano(), 10) || store.Token(tok) != tc.tok {
				t.Fatalf("%q reads back as %q %q %q", v, user, ns, tok)
			}
			if tc.tok != "" {
				return
			}
			// The parser before tokens.
			_, old, _ := strings.Cut(v, " ")
			if _, err := strconv.ParseInt(old, 10, 64); err != nil {
				t.Fatalf("a release before tokens cannot read %q: %v", v, err)
			}
		})
	}
}
