// Package store defines onebox's domain types and the persistence
// interfaces that every database backend implements (store/sqlite today,
// store/postgres with read replicas later).
//
// Nothing in this package knows about SQL: no *sql.Tx, driver type or
// dialect crosses these interfaces. IDs are UUIDv7 strings minted by
// onebox, times are UTC, so rows can be copied between backends. They
// are owed to the microsecond, truncated (PostgreSQL's timestamptz keeps
// no more; SQLite's text keeps nanoseconds).
package store

import (
	"context"
	"errors"
	"time"

	"onebox/jobs"
)

// Errors returned by every implementation, checked with errors.Is.
// Implementations translate their driver's errors (sql.ErrNoRows,
// SQLITE_BUSY, unique violations) into these at the boundary.
var (
	// ErrNotFound: the row does not exist (or, for sessions, has expired).
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: a unique constraint (such as the handle) is taken.
	ErrConflict = errors.New("store: conflict")
	// ErrVersionMismatch: an optimistic-concurrency precondition failed.
	ErrVersionMismatch = errors.New("store: version mismatch")
	// ErrBusy: the database could not take the lock within its timeout.
	// Callers should retry later; it is not a bug.
	ErrBusy = errors.New("store: busy")
	// ErrFull: the disk holding the database is full (SQLITE_FULL). The
	// write was rolled back; it may succeed once space is freed.
	ErrFull = errors.New("store: disk full")
	// ErrInvalid: the arguments break a rule the store enforces, such as
	// an avatar that is not a ready photo of the same user.
	ErrInvalid = errors.New("store: invalid")
	// ErrIdempotencyMismatch: an idempotency key the owner holds came
	// with a different request (another digest) than the one that took it.
	ErrIdempotencyMismatch = errors.New("store: idempotency key used with a different request")
)

// User is a profile. The password hash is deliberately not part of it:
// only Credentials carries that, so it cannot leak into a response.
type User struct {
	ID          string
	Handle      string
	DisplayName string
	Bio         string
	AvatarID    string // "" when no avatar is set
	CreatedAt   time.Time
	UpdatedAt   time.Time
	Version     int64 // starts at 1, increases by one on every change
}

// Credentials is what a login needs to check a password.
type Credentials struct {
	UserID       string
	PasswordHash string
}

// Session is a logged-in bearer token. Only the SHA-256 of the token is
// stored; the token itself is shown to the client once.
type Session struct {
	TokenHash string
	UserID    string
	CreatedAt time.Time
	ExpiresAt time.Time
	// Token is the position every write of this session (and everything
	// committed before the session began) is at: reads with it as AtLeast
	// see them. Set by the store; "" where the store keeps one copy.
	Token Token
}

// Freshness says how current a read must be. The zero value allows a
// read replica; SQLite has a single copy and ignores the difference.
type Freshness int

const (
	// MayBeStale lets a replica answer: the row may lag recent writes.
	MayBeStale Freshness = iota
	// MustBeFresh requires every write committed before the call to be
	// visible (read-your-own-writes): served by the primary.
	MustBeFresh
)

// Token is a position in the primary's history of writes: on PostgreSQL
// the text of a WAL position (pg_lsn, "0/16B3748"). It is opaque to
// callers, who only hand back what a store gave them. "" is no position.
//
// A read with AtLeast set to a token sees every write committed before
// the token was taken: a replica serves it only once it has replayed that
// far, otherwise the primary does. That is read-your-own-writes,
// precisely: a session keeps the token of its latest write
// (Sessions.MarkWritten) where every instance reads it, the session row,
// and its reads carry it. A read with neither a token nor MustBeFresh may
// be served by any healthy replica. Stores with a single copy (SQLite)
// hand out "" and ignore AtLeast: every read sees every commit.
type Token string

// CreateUserParams creates a user. ID and Now come from the caller so
// every backend agrees and tests control time.
type CreateUserParams struct {
	ID           string
	Handle       string
	DisplayName  string
	PasswordHash string
	Now          time.Time
}

// UserParams reads one user by ID.
type UserParams struct {
	ID        string
	Freshness Freshness
	AtLeast   Token // with MayBeStale: see every write up to this token
}

// UserByHandleParams reads one user by handle, compared
// case-insensitively as sign-up compares them.
type UserByHandleParams struct {
	Handle    string
	Freshness Freshness
}

// ListUsersParams reads one page of users ordered by ID (keyset paging).
type ListUsersParams struct {
	AfterID   string // exclusive; "" starts at the beginning
	Limit     int    // the caller bounds it
	Freshness Freshness
}

// UpdateUserParams changes profile fields. A nil field is left alone; a
// pointer to "" clears it.
type UpdateUserParams struct {
	ID          string
	IfVersion   int64 // 0 means unconditional
	DisplayName *string
	Bio         *string
	// AvatarID sets the avatar: "" clears it; otherwise it must be a ready
	// photo of this user, else ErrInvalid.
	AvatarID *string
	Now      time.Time
}

// CleanupJob builds the job that removes deleted photos' files, given
// their media keys (originals and variants). The store calls it inside
// the deleting transaction, so the list is exact.
type CleanupJob func(keys []string) jobs.Message

// DeleteUserParams deletes an account. Cleanup, if set, is enqueued in
// the same transaction when the user had photos.
type DeleteUserParams struct {
	ID      string
	Cleanup CleanupJob
}

// SetPasswordParams replaces a user's password hash and revokes every
// session of that user except KeepTokenHash, in one transaction.
type SetPasswordParams struct {
	UserID        string
	PasswordHash  string
	KeepTokenHash string
	Now           time.Time
}

// QueryEvent describes one finished database query. Implementations hand
// it to an optional hook so metrics and a slow-query log need no driver
// knowledge.
type QueryEvent struct {
	Name     string // stable and low-cardinality, such as "users_by_id"
	SQL      string
	Duration time.Duration
	// End is when the query finished: the hook may be called later
	// (the SQLite store reports a write's queries once it has let the
	// writer go).
	End time.Time
	Err error // nil on success; compare with errors.Is against the sentinels above
}

// Failed reports whether err is a failure of the database operation:
// an error other than ErrNotFound, ErrConflict, ErrVersionMismatch,
// ErrInvalid and ErrIdempotencyMismatch, which are answers about the
// data. Metrics and traces count only failures as errors.
func Failed(err error) bool {
	switch {
	case err == nil, errors.Is(err, ErrNotFound), errors.Is(err, ErrConflict),
		errors.Is(err, ErrVersionMismatch), errors.Is(err, ErrInvalid), errors.Is(err, ErrIdempotencyMismatch):
		return false
	}
	return true
}

// Users persists profiles and credentials.
type Users interface {
	// CreateUser inserts a user with Version 1. It returns ErrConflict if
	// the handle is taken (handles compare case-insensitively).
	CreateUser(ctx context.Context, p CreateUserParams) (User, error)
	// User returns one user, or ErrNotFound. With MayBeStale it may be
	// served by a replica and lag recent writes.
	User(ctx context.Context, p UserParams) (User, error)
	// UserByHandle returns the user whose handle equals p.Handle
	// case-insensitively, or ErrNotFound. With MayBeStale it may be
	// served by a replica and lag recent writes (a handle never changes,
	// but a new user may not be seen yet).
	UserByHandle(ctx context.Context, p UserByHandleParams) (User, error)
	// ListUsers returns up to p.Limit users with ID > p.AfterID, in ID
	// order. An empty slice means the end. ErrInvalid if p.Limit < 1.
	ListUsers(ctx context.Context, p ListUsersParams) ([]User, error)
	// Credentials looks a user up by handle (case-insensitively) for a
	// login. It returns ErrNotFound for an unknown handle. Always fresh.
	Credentials(ctx context.Context, handle string) (Credentials, error)
	// UpdateUser applies the non-nil fields, bumps Version and UpdatedAt
	// and returns the new row. ErrNotFound if the user is gone;
	// ErrVersionMismatch if IfVersion is set and differs.
	UpdateUser(ctx context.Context, p UpdateUserParams) (User, error)
	// SetPassword replaces the hash and revokes the user's other sessions.
	// ErrNotFound if the user is gone.
	SetPassword(ctx context.Context, p SetPasswordParams) error
	// DeleteUser removes the user with all their sessions, photos and
	// events and enqueues p.Cleanup (which removes the photos' files), in
	// one transaction. ErrNotFound if the user does not exist.
	DeleteUser(ctx context.Context, p DeleteUserParams) error
}

// Sessions persists login sessions.
type Sessions interface {
	// CreateSession stores a session. ErrNotFound if the user is gone.
	// The session's Token starts at the primary's position at its
	// creation (s.Token is ignored), so its first reads see everything
	// committed before the login, the sign-up included.
	CreateSession(ctx context.Context, s Session) error
	// Session returns the session for a token hash, or ErrNotFound when
	// there is none or it expired before now. Always fresh: a revoked
	// token must stop working at once.
	Session(ctx context.Context, tokenHash string, now time.Time) (Session, error)
	// DeleteSession revokes one session. Deleting a missing one is not an
	// error (logout is idempotent).
	DeleteSession(ctx context.Context, tokenHash string) error
	// MarkWritten records in the session the primary's position now, at
	// or after the commit of every write that returned before the call,
	// and returns it as the session's new Token; a token never moves
	// back. Callers mark after a session's write, so its next read, on any
	// instance, sees the write. ErrNotFound if the session is gone. A
	// store with a single copy returns "" and does nothing at all, so the
	// call costs nothing there.
	MarkWritten(ctx context.Context, tokenHash string) (Token, error)
	// UserSessions lists the token hashes of a user's sessions, so callers
	// can evict them from caches before revoking them.
	UserSessions(ctx context.Context, userID string) ([]string, error)
}

// PhotoStatus is where a photo is in its pipeline.
type PhotoStatus string

const (
	PhotoProcessing PhotoStatus = "processing"
	PhotoReady      PhotoStatus = "ready"
	PhotoRejected   PhotoStatus = "rejected"
)

// Variant is one published rendition of a photo.
type Variant struct {
	Name        string // "w128" … "w2048" or "thumb"
	Key         string // media storage key
	Width       int
	Height      int
	Size        int64
	ContentType string
}

// Photo is an uploaded image and what the pipeline made of it.
type Photo struct {
	ID          string
	OwnerID     string
	Status      PhotoStatus
	Reason      string // why it was rejected, for the user
	Width       int    // of the oriented original; 0 until ready
	Height      int
	OriginalKey string // private media key of the upload as received
	ContentType string // sniffed type of the original
	Size        int64  // bytes of the original
	Variants    []Variant
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Event says that a photo changed, for the SSE streams. Its ID grows with
// every event across the whole store and follows commit order (see
// Photos.Events), so a client resumes after the last ID it saw
// (Last-Event-ID), across restarts and instances, and misses nothing.
type Event struct {
	ID        int64
	UserID    string // the photo's owner
	PhotoID   string
	CreatedAt time.Time
}

// CreatePhotoParams records an upload and enqueues its pipeline job.
type CreatePhotoParams struct {
	Photo Photo // ID, OwnerID, OriginalKey, ContentType, Size, CreatedAt
	// Idempotency, when its Key is set, makes a retried upload by the
	// same owner return the first photo instead of creating a second one.
	Idempotency Idempotency
	Job         jobs.Message
}

// Idempotency is a client's Idempotency-Key for one create, with what
// identifies the request that took it.
type Idempotency struct {
	// Key is the client's key, scoped to the owner: another owner's same
	// key is another key. "" for none.
	Key string
	// Digest identifies the request's content (the app uses "sha256:"
	// and the hex SHA-256 of the uploaded file). The store only compares
	// digests for equality. Required with a Key.
	Digest string
	// ExpiresAt is when the key is forgotten: from then on the same key
	// creates anew, and PruneIdempotencyKeys may delete it. With a Key it
	// must be after the create's time.
	ExpiresAt time.Time
}

// IdempotencyParams reads what an owner's idempotency key made.
type IdempotencyParams struct {
	OwnerID string
	Key     string
	// Digest, when set, must equal the key's, else ErrIdempotencyMismatch;
	// "" asks only whether the key is held.
	Digest string
	// Now decides expiry: a key whose ExpiresAt is at or before Now is
	// not found.
	Now time.Time
}

// PhotoParams reads one photo.
type PhotoParams struct {
	ID        string
	Freshness Freshness
	AtLeast   Token // with MayBeStale: see every write up to this token
}

// ListPhotosParams reads one page of a user's photos, newest first.
type ListPhotosParams struct {
	OwnerID   string
	BeforeID  string // exclusive; "" starts at the newest
	Limit     int
	ReadyOnly bool
	Freshness Freshness
	AtLeast   Token // with MayBeStale: see every write up to this token
}

// FinishPhotoParams records the pipeline's outcome.
type FinishPhotoParams struct {
	ID       string
	Status   PhotoStatus // PhotoReady or PhotoRejected
	Reason   string
	Width    int
	Height   int
	Variants []Variant
	Now      time.Time
}

// DeletePhotoParams deletes a photo of its owner and enqueues the job that
// removes its files, in one transaction.
type DeletePhotoParams struct {
	ID      string
	OwnerID string
	Cleanup CleanupJob
	Now     time.Time
}

// EventsParams reads the events after an id.
type EventsParams struct {
	UserID  string
	PhotoID string // "" for every photo of the user
	AfterID int64
	Limit   int
}

// Photos persists uploads, their pipeline state and their events.
type Photos interface {
	// CreatePhoto inserts a processing photo, its event and its job in one
	// transaction, so an accepted upload is never without its job.
	//
	// With an Idempotency.Key the owner holds (not expired at
	// p.Photo.CreatedAt) it writes nothing: it returns the key's photo
	// with created false when the Digest is the key's, and
	// ErrIdempotencyMismatch when it is not. An expired key is replaced by
	// the new photo's. However many calls race, from however many
	// processes, one owner's live key has at most one photo: the store
	// enforces it, not a read before the write. The key is deleted with
	// its photo, so a retry after a delete creates anew.
	//
	// ErrInvalid if a Key comes without a Digest or with an ExpiresAt not
	// after CreatedAt; ErrNotFound if the owner is gone.
	CreatePhoto(ctx context.Context, p CreatePhotoParams) (ph Photo, created bool, err error)
	// Photo returns one photo, or ErrNotFound.
	Photo(ctx context.Context, p PhotoParams) (Photo, error)
	// PhotoByIdempotencyKey returns the photo p.OwnerID made with the key
	// p.Key, as CreatePhoto would answer a retry, so a retry can be
	// answered without a second create: ErrNotFound if the owner holds no
	// such key at p.Now (never used, expired, or its photo deleted);
	// ErrIdempotencyMismatch if p.Digest is set and is not the key's.
	// Always fresh.
	PhotoByIdempotencyKey(ctx context.Context, p IdempotencyParams) (Photo, error)
	// ListPhotos returns up to p.Limit photos of p.OwnerID with ID <
	// p.BeforeID, newest first. ErrInvalid if p.Limit < 1.
	ListPhotos(ctx context.Context, p ListPhotosParams) ([]Photo, error)
	// FinishPhoto moves a processing photo to ready or rejected and writes
	// its event, in one transaction. It is idempotent: a photo already
	// finished is returned as it is, with no second event. ErrNotFound if
	// the photo was deleted meanwhile.
	FinishPhoto(ctx context.Context, p FinishPhotoParams) (Photo, error)
	// DeletePhoto removes the photo, clears it as its owner's avatar
	// (bumping the profile version), writes its event and enqueues the
	// p.Cleanup job, in one transaction. It returns the deleted photo and whether the
	// avatar was cleared. ErrNotFound unless the owner has that photo.
	DeletePhoto(ctx context.Context, p DeletePhotoParams) (ph Photo, avatarCleared bool, err error)
	// Events returns up to p.Limit events with ID > p.AfterID, oldest
	// first. Always fresh. ErrInvalid if p.Limit < 1.
	//
	// Event IDs follow commit order: an event is visible to Events only
	// once every event of its user with a smaller ID is (or has rolled
	// back and never will be). So a reader that polls with AfterID set to
	// the last ID it saw never skips an event: that is the SSE resume
	// contract, a client resumes after the last id. Events always reads
	// one user's events, so the order is owed within a user; events of
	// different users may become visible out of ID order.
	//
	// One writer that numbers events as it commits them keeps this by
	// construction (SQLite's AUTOINCREMENT). Where IDs are taken at
	// insert and transactions commit in any order (a PostgreSQL
	// sequence), a store must not show an event while a smaller ID of the
	// same user may still commit, for example by serializing each user's
	// event inserts on a transaction-level lock keyed by the user.
	Events(ctx context.Context, p EventsParams) ([]Event, error)
	// LastEventID is the newest event id of a user (0 if none), where a
	// new stream without Last-Event-ID starts. Every event of the user up
	// to it is visible to Events, as Events' ordering requires.
	LastEventID(ctx context.Context, userID string) (int64, error)
	// PruneEvents deletes up to limit of the oldest events, those created
	// before before, and says how many it deleted; a caller repeats it
	// until that is fewer than limit, so no one statement holds the
	// writer long. Event IDs are never reused after a prune. ErrInvalid
	// if limit < 1.
	PruneEvents(ctx context.Context, before time.Time, limit int) (int, error)
	// PruneIdempotencyKeys deletes up to limit of the idempotency keys
	// that expired at or before now and says how many it deleted; a
	// caller repeats it until that is fewer than limit. Their photos stay.
	// Expired keys are never answered, deleted or not: pruning only
	// bounds the table. ErrInvalid if limit < 1.
	PruneIdempotencyKeys(ctx context.Context, now time.Time, limit int) (int, error)
}

// Store is everything onebox persists, behind one handle.
type Store interface {
	Users
	Sessions
	Photos
	// Ping checks the database answers; readiness probes call it.
	Ping(ctx context.Context) error
	// Close releases connections. Calls after Close fail.
	Close() error
}
