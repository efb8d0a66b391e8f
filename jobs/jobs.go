// Package jobs is onebox's background work: the Queue interface every
// broker implements (jobs/sqlite and jobs/postgres on goqite in the
// store's own database; jobs/nats on JetStream, fed from that database as
// an outbox by a Relay) and the Runner above it, which gives every backend the same retries, backoff, dead-lettering,
// heartbeats and bounded concurrency. It imports no operator tooling: a
// job's request id reaches its handler through package correlation, and
// metrics and traces wrap the handlers from outside (main).
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Errors returned by Queue implementations, checked with errors.Is.
var (
	// ErrNotFound: no message with that id (acked, or never existed).
	ErrNotFound = errors.New("jobs: not found")
	// ErrMalformed: a message body is not an envelope this package wrote.
	ErrMalformed = errors.New("jobs: malformed message")
	// ErrPermanent, wrapped in a Handler's error, means retrying cannot
	// help (a payload that will never parse): the Runner dead-letters the
	// message at once instead of retrying it.
	ErrPermanent = errors.New("jobs: permanent failure")
	// ErrLeaseLost: the lease a call names is no longer the message's
	// current one. The visibility timeout of that delivery ended and the
	// message was received again, so another worker holds it now: the
	// call changed nothing, and the stale worker's result is to be
	// discarded.
	ErrLeaseLost = errors.New("jobs: lease lost")
)

// LeaseLostError is Ack's error when some of the messages it was given
// are held under a newer lease: it lists them, and they were not acked;
// the others were. errors.Is(err, ErrLeaseLost) holds.
type LeaseLostError struct {
	IDs []string
}

func (e *LeaseLostError) Error() string {
	return fmt.Sprintf("%v: %d message(s) received again since: %s", ErrLeaseLost, len(e.IDs), strings.Join(e.IDs, ", "))
}

func (e *LeaseLostError) Unwrap() error { return ErrLeaseLost }

// Message is one job. Kind picks the handler; Payload is the handler's
// own JSON. RequestID and TraceParent carry the request that enqueued the
// job into its logs and traces.
//
// FairKey names whose job it is (the owner, for a photo's): a backend
// that queues fairly (see Consumer.Receive) serves the keys with waiting
// jobs of a kind in turn, so one key's backlog delays another key's job
// by about one job, not by the backlog. A job without a key is not
// queued fairly: it takes the current turn, like a key's first job.
type Message struct {
	ID          string // set by the queue
	Kind        string
	Payload     json.RawMessage
	RequestID   string
	TraceParent string
	FairKey     string
	Attempt     int // 1 on the first delivery; set by the queue on Receive
	// Lease is the token of this delivery, set by Receive and opaque:
	// Extend, Ack, Retry and DeadLetter take it (see Receipt) and act
	// only while it is the message's current lease. It means nothing
	// outside the receiving process, so it is not encoded.
	Lease string `json:"-"`
}

// Receipt names one delivery of a message: its id and the lease Receive
// handed out with it.
type Receipt struct {
	ID    string
	Lease string
}

// Receipt is m's delivery, for Extend, Ack, Retry and DeadLetter.
func (m Message) Receipt() Receipt { return Receipt{ID: m.ID, Lease: m.Lease} }

// envelope is the wire form of a Message in every queue backend, so a
// job enqueued by one process version is readable by the next.
type envelope struct {
	V           int             `json:"v"`
	Kind        string          `json:"kind"`
	Payload     json.RawMessage `json:"payload,omitempty"`
	RequestID   string          `json:"request_id,omitempty"`
	TraceParent string          `json:"traceparent,omitempty"`
	FairKey     string          `json:"fair_key,omitempty"`
}

// Encode returns the body a queue stores for m (ID, Attempt and Lease
// are the queue's own and are not part of it).
func Encode(m Message) ([]byte, error) {
	if m.Kind == "" {
		return nil, fmt.Errorf("%w: empty kind", ErrMalformed)
	}
	return json.Marshal(envelope{V: 1, Kind: m.Kind, Payload: m.Payload, RequestID: m.RequestID, TraceParent: m.TraceParent, FairKey: m.FairKey})
}

// Decode is the inverse of Encode. It fails with ErrMalformed.
func Decode(body []byte) (Message, error) {
	var e envelope
	if err := json.Unmarshal(body, &e); err != nil || e.V != 1 || e.Kind == "" {
		return Message{}, fmt.Errorf("%w: %.64q", ErrMalformed, body)
	}
	return Message{Kind: e.Kind, Payload: e.Payload, RequestID: e.RequestID, TraceParent: e.TraceParent, FairKey: e.FairKey}, nil
}

// SendOptions tune one enqueue.
type SendOptions struct {
	Delay    time.Duration // invisible until then
	Priority int           // higher first
}

// The broker seam is split by role: a Producer enqueues, a Consumer is
// what the Runner needs to work through a kind, an Inspector is what the
// API and operator tools need (they never receive). A Queue is all three;
// a backend is one Queue, and each caller takes the role it uses.
//
// Delivery is at least once: a message received and not acked before its
// visibility timeout ends is delivered again. Ids are unique within a
// queue, so Ack, Extend, Retry and DeadLetter need no kind.
//
// Each delivery comes with a lease (Message.Lease), and Ack, Extend,
// Retry and DeadLetter name it (Receipt): they act only while it is the
// message's current lease, and fail with ErrLeaseLost once the message
// was received again. A worker that stalled past its visibility timeout
// therefore cannot ack, reschedule or dead-letter the delivery another
// worker now holds; its late result is refused, not applied. A lease
// whose visibility lapsed while nobody received the message again may
// still be honoured (the database backends do; JetStream's refuses it,
// since it cannot tell).
//
// Visibility is per kind, not per call: every Receive and Extend of a
// kind passes the same duration (the Runner's KindOptions.Visibility). A
// backend may fix it when a kind is first received, as JetStream fixes a
// consumer's AckWait, and refuse a different one later; the database
// backends store the deadline per message and take any value.
type Queue interface {
	Producer
	Consumer
	Inspector
}

// Producer enqueues jobs outside any business transaction (operator
// tools, tests). Business writes enqueue through the store, in the same
// transaction as the row they belong to: see Outbox.
type Producer interface {
	// Send enqueues m. A backend without priorities fails a send with a
	// non-zero Priority with errors.ErrUnsupported rather than ignore it.
	Send(ctx context.Context, m Message, o SendOptions) error
}

// AckPacer is implemented by a queue that says how long the Runner
// should gather finished messages before one Ack, when
// RunnerOptions.AckInterval leaves it to the queue: a queue whose Ack
// shares a COMMIT with other writes (jobs/sqlite on the store's writer)
// acks cheaply and soon, and every running message its Receive must pass
// over costs it on each Receive; one whose Ack is a round trip and a
// flush of its own (PostgreSQL) gains from bigger batches.
type AckPacer interface {
	AckInterval() time.Duration
}

// AckIntervalOf is q's AckInterval if q is an AckPacer, else 0: what a
// wrapper of a queue passes on, which would hide it otherwise.
func AckIntervalOf(q any) time.Duration {
	if p, ok := q.(AckPacer); ok {
		return p.AckInterval()
	}
	return 0
}

// Consumer is what the Runner needs of a queue.
type Consumer interface {
	// Receive returns up to max visible messages of one kind, higher
	// priority first where the backend has priorities, then oldest
	// first, each made invisible for visibility (the kind's) and with
	// Attempt counted. An empty slice means none now. A message whose body
	// does not decode is dead-lettered, not returned.
	//
	// A backend that queues fairly (jobstest.FairQueue) orders by turn
	// before age: the first job of each FairKey waiting, oldest first,
	// then the second of each, and so on, so a key that enqueued a
	// thousand jobs holds one place in each round, not a thousand places
	// ahead of everyone else. Whether and how each backend does it is in
	// its package comment.
	//
	// Receiving by kind lets the Runner take only as many messages of a
	// kind as it has free workers for, so a backlog of a slow kind never
	// stands in front of another kind.
	Receive(ctx context.Context, kind string, max int, visibility time.Duration) ([]Message, error)
	// Extend keeps a received message invisible for visibility (its
	// kind's) from now: the heartbeat of a long job. Zero makes it
	// visible at once. ErrNotFound if it is gone, where the backend can
	// tell; ErrLeaseLost if it was received again.
	Extend(ctx context.Context, r Receipt, visibility time.Duration) error
	// Ack deletes finished messages. Missing ids are ignored. Messages
	// received again since are not deleted: the error is then a
	// *LeaseLostError naming them, and the others were deleted.
	Ack(ctx context.Context, rs ...Receipt) error
	// Retry makes a received message visible again at the given time and
	// records the error of the failed attempt. ErrNotFound if it is gone,
	// ErrLeaseLost if it was received again.
	Retry(ctx context.Context, r Receipt, at time.Time, lastErr string) error
	// DeadLetter parks a message for good, keeping its payload and reason
	// (an empty reason keeps the error recorded by the last Retry).
	// ErrNotFound if it is gone, ErrLeaseLost if it was received again.
	DeadLetter(ctx context.Context, r Receipt, reason string) error
	// Stats, as Inspector's: the Runner uses it to find kinds it has no
	// handler for.
	Stats(ctx context.Context) (Stats, error)
}

// Inspector is what operators and the API need: counts, dead letters,
// redriving them and bounding how many are kept.
type Inspector interface {
	// Stats describes the queue per kind, for operators and metrics. It
	// may be a little stale, and is cheap enough to call every few
	// seconds.
	Stats(ctx context.Context) (Stats, error)
	// Dead lists the dead-lettered messages f matches, newest first, up
	// to limit.
	Dead(ctx context.Context, f DeadFilter, limit int) ([]DeadMessage, error)
	// Redrive moves the dead messages f matches (all of them for the zero
	// DeadFilter) back into the queue as new messages, with new ids and a
	// fresh attempt count, so no lease handed out before they died is
	// current again. It returns how many moved.
	Redrive(ctx context.Context, f DeadFilter) (int, error)
	// PruneDead deletes up to limit dead messages that died before
	// before, oldest first, and returns how many it deleted: the
	// retention sweep calls it in batches.
	PruneDead(ctx context.Context, before time.Time, limit int) (int, error)
	// PruneDeadBeyond deletes up to limit of the oldest dead messages
	// beyond the newest keep (Dead's order; keep 0 deletes them all) and
	// returns how many it deleted: the retention sweep calls it in
	// batches to bound their number, whatever their age.
	PruneDeadBeyond(ctx context.Context, keep, limit int) (int, error)
}

// DeadFilter picks dead messages: those matching every field that is set.
// The zero DeadFilter matches all.
type DeadFilter struct {
	IDs   []string // one of these ids
	Kind  string   // this kind
	Error string   // a last error containing this text (case-sensitive)
}

// ParseDeadFilter reads a DeadFilter from a query, as the admin listener
// and the dashboard take it: id=A&id=B, kind=K, error=TEXT, each
// optional. It fails on an empty id or one with white space, more than
// 1000 ids, or a kind or text over 1000 bytes.
func ParseDeadFilter(q url.Values) (DeadFilter, error) {
	f := DeadFilter{IDs: q["id"], Kind: q.Get("kind"), Error: q.Get("error")}
	switch {
	case len(f.IDs) > 1000:
		return f, errors.New("at most 1000 ids at once")
	case len(f.Kind) > 1000 || len(f.Error) > 1000:
		return f, errors.New("kind and error are at most 1000 bytes")
	}
	for _, id := range f.IDs {
		if id == "" || strings.ContainsAny(id, " \t\r\n") {
			return f, errors.New("an id is empty or has white space")
		}
	}
	return f, nil
}

// ParseRedrive reads the dead jobs a redrive picks, as ParseDeadFilter,
// and fails unless they are named (id, kind or error) or all=true asks
// for every one: a redrive of everything is never an accident.
func ParseRedrive(q url.Values) (DeadFilter, error) {
	f, err := ParseDeadFilter(q)
	if err == nil && !f.Selects() && q.Get("all") != "true" {
		err = errors.New("name the dead jobs with id=…, kind=… or error=…, or pass all=true")
	}
	return f, err
}

// Selects reports whether f names dead jobs rather than all of them.
func (f DeadFilter) Selects() bool { return len(f.IDs) > 0 || f.Kind != "" || f.Error != "" }

// Match reports whether f picks d; for backends that filter in Go.
func (f DeadFilter) Match(d DeadMessage) bool {
	return (len(f.IDs) == 0 || slices.Contains(f.IDs, d.ID)) &&
		(f.Kind == "" || d.Kind == f.Kind) &&
		strings.Contains(d.LastError, f.Error)
}

// The outbox contract. A store enqueues a job inside its own transaction,
// so the job exists if and only if the row it belongs to commits. Where
// the queue is the database's own table (goqite on SQLite or PostgreSQL)
// that row is the job and nothing more happens. For an external broker
// the same row is an outbox entry: Relay moves committed rows to the
// broker and then marks them sent (acks them). A crash between publish
// and mark resends the row; the broker drops the resend by its message id
// (IDSender) within its duplicate window, and jobs stay idempotent for
// what a window cannot catch.

// IDSender is a Producer whose broker deduplicates by message id: a
// second send with the same id within the broker's duplicate window is
// dropped. Relay needs it.
type IDSender interface {
	SendID(ctx context.Context, id string, m Message, o SendOptions) error
}

// IDMessage is one message of a SendIDs batch: Message sent with ID as
// its broker message id, as SendID sends it.
type IDMessage struct {
	ID      string
	Message Message
	Options SendOptions
}

// BatchIDSender is an IDSender that publishes many messages at once, each
// one as SendID would, without waiting for the broker's confirmation of
// one before sending the next. Relay uses it when its broker has it and
// calls SendID for one message at a time otherwise.
type BatchIDSender interface {
	IDSender
	// SendIDs sends ms and returns each one's outcome: errs[i] is nil if
	// the broker confirmed ms[i] (stored it, or dropped it as a duplicate
	// of its id), and the error otherwise; errs has len(ms) entries. A
	// message whose confirmation did not arrive before ctx was done has
	// an error, though the broker may have stored it: sent again with the
	// same id, it is dropped within the duplicate window.
	SendIDs(ctx context.Context, ms []IDMessage) (errs []error)
}

// Stats is a snapshot of a queue.
type Stats struct {
	Kinds map[string]KindStats `json:"kinds"`
}

// KindStats is one kind's share of a queue.
type KindStats struct {
	Queued    int           `json:"queued"`     // waiting, including delayed retries
	InFlight  int           `json:"in_flight"`  // received, not yet acked
	Dead      int           `json:"dead"`       // dead-lettered
	OldestAge time.Duration `json:"oldest_age"` // age of the oldest queued or in-flight message
}

// DeadMessage is a dead-lettered job with why it died.
type DeadMessage struct {
	Message
	LastError string    `json:"last_error"`
	DiedAt    time.Time `json:"died_at"`
}
