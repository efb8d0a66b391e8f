// Package nats implements jobs.Queue on NATS JetStream (server 2.9 and
// later: nothing here needs 2.10's multi-filter consumers or per-message
// TTLs).
//
// Streams, all named after Options.Stream (S) and its subject prefix (p):
//
//   - S, work-queue retention, subjects p.jobs.<kind>: the jobs. Acked and
//     terminated messages leave it.
//   - S_DEAD, subjects p.dead.<kind>: dead letters, one JSON record each,
//     which Dead lists and Redrive publishes back to S.
//   - S_MARKS, subjects p.mark.<kind>.<seq>, one message per subject: the
//     state a job's message cannot carry, since a stream message is
//     immutable: the last error of a failed attempt, until when it waits
//     for its retry, and how many early deliveries of a delayed job were
//     put back (they are not attempts).
//   - S_ADV: the max-deliveries advisories of S's consumers. JetStream
//     publishes one when a message reaches its consumer's MaxDeliver and
//     stops delivering it: a worker died on every delivery. An advisory
//     nobody captures is lost, so a stream keeps them until Dead, Stats
//     or Redrive turns them into dead letters.
//
// A kind is a durable pull consumer on p.jobs.<kind>, created by the
// kind's first Receive with AckWait as its visibility timeout: visibility
// is per kind, and a Receive with another one fails. Extend is an
// in-progress ack (the heartbeat), which restarts AckWait whatever
// duration it is given, and a negative ack when it is 0. Retry is a
// delayed negative ack. DeadLetter publishes the dead letter, then
// terminates the message.
//
// JetStream 2.9 cannot delay a message: Send with a delay stamps a
// not-before header, and Receive puts an early message back with a
// delayed negative ack, counted in its mark so that Attempt stays true.
// There are no priorities: Send with one fails with
// errors.ErrUnsupported.
//
// A message's id is its sequence in S. The handle that acks it is held by
// the process that received it: Ack, Extend, Retry and DeadLetter from
// another process find nothing (ErrNotFound, or nothing for Ack), and the
// message comes back after its visibility timeout.
//
// Leases. JetStream settles a delivery by the reply subject it came with,
// and that subject names the delivery (its count and consumer sequence),
// but the server applies an ack, a negative ack, a termination or an
// in-progress ack to whatever delivery of that stream sequence is
// pending: nats-server's consumer looks the message up in its pending
// map by stream sequence alone. So a worker that stalled past AckWait
// and acks late acks the delivery another worker now holds, which then
// cannot retry it if it fails; a late negative ack makes it deliverable
// to a third. JetStream guarantees only that it redelivers after
// AckWait. What this package adds: the lease of a delivery is its
// NumDelivered; the handle kept for it carries that lease and a
// deadline, AckWait from just before the fetch that received it (the
// server's timer starts later), moved by each in-progress ack to AckWait
// from just before it was sent, less a tenth of AckWait for an ack in
// flight. Ack, Extend, Retry and DeadLetter fail with jobs.ErrLeaseLost,
// sending nothing, when the handle held here is of a later delivery or
// its deadline has passed: before then the server cannot have
// redelivered it to anyone. What remains is an ack sent in time that
// reaches the server more than a tenth of AckWait later.
//
// Kinds appear in subjects as unpadded base64url, so any kind is a valid
// subject token and consumer name.
//
// Fair queueing: not offered (jobstest.FairQueue is not implemented).
// The fair key (jobs.Message.FairKey) travels in the message body, so it
// survives the outbox relay and reaches the handler, but Receive takes a
// kind's messages in stream order: a key's backlog is served before a job
// enqueued after it. A kind's one pull consumer delivers in sequence
// order and cannot pick by key; turns would need a subject per key
// (p.jobs.<kind>.<key>) with a consumer per key, which on a work-queue
// stream must be the only consumers of those subjects, so the kind's
// consumer, its MaxDeliver advisories, Stats' pending counts and
// Redrive would all move to per-key consumers created and expired as
// keys come and go, and Receive would rotate over them, a request each.
// What onebox does instead is keep the turns before the broker: its jobs
// reach JetStream from the store's outbox (jobs/sqlite, jobs/postgres,
// which take turns) through a jobs.Relay, and RelayOptions.Ahead lets
// only a few of a kind wait here, so a job waits for those and its turn
// in the outbox rather than for every job relayed before it
// (TestRelayAheadKeepsTurns). Jobs sent here directly get no turns.
package nats

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"onebox/jobs"
)

// Options configure New.
type Options struct {
	// Stream names the jobs stream; the others are named after it.
	// Default "JOBS".
	Stream string
	// Prefix of the subjects. Default "onebox".
	Prefix string
	// MaxDeliver caps the deliveries of a kind's messages: set it one
	// above the kind's jobs.KindOptions.MaxAttempts, so the Runner
	// dead-letters a message whose workers died before the last delivery,
	// and JetStream's advisory catches a worker dying on that one.
	// Kinds not in it: DefaultMaxDeliver.
	MaxDeliver map[string]int
	// DefaultMaxDeliver, for kinds not in MaxDeliver. Default 6: the
	// Runner's default 5 attempts, plus one.
	DefaultMaxDeliver int
	// Duplicates is S's duplicate window: a message id sent again within
	// it is dropped (jobs.IDSender). Set it above the outbox relay's
	// worst resend delay. Default 2m.
	Duplicates time.Duration
	// Replicas of every stream. Default 1.
	Replicas int
	// Storage of every stream. Default file; tests use memory.
	Storage jetstream.StorageType
	// Logger reports messages dead-lettered because their body does not
	// decode. Default: discard.
	Logger *slog.Logger
}

// Queue is a jobs.Queue on JetStream. It is safe for concurrent use.
type Queue struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	o   Options
	log *slog.Logger

	jobs, dead, marks, adv jetstream.Stream

	mu        sync.Mutex
	collector jetstream.Consumer  // of S_ADV, once made
	consumers map[string]consumer // by kind
	held      map[string]held     // received here, by id
}

// held is a delivery received here: the handle that settles it, its
// lease and until when this process may use it (see Leases above).
type held struct {
	msg      jetstream.Msg
	lease    string
	deadline time.Time
}

// leaseMargin is how long before the end of AckWait a lease stops being
// used: the time an ack may take to reach the server.
func leaseMargin(visibility time.Duration) time.Duration { return visibility / 10 }

type consumer struct {
	c          jetstream.Consumer
	visibility time.Duration
}

var (
	_ jobs.Queue         = (*Queue)(nil)
	_ jobs.IDSender      = (*Queue)(nil)
	_ jobs.BatchIDSender = (*Queue)(nil)
)

// New creates or updates the streams and returns a Queue on nc.
func New(ctx context.Context, nc *nats.Conn, o Options) (*Queue, error) {
	if o.Stream == "" {
		o.Stream = "JOBS"
	}
	if o.Prefix == "" {
		o.Prefix = "onebox"
	}
	if o.DefaultMaxDeliver <= 0 {
		o.DefaultMaxDeliver = 6
	}
	if o.Duplicates <= 0 {
		o.Duplicates = 2 * time.Minute
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(asyncAckTimeout))
	if err != nil {
		return nil, fmt.Errorf("jobs/nats: %w", err)
	}
	q := &Queue{nc: nc, js: js, o: o, log: o.Logger, consumers: map[string]consumer{}, held: map[string]held{}}
	cfgs := []struct {
		s   *jetstream.Stream
		cfg jetstream.StreamConfig
	}{
		{&q.jobs, jetstream.StreamConfig{Name: o.Stream, Subjects: []string{o.Prefix + ".jobs.>"}, Retention: jetstream.WorkQueuePolicy, Duplicates: o.Duplicates}},
		{&q.dead, jetstream.StreamConfig{Name: o.Stream + "_DEAD", Subjects: []string{o.Prefix + ".dead.>"}, Duplicates: o.Duplicates}},
		{&q.marks, jetstream.StreamConfig{Name: o.Stream + "_MARKS", Subjects: []string{o.Prefix + ".mark.>"}, MaxMsgsPerSubject: 1, MaxAge: 14 * 24 * time.Hour}},
		{&q.adv, jetstream.StreamConfig{Name: o.Stream + "_ADV", Subjects: []string{"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + o.Stream + ".*"}}},
	}
	for _, c := range cfgs {
		c.cfg.Replicas, c.cfg.Storage = o.Replicas, o.Storage
		s, err := js.CreateOrUpdateStream(ctx, c.cfg)
		if err != nil {
			return nil, fmt.Errorf("jobs/nats: stream %s: %w", c.cfg.Name, err)
		}
		*c.s = s
	}
	return q, nil
}

// Delete removes the streams and what they hold: for tests.
func (q *Queue) Delete(ctx context.Context) error {
	var errs []error
	for _, s := range []jetstream.Stream{q.jobs, q.dead, q.marks, q.adv} {
		errs = append(errs, q.js.DeleteStream(ctx, s.CachedInfo().Config.Name))
	}
	return errors.Join(errs...)
}

func token(kind string) string { return base64.RawURLEncoding.EncodeToString([]byte(kind)) }

func untoken(tok string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	return string(b), err == nil
}

func (q *Queue) jobSubject(kind string) string  { return q.o.Prefix + ".jobs." + token(kind) }
func (q *Queue) deadSubject(kind string) string { return q.o.Prefix + ".dead." + token(kind) }
func (q *Queue) markSubject(kind, id string) string {
	return q.o.Prefix + ".mark." + token(kind) + "." + id
}

// notBefore is the header of a delayed message: Unix milliseconds.
const notBefore = "Onebox-Not-Before"

// Send enqueues m. A delay becomes a not-before header; a priority fails
// with errors.ErrUnsupported.
func (q *Queue) Send(ctx context.Context, m jobs.Message, o jobs.SendOptions) error {
	return q.send(ctx, "", m, o)
}

// SendID enqueues m with id as JetStream's message id: a second send of
// the same id within the duplicate window is dropped.
func (q *Queue) SendID(ctx context.Context, id string, m jobs.Message, o jobs.SendOptions) error {
	if id == "" {
		return errors.New("jobs/nats send: empty message id")
	}
	return q.send(ctx, id, m, o)
}

func (q *Queue) send(ctx context.Context, id string, m jobs.Message, o jobs.SendOptions) error {
	msg, opts, err := q.jobMsg(id, m, o)
	if err != nil {
		return err
	}
	if _, err := q.js.PublishMsg(ctx, msg, opts...); err != nil {
		return fmt.Errorf("jobs/nats send: %w", err)
	}
	return nil
}

// jobMsg is the stream message of m, with id as its message id if set.
func (q *Queue) jobMsg(id string, m jobs.Message, o jobs.SendOptions) (*nats.Msg, []jetstream.PublishOpt, error) {
	if o.Priority != 0 {
		return nil, nil, fmt.Errorf("jobs/nats send: priority %d: %w", o.Priority, errors.ErrUnsupported)
	}
	body, err := jobs.Encode(m)
	if err != nil {
		return nil, nil, err
	}
	msg := nats.NewMsg(q.jobSubject(m.Kind))
	msg.Data = body
	if o.Delay > 0 {
		msg.Header.Set(notBefore, strconv.FormatInt(time.Now().Add(o.Delay).UnixMilli(), 10))
	}
	var opts []jetstream.PublishOpt
	if id != "" {
		opts = append(opts, jetstream.WithMsgID(id))
	}
	return msg, opts, nil
}

// sendWindow bounds the publishes of one SendIDs awaiting the server's
// confirmation: the next goes out as the oldest is confirmed.
const sendWindow = 256

// asyncAckTimeout is how long an asynchronous publish waits for the
// server's confirmation before it fails, as a synchronous one does by
// default: a confirmation lost on the way must not hold SendIDs until
// its context ends, nor leave the publish pending in the client.
const asyncAckTimeout = 5 * time.Second

// SendIDs publishes ms without waiting for each confirmation, at most
// sendWindow awaiting one at a time, each with its id as JetStream's
// message id, and returns each one's outcome once all are known or ctx
// is done.
func (q *Queue) SendIDs(ctx context.Context, ms []jobs.IDMessage) []error {
	errs := make([]error, len(ms))
	pending := make([]jetstream.PubAckFuture, len(ms))
	wait := func(i int) {
		f := pending[i]
		if f == nil {
			return
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs[i] = fmt.Errorf("jobs/nats send %s: %w", ms[i].ID, err)
		case <-ctx.Done():
			errs[i] = fmt.Errorf("jobs/nats send %s: %w", ms[i].ID, ctx.Err())
		}
	}
	for i, im := range ms {
		if i >= sendWindow {
			wait(i - sendWindow)
		}
		if im.ID == "" {
			errs[i] = errors.New("jobs/nats send: empty message id")
			continue
		}
		if err := ctx.Err(); err != nil {
			errs[i] = fmt.Errorf("jobs/nats send %s: %w", im.ID, err)
			continue
		}
		msg, opts, err := q.jobMsg(im.ID, im.Message, im.Options)
		if err != nil {
			errs[i] = err
			continue
		}
		if pending[i], err = q.js.PublishMsgAsync(msg, opts...); err != nil {
			errs[i] = fmt.Errorf("jobs/nats send %s: %w", im.ID, err)
		}
	}
	for i := max(len(ms)-sendWindow, 0); i < len(ms); i++ {
		wait(i)
	}
	return errs
}

// consumer returns kind's durable consumer, creating or updating it on
// the kind's first Receive in this process with AckWait visibility.
func (q *Queue) consumer(ctx context.Context, kind string, visibility time.Duration) (jetstream.Consumer, error) {
	q.mu.Lock()
	c, ok := q.consumers[kind]
	q.mu.Unlock()
	if ok {
		if c.visibility != visibility {
			return nil, fmt.Errorf("kind %q has visibility %v, not %v: it is the kind's, its consumer's AckWait", kind, c.visibility, visibility)
		}
		return c.c, nil
	}
	maxDeliver := q.o.DefaultMaxDeliver
	if n, ok := q.o.MaxDeliver[kind]; ok && n > 0 {
		maxDeliver = n
	}
	// JetStream wants AckWait of at least a millisecond.
	cons, err := q.jobs.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       "k-" + token(kind),
		FilterSubject: q.jobSubject(kind),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       max(visibility, time.Millisecond),
		MaxDeliver:    maxDeliver,
		MaxAckPending: -1,
	})
	if err != nil {
		return nil, err
	}
	q.mu.Lock()
	q.consumers[kind] = consumer{c: cons, visibility: visibility}
	q.mu.Unlock()
	return cons, nil
}

// mark is the state of a job that its message cannot carry.
type mark struct {
	Until     time.Time `json:"until,omitzero"` // waits until then: a retry or a delay
	LastError string    `json:"last_error,omitempty"`
	Deferrals int       `json:"deferrals,omitempty"` // early deliveries put back
}

func (q *Queue) readMark(ctx context.Context, kind, id string) (mark, error) {
	raw, err := q.marks.GetLastMsgForSubject(ctx, q.markSubject(kind, id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return mark{}, nil
	}
	if err != nil {
		return mark{}, err
	}
	var mk mark
	if err := json.Unmarshal(raw.Data, &mk); err != nil {
		return mark{}, err
	}
	return mk, nil
}

func (q *Queue) writeMark(ctx context.Context, kind, id string, mk mark) error {
	b, err := json.Marshal(mk)
	if err != nil {
		return err
	}
	_, err = q.js.Publish(ctx, q.markSubject(kind, id), b)
	return err
}

// Receive takes up to max messages of kind that are available now.
func (q *Queue) Receive(ctx context.Context, kind string, max int, visibility time.Duration) ([]jobs.Message, error) {
	if kind == "" {
		return nil, errors.New("jobs/nats receive: empty kind")
	}
	if max <= 0 {
		return nil, nil
	}
	cons, err := q.consumer(ctx, kind, visibility)
	if err != nil {
		return nil, fmt.Errorf("jobs/nats receive: %w", err)
	}
	// The lease ends AckWait from before the fetch: the server's timer
	// starts when it delivers, later.
	deadline := time.Now().Add(visibility - leaseMargin(visibility))
	batch, err := cons.FetchNoWait(max)
	if err != nil {
		return nil, fmt.Errorf("jobs/nats receive: %w", err)
	}
	var out []jobs.Message
	for msg := range batch.Messages() {
		meta, err := msg.Metadata()
		if err != nil {
			return out, fmt.Errorf("jobs/nats receive: %w", err)
		}
		id := strconv.FormatUint(meta.Sequence.Stream, 10)
		attempt := int(meta.NumDelivered)
		if nb := msg.Headers().Get(notBefore); nb != "" {
			if ms, err := strconv.ParseInt(nb, 10, 64); err == nil {
				// Early deliveries are not attempts.
				mk, err := q.readMark(ctx, kind, id)
				if err != nil {
					return out, fmt.Errorf("jobs/nats receive: %w", err)
				}
				if wait := time.Until(time.UnixMilli(ms)); wait > 0 {
					mk.Deferrals++
					mk.Until = time.UnixMilli(ms)
					if err := q.writeMark(ctx, kind, id, mk); err != nil {
						return out, fmt.Errorf("jobs/nats receive: %w", err)
					}
					if err := q.reply(ctx, msg, nakDelay(wait)); err != nil {
						return out, fmt.Errorf("jobs/nats receive: %w", err)
					}
					continue
				}
				attempt -= mk.Deferrals
			}
		}
		lease := strconv.FormatUint(meta.NumDelivered, 10)
		q.mu.Lock()
		q.held[id] = held{msg: msg, lease: lease, deadline: deadline}
		q.mu.Unlock()
		m, err := jobs.Decode(msg.Data())
		m.ID, m.Attempt, m.Lease = id, attempt, lease
		if err != nil {
			m.Kind = kind
			q.log.ErrorContext(ctx, "jobs: dead-lettering a malformed message", "job_id", id, "kind", kind, "error", err)
			if err := q.deadLetter(ctx, m.Receipt(), m, msg.Data(), err.Error()); err != nil {
				q.log.ErrorContext(ctx, "jobs: dead-letter malformed message", "job_id", id, "error", err)
			}
			continue
		}
		out = append(out, m)
	}
	if err := batch.Error(); err != nil {
		return out, fmt.Errorf("jobs/nats receive: %w", err)
	}
	return out, nil
}

// Ack bodies: JetStream's acknowledgement protocol.
var (
	ackOK         = []byte("+ACK")
	ackProgress   = []byte("+WPI")
	ackNak        = []byte("-NAK")
	ackTerminated = []byte("+TERM")
)

func nakDelay(d time.Duration) []byte {
	if d <= 0 {
		return ackNak
	}
	return []byte(fmt.Sprintf(`-NAK {"delay":%d}`, max(d, time.Millisecond).Nanoseconds()))
}

// reply sends an acknowledgement and waits for the server's answer, so
// what follows (a Stats, another Receive) sees it applied.
func (q *Queue) reply(ctx context.Context, msg jetstream.Msg, body []byte) error {
	_, err := q.nc.RequestWithContext(ctx, msg.Reply(), body)
	return err
}

// take returns the handle of the delivery r names, if it was received
// here and its lease is still this process's to use: jobs.ErrNotFound if
// no delivery of it is held here, jobs.ErrLeaseLost if a later one is,
// or if the lease's deadline has passed. With forget the handle of r's
// delivery is forgotten, lost or not: the call settles the message, or
// nothing may. Without, a lapsed lease stays held, refused, until the
// call that settles it.
func (q *Queue) take(r jobs.Receipt, forget bool) (held, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	h, ok := q.held[r.ID]
	switch {
	case !ok:
		return held{}, jobs.ErrNotFound
	case h.lease != r.Lease:
		return held{}, jobs.ErrLeaseLost
	}
	if forget {
		delete(q.held, r.ID)
	}
	if !time.Now().Before(h.deadline) {
		return held{}, jobs.ErrLeaseLost
	}
	return h, nil
}

// Extend is an in-progress ack, which restarts the kind's AckWait; 0 is a
// negative ack, which makes the message available at once.
func (q *Queue) Extend(ctx context.Context, r jobs.Receipt, visibility time.Duration) error {
	h, err := q.take(r, visibility <= 0)
	if err != nil {
		return fmt.Errorf("jobs/nats extend %s: %w", r.ID, err)
	}
	body := ackProgress
	if visibility <= 0 {
		body = ackNak
	}
	sent := time.Now()
	if err := q.reply(ctx, h.msg, body); err != nil {
		return fmt.Errorf("jobs/nats extend %s: %w", r.ID, err)
	}
	if visibility > 0 {
		// The server restarted AckWait when the ack reached it, after
		// sent.
		q.mu.Lock()
		if cur, ok := q.held[r.ID]; ok && cur.lease == r.Lease {
			cur.deadline = sent.Add(visibility - leaseMargin(visibility))
			q.held[r.ID] = cur
		}
		q.mu.Unlock()
	}
	return nil
}

// ackParallel bounds the acks of one Ack under way at once: each waits
// for the server's answer, and the Runner acks in batches of hundreds.
const ackParallel = 32

// Ack acks the messages received here, each waiting for the server. An
// id whose ack failed is held again, so a later Ack can retry it. Those
// whose lease was lost are not acked and are listed in a
// *jobs.LeaseLostError.
func (q *Queue) Ack(ctx context.Context, rs ...jobs.Receipt) error {
	var (
		mu   sync.Mutex
		errs []error
		lost []string
		g    errgroup.Group
	)
	g.SetLimit(ackParallel)
	for _, r := range rs {
		h, err := q.take(r, true)
		if errors.Is(err, jobs.ErrLeaseLost) {
			lost = append(lost, r.ID)
			continue
		}
		if err != nil {
			continue
		}
		g.Go(func() error {
			if err := q.reply(ctx, h.msg, ackOK); err != nil {
				q.mu.Lock()
				if _, ok := q.held[r.ID]; !ok {
					q.held[r.ID] = h
				}
				q.mu.Unlock()
				mu.Lock()
				errs = append(errs, fmt.Errorf("jobs/nats ack %s: %w", r.ID, err))
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	if len(lost) > 0 {
		errs = append(errs, &jobs.LeaseLostError{IDs: lost})
	}
	return errors.Join(errs...)
}

// Retry records lastErr in the message's mark, then naks it with the
// delay until at.
func (q *Queue) Retry(ctx context.Context, r jobs.Receipt, at time.Time, lastErr string) error {
	h, err := q.take(r, true)
	if err != nil {
		return fmt.Errorf("jobs/nats retry %s: %w", r.ID, err)
	}
	kind := kindOf(h.msg.Subject())
	mk, err := q.readMark(ctx, kind, r.ID)
	if err == nil {
		mk.LastError, mk.Until = lastErr, at
		err = q.writeMark(ctx, kind, r.ID, mk)
	}
	if err == nil {
		err = q.reply(ctx, h.msg, nakDelay(time.Until(at)))
	}
	if err != nil {
		return fmt.Errorf("jobs/nats retry %s: %w", r.ID, err)
	}
	return nil
}

// kindOf is the kind of a subject p.jobs.<kind> or p.dead.<kind>.
func kindOf(subject string) string {
	kind, _ := untoken(subject[strings.LastIndexByte(subject, '.')+1:])
	return kind
}

// deadRecord is a dead letter in S_DEAD.
type deadRecord struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	Body      []byte    `json:"body"` // the job's message, as sent
	LastError string    `json:"last_error"`
	Attempts  int       `json:"attempts"`
	DiedAt    time.Time `json:"died_at"`
}

// DeadLetter publishes the dead letter, then terminates the message.
func (q *Queue) DeadLetter(ctx context.Context, r jobs.Receipt, reason string) error {
	h, err := q.take(r, false)
	if errors.Is(err, jobs.ErrLeaseLost) {
		_, _ = q.take(r, true) // forget a lapsed lease: nothing here may settle it now
	}
	if err != nil {
		return fmt.Errorf("jobs/nats dead-letter %s: %w", r.ID, err)
	}
	meta, err := h.msg.Metadata()
	if err != nil {
		return fmt.Errorf("jobs/nats dead-letter %s: %w", r.ID, err)
	}
	m := jobs.Message{ID: r.ID, Kind: kindOf(h.msg.Subject()), Attempt: int(meta.NumDelivered)}
	return q.deadLetter(ctx, r, m, h.msg.Data(), reason)
}

func (q *Queue) deadLetter(ctx context.Context, r jobs.Receipt, m jobs.Message, body []byte, reason string) error {
	id := r.ID
	h, err := q.take(r, true)
	if err != nil {
		return fmt.Errorf("jobs/nats dead-letter %s: %w", id, err)
	}
	msg := h.msg
	mk, err := q.readMark(ctx, m.Kind, id)
	if err != nil {
		return fmt.Errorf("jobs/nats dead-letter %s: %w", id, err)
	}
	if reason == "" {
		reason = mk.LastError
	}
	rec := deadRecord{ID: id, Kind: m.Kind, Body: body, LastError: reason, Attempts: m.Attempt - mk.Deferrals, DiedAt: time.Now()}
	if err := q.publishDead(ctx, rec); err != nil {
		return fmt.Errorf("jobs/nats dead-letter %s: %w", id, err)
	}
	if err := q.reply(ctx, msg, ackTerminated); err != nil {
		// The dead letter is out; the message comes back, and dies again
		// under the same message id, which the dead stream drops.
		return fmt.Errorf("jobs/nats dead-letter %s: %w", id, err)
	}
	return nil
}

// publishDead publishes rec once: its message id is the job's sequence,
// so a second dead letter for the same message within the duplicate
// window is dropped.
func (q *Queue) publishDead(ctx context.Context, rec deadRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = q.js.Publish(ctx, q.deadSubject(rec.Kind), b, jetstream.WithMsgID("dead-"+rec.ID))
	return err
}

// advisory is the part of JetStream's max-deliveries advisory used here.
type advisory struct {
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// collect turns captured max-deliveries advisories into dead letters: the
// message stays in S, undeliverable, until it is moved.
func (q *Queue) collect(ctx context.Context) error {
	q.mu.Lock()
	cons := q.collector
	q.mu.Unlock()
	if cons == nil {
		var err error
		cons, err = q.adv.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "collector", AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			return err
		}
		q.mu.Lock()
		q.collector = cons
		q.mu.Unlock()
	}
	for {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			return err
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			var a advisory
			if err := json.Unmarshal(msg.Data(), &a); err != nil {
				_ = msg.Term()
				continue
			}
			raw, err := q.jobs.GetMsg(ctx, a.StreamSeq)
			switch {
			case errors.Is(err, jetstream.ErrMsgNotFound):
			case err != nil:
				return err
			default:
				id := strconv.FormatUint(a.StreamSeq, 10)
				kind := kindOf(raw.Subject)
				rec := deadRecord{ID: id, Kind: kind, Body: raw.Data, Attempts: int(a.Deliveries), DiedAt: time.Now(),
					LastError: fmt.Sprintf("delivered %d times, its consumer's MaxDeliver: every worker that received it died or lost it", a.Deliveries)}
				if mk, err := q.readMark(ctx, kind, id); err == nil {
					rec.Attempts -= mk.Deferrals
				}
				if err := q.publishDead(ctx, rec); err != nil {
					return err
				}
				if err := q.jobs.DeleteMsg(ctx, a.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
					return err
				}
			}
			if err := msg.DoubleAck(ctx); err != nil {
				return err
			}
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if n < 100 {
			return nil
		}
	}
}

// Stats counts per kind from the streams' per-subject counts and the
// consumers' pending acks. In flight is pending acks less those waiting
// by their mark for a retry or a delay. A message whose visibility lapsed
// stays in flight until it is delivered again: JetStream counts it among
// the pending acks until then.
func (q *Queue) Stats(ctx context.Context) (jobs.Stats, error) {
	if err := q.collect(ctx); err != nil {
		return jobs.Stats{}, fmt.Errorf("jobs/nats stats: %w", err)
	}
	now := time.Now()
	st := jobs.Stats{Kinds: map[string]jobs.KindStats{}}
	totals, err := subjectCounts(ctx, q.jobs, q.o.Prefix+".jobs.>")
	if err != nil {
		return jobs.Stats{}, fmt.Errorf("jobs/nats stats: %w", err)
	}
	marks, err := subjectCounts(ctx, q.marks, q.o.Prefix+".mark.>")
	if err != nil {
		return jobs.Stats{}, fmt.Errorf("jobs/nats stats: %w", err)
	}
	waiting := map[string]int{}
	for subj := range marks {
		parts := strings.Split(subj, ".")
		kind, _ := untoken(parts[len(parts)-2])
		if totals[q.jobSubject(kind)] == 0 {
			continue
		}
		mk, err := q.readMark(ctx, kind, parts[len(parts)-1])
		if err != nil {
			return jobs.Stats{}, fmt.Errorf("jobs/nats stats: %w", err)
		}
		if mk.Until.After(now) {
			waiting[kind]++
		}
	}
	for subj, total := range totals {
		kind := kindOf(subj)
		ks := jobs.KindStats{Queued: int(total)}
		info, err := q.jobs.Consumer(ctx, "k-"+token(kind))
		if err == nil {
			ci, err := info.Info(ctx)
			if err != nil {
				return jobs.Stats{}, fmt.Errorf("jobs/nats stats: %w", err)
			}
			ks.InFlight = max(ci.NumAckPending-waiting[kind], 0)
			ks.Queued -= ks.InFlight
		} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return jobs.Stats{}, fmt.Errorf("jobs/nats stats: %w", err)
		}
		if raw, err := q.jobs.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subj)); err == nil {
			ks.OldestAge = max(now.Sub(raw.Time), 0)
		}
		st.Kinds[kind] = ks
	}
	dead, err := subjectCounts(ctx, q.dead, q.o.Prefix+".dead.>")
	if err != nil {
		return jobs.Stats{}, fmt.Errorf("jobs/nats stats: %w", err)
	}
	for subj, n := range dead {
		kind := kindOf(subj)
		ks := st.Kinds[kind]
		ks.Dead = int(n)
		st.Kinds[kind] = ks
	}
	return st, nil
}

func subjectCounts(ctx context.Context, s jetstream.Stream, filter string) (map[string]uint64, error) {
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, err
	}
	return info.State.Subjects, nil
}

// deadEntry is a dead record with its sequence in S_DEAD.
type deadEntry struct {
	seq uint64
	rec deadRecord
}

// deadRecords reads every dead letter, oldest first.
func (q *Queue) deadRecords(ctx context.Context) ([]deadEntry, error) {
	if err := q.collect(ctx); err != nil {
		return nil, err
	}
	info, err := q.dead.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	cons, err := q.dead.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	var out []deadEntry
	for uint64(len(out)) < info.State.Msgs {
		batch, err := cons.Fetch(int(info.State.Msgs)-len(out), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return nil, err
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			meta, err := msg.Metadata()
			if err != nil {
				return nil, err
			}
			var rec deadRecord
			if err := json.Unmarshal(msg.Data(), &rec); err != nil {
				return nil, err
			}
			out = append(out, deadEntry{seq: meta.Sequence.Stream, rec: rec})
			if meta.Sequence.Stream >= info.State.LastSeq {
				return out, batch.Error()
			}
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if n == 0 {
			break // deleted since Info
		}
	}
	return out, nil
}

// message is the dead letter as Dead lists it: a body that does not
// decode is listed with its kind and no payload.
func (e deadEntry) message() jobs.DeadMessage {
	m, err := jobs.Decode(e.rec.Body)
	if err != nil {
		m = jobs.Message{Kind: e.rec.Kind}
	}
	m.ID, m.Attempt = e.rec.ID, e.rec.Attempts
	return jobs.DeadMessage{Message: m, LastError: e.rec.LastError, DiedAt: e.rec.DiedAt}
}

// Dead lists the dead letters f matches, newest first.
func (q *Queue) Dead(ctx context.Context, f jobs.DeadFilter, limit int) ([]jobs.DeadMessage, error) {
	entries, err := q.deadRecords(ctx)
	if err != nil {
		return nil, fmt.Errorf("jobs/nats dead: %w", err)
	}
	out := []jobs.DeadMessage{}
	for _, e := range slices.Backward(entries) {
		if len(out) >= limit {
			break
		}
		if d := e.message(); f.Match(d) {
			out = append(out, d)
		}
	}
	return out, nil
}

// Redrive publishes the dead letters f matches back to S as new messages
// (new sequences, so new ids), each with a message id of its dead
// letter's, so two operators redriving at once send it once, then
// deletes the dead letter.
func (q *Queue) Redrive(ctx context.Context, f jobs.DeadFilter) (int, error) {
	entries, err := q.deadRecords(ctx)
	if err != nil {
		return 0, fmt.Errorf("jobs/nats redrive: %w", err)
	}
	n := 0
	for _, e := range entries {
		if !f.Match(e.message()) {
			continue
		}
		msg := nats.NewMsg(q.jobSubject(e.rec.Kind))
		msg.Data = e.rec.Body
		if _, err := q.js.PublishMsg(ctx, msg, jetstream.WithMsgID(fmt.Sprintf("redrive-%s-%d", q.dead.CachedInfo().Config.Name, e.seq))); err != nil {
			return n, fmt.Errorf("jobs/nats redrive: %w", err)
		}
		if err := q.dead.DeleteMsg(ctx, e.seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return n, fmt.Errorf("jobs/nats redrive: %w", err)
		}
		n++
	}
	return n, nil
}

// PruneDead deletes up to limit dead letters that died before before,
// oldest first. It reads every dead letter, as Dead does: retention is
// what keeps that set small.
func (q *Queue) PruneDead(ctx context.Context, before time.Time, limit int) (int, error) {
	entries, err := q.deadRecords(ctx)
	if err != nil {
		return 0, fmt.Errorf("jobs/nats prune dead: %w", err)
	}
	n := 0
	for _, e := range entries {
		if n >= limit {
			break
		}
		if !e.rec.DiedAt.Before(before) {
			continue
		}
		if err := q.dead.DeleteMsg(ctx, e.seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return n, fmt.Errorf("jobs/nats prune dead: %w", err)
		}
		n++
	}
	return n, nil
}

// PruneDeadBeyond deletes up to limit of the oldest dead letters beyond
// the newest keep with one purge of S_DEAD that keeps its newest
// messages: the server drops the rest, oldest first (the stream's order,
// which Dead lists backwards), and nothing is read. A dead letter that
// arrives between the count and the purge pushes one more old one out,
// uncounted; the newest keep stay.
func (q *Queue) PruneDeadBeyond(ctx context.Context, keep, limit int) (int, error) {
	if err := q.collect(ctx); err != nil {
		return 0, fmt.Errorf("jobs/nats prune dead beyond %d: %w", keep, err)
	}
	info, err := q.dead.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("jobs/nats prune dead beyond %d: %w", keep, err)
	}
	msgs := int(info.State.Msgs)
	n := min(limit, msgs-keep)
	if n <= 0 {
		return 0, nil
	}
	if err := q.dead.Purge(ctx, jetstream.WithPurgeKeep(uint64(msgs-n))); err != nil {
		return 0, fmt.Errorf("jobs/nats prune dead beyond %d: %w", keep, err)
	}
	return n, nil
}

// StreamName is the jobs stream's name (Options.Stream).
func (q *Queue) StreamName() string { return q.o.Stream }
