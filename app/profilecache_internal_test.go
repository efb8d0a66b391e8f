package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestCachedProfileSplice: the body written from the cached form is
// byte for byte what encoding/json writes for the profile with its URLs,
// whatever the profile's text holds (even the bytes of an empty url
// member) and whatever the URLs need escaped (a presigned URL's '&').
// White-box: the splice must agree with a fresh encode for inputs the
// API would have to be coaxed into storing.
func TestCachedProfileSplice(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	avatar := "0197a1b2-0000-7000-8000-000000000001"
	variants := []variantJSON{{Name: "thumb", Width: 256, Height: 256}, {Name: "w640", Width: 640, Height: 480}, {Name: "w1280", Width: 1280, Height: 960}}
	keys := []string{"photos/p1/thumb.jpg", "photos/p1/w640.jpg", "photos/p1/w1280.jpg"}
	base := profileJSON{ID: "0197a1b2-0000-7000-8000-000000000002", Handle: "ann", DisplayName: "Ann", Bio: "hi",
		CreatedAt: at, UpdatedAt: at, Version: 7}
	with := func(p profileJSON, n int) profileJSON {
		p.AvatarID = &avatar
		p.Avatar = append([]variantJSON(nil), variants[:n]...)
		return p
	}
	tricky := base
	tricky.Bio = `"url":"" and {"url":""} <&> é ☃ ` + "\u2028\x00\t\xff"
	tricky.DisplayName = `\"url\":\"\"`
	urls := map[string]func(string) string{
		"local": func(k string) string { return "/media/" + k },
		"cdn":   func(k string) string { return "https://cdn.example.com/m/" + k },
		"presigned": func(k string) string {
			return "https://s3.example.com/b/" + k + "?X-Amz-Expires=900&X-Amz-Signature=abc"
		},
		"odd":     func(k string) string { return `https://x.example/` + k + `?q="<a>"\` + "\x7f\x01" },
		"unicode": func(k string) string { return "https://é.example/" + k + "\u2028" },
	}
	tests := []struct {
		name string
		p    profileJSON
		keys []string
	}{
		{"no avatar", base, nil},
		{"one variant", with(base, 1), keys[:1]},
		{"three variants", with(base, 3), keys},
		{"tricky text, no avatar", tricky, nil},
		{"tricky text, three variants", with(tricky, 3), keys},
	}
	for _, tt := range tests {
		for uname, url := range urls {
			t.Run(tt.name+"/"+uname, func(t *testing.T) {
				b, err := encodeCachedProfile(`"7"`, tt.p, tt.keys)
				if err != nil {
					t.Fatal(err)
				}
				cp, err := decodeCachedProfile(b)
				if err != nil {
					t.Fatalf("decode %q: %v", b, err)
				}
				got, err := cp.writeBody(t.Context(), func(_ context.Context, k string) (string, error) { return url(k), nil })
				if err != nil {
					t.Fatal(err)
				}
				fresh := tt.p
				fresh.Avatar = append([]variantJSON(nil), tt.p.Avatar...)
				for i, k := range tt.keys {
					fresh.Avatar[i].URL = url(k)
				}
				if want := mustJSON(fresh); !bytes.Equal(got, want) || string(cp.tag) != `"7"` {
					t.Errorf("spliced tag %s body\n%s\nwant\n%s", cp.tag, got, want)
				}
			})
		}
	}
}

// TestCachedProfileFormat: an entry of any other shape, the first
// format's above all, is refused as errProfileFormat, not misread; a
// URL that fails fails the write.
func TestCachedProfileFormat(t *testing.T) {
	t.Parallel()
	for _, b := range []string{
		`"7"` + "\n" + `{"id":"x"}`, // the first format: ETag, newline, body
		"",
		"p2\n",
		"p2\n\"7\"",
		"p2\n\"7\"\n",
		"p2\n\"7\"\n12 photos/p1/w640.jpg\n",
		"p3\n\"7\"\n\n{}",
	} {
		if _, err := decodeCachedProfile([]byte(b)); !errors.Is(err, errProfileFormat) {
			t.Errorf("decode %q: %v, want errProfileFormat", b, err)
		}
	}
	boom := errors.New("no signer")
	cp, err := decodeCachedProfile([]byte("p2\n\"7\"\n8 photos/p1/w640.jpg\n\n{\"url\":\"\"}"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cp.writeBody(t.Context(), func(context.Context, string) (string, error) { return "", boom }); !errors.Is(err, boom) {
		t.Errorf("write with a failing URL: %v", err)
	}
	if _, err := encodeCachedProfile(`"7"`, profileJSON{}, []string{"photos/p1/w640.jpg"}); err == nil {
		t.Error("encode with more keys than variants succeeded")
	}
}

// BenchmarkCachedProfileWrite: the cost of a cached read's body, with no
// avatar (the bench's profiles) and with three variants, against copying
// the body as the first format did.
func BenchmarkCachedProfileWrite(b *testing.B) {
	at := time.Now().UTC()
	avatar := "0197a1b2-0000-7000-8000-000000000001"
	for _, n := range []int{0, 3} {
		p := profileJSON{ID: "0197a1b2-0000-7000-8000-000000000002", Handle: "ann", DisplayName: "Ann", Bio: strings.Repeat("b", 100),
			CreatedAt: at, UpdatedAt: at, Version: 7}
		var keys []string
		if n > 0 {
			p.AvatarID = &avatar
			for i := range n {
				p.Avatar = append(p.Avatar, variantJSON{Name: fmt.Sprint("w", i), Width: 640, Height: 480})
				keys = append(keys, fmt.Sprintf("photos/%s/w%d.jpg", avatar, i))
			}
		}
		entry, err := encodeCachedProfile(`"7"`, p, keys)
		if err != nil {
			b.Fatal(err)
		}
		url := func(_ context.Context, k string) (string, error) { return "/media/" + k, nil }
		b.Run(fmt.Sprint("splice/variants=", n), func(b *testing.B) {
			for b.Loop() {
				cp, err := decodeCachedProfile(entry)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := cp.writeBody(b.Context(), url); err != nil {
					b.Fatal(err)
				}
			}
		})
		for i, k := range keys {
			p.Avatar[i].URL, _ = url(nil, k)
		}
		old := append([]byte(`"7"`+"\n"), mustJSON(p)...)
		b.Run(fmt.Sprint("firstformat/variants=", n), func(b *testing.B) {
			for b.Loop() {
				_, body, _ := bytes.Cut(old, []byte("\n"))
				_ = body
			}
		})
	}
}
