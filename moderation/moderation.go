// Package moderation decides whether an uploaded picture may be
// published. The Moderator interface is the concern; implementations live
// in subpackages named after what they rely on (moderation/phash: a
// perceptual-hash blocklist) and are checked by moderationtest.Run.
package moderation

import (
	"context"
	"image"
)

// Verdict is a moderator's decision. Reason says why a picture is refused,
// in words that can be shown to the uploader; it is empty when Allowed.
type Verdict struct {
	Allowed bool
	Reason  string
}

// Moderator judges pictures. Implementations are safe for concurrent use.
type Moderator interface {
	// Moderate judges img, the decoded upright picture. A refusal is a
	// Verdict with Allowed false and a nil error. An error means no
	// verdict was reached (ctx ended, a backend failed): the caller must
	// hold the upload and retry, never publish it. It returns ctx's error,
	// wrapped, if ctx is done.
	Moderate(ctx context.Context, img image.Image) (Verdict, error)
}
