package sqlutil

import (
	"fmt"
	"strings"

	"onebox/store"
)

// HandleKey is the unique form of a handle, the users.handle_key column.
// It is computed here rather than with SQL lower(), whose folding differs
// by database (SQLite folds ASCII only; PostgreSQL follows its locale),
// and once for both stores, so a row copied between them keeps a key the
// other store computes the same.
func HandleKey(handle string) string {
	return strings.ToLower(handle)
}

// AvatarOf is the avatar p sets, "" when it sets none or clears it.
func AvatarOf(p store.UpdateUserParams) string {
	if p.AvatarID == nil {
		return ""
	}
	return *p.AvatarID
}

// WhyNoUpdate tells why an update of p that matched no row was refused,
// given what a second read of the user found: its version and whether
// AvatarOf(p) is a ready photo of the user. dialect ("sqlite",
// "postgres") begins the message.
//
// The read needs no transaction around it and the update: IDs are never
// reused, so a user that exists now existed then; one deleted since is
// not found either way. Versions only grow, so a version that differs now
// is one that differed then or was bumped meanwhile; a photo once ready
// stays ready until it is deleted. Only a write landing between the two
// statements can make the answer ErrVersionMismatch where it was
// ErrInvalid, or the reverse: either way the caller has to read the
// profile again.
func WhyNoUpdate(dialect string, p store.UpdateUserParams, version int64, avatarOK bool) error {
	avatar := AvatarOf(p)
	switch {
	case p.IfVersion != 0 && version != p.IfVersion:
		return fmt.Errorf("%s users_update: version %d: %w", dialect, p.IfVersion, store.ErrVersionMismatch)
	case !avatarOK:
		return fmt.Errorf("%s users_update: avatar %q is not a ready photo of the user: %w", dialect, avatar, store.ErrInvalid)
	case p.IfVersion != 0:
		// Both hold now: the version asked for was still to come.
		return fmt.Errorf("%s users_update: version %d: %w", dialect, p.IfVersion, store.ErrVersionMismatch)
	default:
		// The avatar became ready after the update refused it.
		return fmt.Errorf("%s users_update: avatar %q was not ready: %w", dialect, avatar, store.ErrInvalid)
	}
}
