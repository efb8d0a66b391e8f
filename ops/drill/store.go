package drill

import (
	"context"
	"time"

	"onebox/store"
)

// Store is a store.Store whose every call first waits the drill's
// database latency (nothing when no drill runs), honouring the call's
// context. Close is not delayed. It names the inner store rather than
// embedding it, so a method added to store.Store fails to compile here
// instead of passing through undelayed.
type Store struct {
	inner store.Store
	dr    *Drill
}

var _ store.Store = (*Store)(nil)

// Store wraps inner so the drill's database latency applies to it.
func (dr *Drill) Store(inner store.Store) *Store { return &Store{inner: inner, dr: dr} }

// call runs f after the drill's wait, with the context that carries it.
func call[T any](s *Store, ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	ctx, err := s.dr.wait(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	return f(ctx)
}

// do is call for the methods that return only an error.
func (s *Store) do(ctx context.Context, f func(context.Context) error) error {
	ctx, err := s.dr.wait(ctx)
	if err != nil {
		return err
	}
	return f(ctx)
}

// photoResult carries the three results of CreatePhoto and DeletePhoto through call.
type photoResult struct {
	ph   store.Photo
	flag bool
}

func (s *Store) CreateUser(ctx context.Context, p store.CreateUserParams) (store.User, error) {
	return call(s, ctx, func(ctx context.Context) (store.User, error) { return s.inner.CreateUser(ctx, p) })
}

func (s *Store) User(ctx context.Context, p store.UserParams) (store.User, error) {
	return call(s, ctx, func(ctx context.Context) (store.User, error) { return s.inner.User(ctx, p) })
}

func (s *Store) UserByHandle(ctx context.Context, p store.UserByHandleParams) (store.User, error) {
	return call(s, ctx, func(ctx context.Context) (store.User, error) { return s.inner.UserByHandle(ctx, p) })
}

func (s *Store) ListUsers(ctx context.Context, p store.ListUsersParams) ([]store.User, error) {
	return call(s, ctx, func(ctx context.Context) ([]store.User, error) { return s.inner.ListUsers(ctx, p) })
}

func (s *Store) Credentials(ctx context.Context, handle string) (store.Credentials, error) {
	return call(s, ctx, func(ctx context.Context) (store.Credentials, error) { return s.inner.Credentials(ctx, handle) })
}

func (s *Store) UpdateUser(ctx context.Context, p store.UpdateUserParams) (store.User, error) {
	return call(s, ctx, func(ctx context.Context) (store.User, error) { return s.inner.UpdateUser(ctx, p) })
}

func (s *Store) SetPassword(ctx context.Context, p store.SetPasswordParams) error {
	return s.do(ctx, func(ctx context.Context) error { return s.inner.SetPassword(ctx, p) })
}

func (s *Store) DeleteUser(ctx context.Context, p store.DeleteUserParams) error {
	return s.do(ctx, func(ctx context.Context) error { return s.inner.DeleteUser(ctx, p) })
}

func (s *Store) CreateSession(ctx context.Context, sess store.Session) error {
	return s.do(ctx, func(ctx context.Context) error { return s.inner.CreateSession(ctx, sess) })
}

func (s *Store) Session(ctx context.Context, tokenHash string, now time.Time) (store.Session, error) {
	return call(s, ctx, func(ctx context.Context) (store.Session, error) { return s.inner.Session(ctx, tokenHash, now) })
}

func (s *Store) DeleteSession(ctx context.Context, tokenHash string) error {
	return s.do(ctx, func(ctx context.Context) error { return s.inner.DeleteSession(ctx, tokenHash) })
}

func (s *Store) MarkWritten(ctx context.Context, tokenHash string) (store.Token, error) {
	return call(s, ctx, func(ctx context.Context) (store.Token, error) { return s.inner.MarkWritten(ctx, tokenHash) })
}

func (s *Store) UserSessions(ctx context.Context, userID string) ([]string, error) {
	return call(s, ctx, func(ctx context.Context) ([]string, error) { return s.inner.UserSessions(ctx, userID) })
}

func (s *Store) CreatePhoto(ctx context.Context, p store.CreatePhotoParams) (store.Photo, bool, error) {
	r, err := call(s, ctx, func(ctx context.Context) (photoResult, error) {
		ph, flag, err := s.inner.CreatePhoto(ctx, p)
		return photoResult{ph, flag}, err
	})
	return r.ph, r.flag, err
}

func (s *Store) Photo(ctx context.Context, p store.PhotoParams) (store.Photo, error) {
	return call(s, ctx, func(ctx context.Context) (store.Photo, error) { return s.inner.Photo(ctx, p) })
}

func (s *Store) PhotoByIdempotencyKey(ctx context.Context, p store.IdempotencyParams) (store.Photo, error) {
	return call(s, ctx, func(ctx context.Context) (store.Photo, error) { return s.inner.PhotoByIdempotencyKey(ctx, p) })
}

func (s *Store) ListPhotos(ctx context.Context, p store.ListPhotosParams) ([]store.Photo, error) {
	return call(s, ctx, func(ctx context.Context) ([]store.Photo, error) { return s.inner.ListPhotos(ctx, p) })
}

func (s *Store) FinishPhoto(ctx context.Context, p store.FinishPhotoParams) (store.Photo, error) {
	return call(s, ctx, func(ctx context.Context) (store.Photo, error) { return s.inner.FinishPhoto(ctx, p) })
}

func (s *Store) DeletePhoto(ctx context.Context, p store.DeletePhotoParams) (store.Photo, bool, error) {
	r, err := call(s, ctx, func(ctx context.Context) (photoResult, error) {
		ph, flag, err := s.inner.DeletePhoto(ctx, p)
		return photoResult{ph, flag}, err
	})
	return r.ph, r.flag, err
}

func (s *Store) Events(ctx context.Context, p store.EventsParams) ([]store.Event, error) {
	return call(s, ctx, func(ctx context.Context) ([]store.Event, error) { return s.inner.Events(ctx, p) })
}

func (s *Store) LastEventID(ctx context.Context, userID string) (int64, error) {
	return call(s, ctx, func(ctx context.Context) (int64, error) { return s.inner.LastEventID(ctx, userID) })
}

func (s *Store) Ping(ctx context.Context) error {
	return s.do(ctx, func(ctx context.Context) error { return s.inner.Ping(ctx) })
}

func (s *Store) PruneEvents(ctx context.Context, before time.Time, limit int) (int, error) {
	return call(s, ctx, func(ctx context.Context) (int, error) { return s.inner.PruneEvents(ctx, before, limit) })
}

func (s *Store) PruneIdempotencyKeys(ctx context.Context, now time.Time, limit int) (int, error) {
	return call(s, ctx, func(ctx context.Context) (int, error) { return s.inner.PruneIdempotencyKeys(ctx, now, limit) })
}

func (s *Store) Close() error { return s.inner.Close() }
