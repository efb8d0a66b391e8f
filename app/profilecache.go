package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
)

// The public profile's cached form holds the avatar variants' media keys,
// not their URLs: the URLs are spliced into the JSON when an answer is
// written, so a change of media origin (ONEBOX_MEDIA_PUBLIC_URL, a CDN, a
// bucket) shows on the next read without a cache flush, and a presigned
// URL is never older than the answer that carries it. Splicing copies
// bytes; nothing is decoded or encoded again on a cached read.
//
// The form (inside cache.Aside's own framing):
//
//	p2\n                the format: an entry without it is a miss
//	"7"\n               the ETag
//	412 photos/…/w640.jpg\n   one line per URL: where it goes in the body, and its key
//	\n
//	{…"url":"",…}       the body, every variant's url empty
//
// The first form (before media keys) began with the ETag's quote.
const profileFormat = "p2\n"

// urlMember is how an empty variant URL encodes. Inside a JSON string
// every quote is escaped, so these bytes occur only as a member named
// url with an empty value, and the profile's only such members are its
// variants'.
var urlMember = []byte(`"url":""`)

// encodeCachedProfile returns the cached form of p, whose variants' URLs
// are empty and whose keys[i] is the media key of p.Avatar[i].
func encodeCachedProfile(tag string, p profileJSON, keys []string) ([]byte, error) {
	if len(keys) != len(p.Avatar) {
		return nil, fmt.Errorf("app: %d media keys for %d variants", len(keys), len(p.Avatar))
	}
	body := mustJSON(p)
	b := make([]byte, 0, len(profileFormat)+len(tag)+2+len(body)+len(keys)*64)
	b = append(b, profileFormat...)
	b = append(b, tag...)
	b = append(b, '\n')
	from := 0
	for _, key := range keys {
		i := bytes.Index(body[from:], urlMember)
		if i < 0 {
			return nil, fmt.Errorf("app: profile JSON has fewer empty urls than its %d media keys", len(keys))
		}
		from += i + len(urlMember) - 1 // between the url's quotes
		b = strconv.AppendInt(b, int64(from), 10)
		b = append(b, ' ')
		b = append(b, key...)
		b = append(b, '\n')
	}
	b = append(b, '\n')
	return append(b, body...), nil
}

// cachedProfile is a decoded cached form: spans holds the URL lines,
// unparsed until the answer is written.
type cachedProfile struct {
	tag, spans, body []byte
}

// errProfileFormat is a cached entry this version cannot read.
var errProfileFormat = errors.New("app: cached profile of another format")

// decodeCachedProfile splits the cached form b without copying it.
func decodeCachedProfile(b []byte) (cachedProfile, error) {
	rest, ok := bytes.CutPrefix(b, []byte(profileFormat))
	if !ok {
		return cachedProfile{}, errProfileFormat
	}
	tag, rest, ok := bytes.Cut(rest, []byte("\n"))
	if !ok {
		return cachedProfile{}, errProfileFormat
	}
	// The spans end at the first empty line: a key holds no newline.
	end := 0
	for end < len(rest) && rest[end] != '\n' {
		i := bytes.IndexByte(rest[end:], '\n')
		if i < 0 {
			return cachedProfile{}, errProfileFormat
		}
		end += i + 1
	}
	if end == len(rest) {
		return cachedProfile{}, errProfileFormat
	}
	return cachedProfile{tag: tag, spans: rest[:end], body: rest[end+1:]}, nil
}

// writeBody returns the body with each span's URL, from url, spliced in.
func (p cachedProfile) writeBody(ctx context.Context, url func(context.Context, string) (string, error)) ([]byte, error) {
	if len(p.spans) == 0 {
		return p.body, nil
	}
	out := make([]byte, 0, len(p.body)+bytes.Count(p.spans, []byte("\n"))*64)
	prev := 0
	for line := range bytes.Lines(p.spans) {
		at, key, ok := bytes.Cut(line[:len(line)-1], []byte(" "))
		off, err := strconv.Atoi(string(at))
		if !ok || err != nil || off < prev || off > len(p.body) {
			return nil, fmt.Errorf("%w: span %q", errProfileFormat, line)
		}
		u, err := url(ctx, string(key))
		if err != nil {
			return nil, fmt.Errorf("url of %s: %w", key, err)
		}
		out = append(out, p.body[prev:off]...)
		out = appendJSONStringBody(out, u)
		prev = off
	}
	return append(out, p.body[prev:]...), nil
}

// appendJSONStringBody appends s as encoding/json writes it between a
// string's quotes. A public media URL needs no escaping and is copied; a
// presigned one has '&', which encoding/json escapes for HTML, so it goes
// through json.Marshal and is escaped exactly as a fresh encode would be.
func appendJSONStringBody(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q := mustJSON(s)
			return append(dst, q[1:len(q)-1]...)
		}
	}
	return append(dst, s...)
}

// profileKey is a public profile's cache key. Its "p2" names the cached
// format, so during a rolling upgrade on a shared cache an older release,
// which reads "u:<id>" in the format before it, never misreads an entry
// of this one (each release misses the other's invalidations until the
// TTL instead). The "u:" prefix keeps CacheName's "profiles".
func profileKey(id string) string { return "u:p2:" + id }
