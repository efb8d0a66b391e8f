// Package pipeline is the photo pipeline's job: decode the original,
// orient it, moderate it, publish the variants and mark the photo ready
// (or rejected), then wake whoever watches. Every step is idempotent, so a
// job retried after a crash at any point ends with the same files and
// rows. The names it shares with the API (job kinds and payloads, topics,
// media keys) live in package photos; the API never imports this one.
package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"time"

	"golang.org/x/sync/semaphore"

	"onebox/imaging"
	"onebox/jobs"
	"onebox/media"
	"onebox/moderation"
	"onebox/notify"
	"onebox/photos"
	"onebox/store"
)

// Options tune the pipeline.
type Options struct {
	MaxPixels   int64 // refuse larger images (the upload checks too)
	JPEGQuality int
	// DecodeMemory bounds the bytes all concurrent decodes may hold (each
	// weighs imaging.Header.DecodeBytes), so a burst of large uploads
	// waits instead of exhausting memory; an image that would need more
	// than all of it is rejected. 0 is DecodeBudget(0, the soft memory
	// limit in effect).
	DecodeMemory int64
	Now          func() time.Time
	// OnStep, if set, is called after each step of a photo (StepDecode,
	// StepModerate, StepVariants, StepPublish) with the job's context and
	// how long the step took, for metrics and tracing. It must be quick.
	OnStep func(ctx context.Context, step string, d time.Duration)
}

// The steps of a photo job that OnStep reports.
const (
	StepDecode   = "decode"   // read the header, wait for decode memory, decode and orient
	StepModerate = "moderate" // the moderator's verdict
	StepVariants = "variants" // resize and encode every variant
	StepPublish  = "publish"  // write the variants to media storage
)

// DefaultDecodeMemory is the decode budget when no soft memory limit is
// set (GOMEMLIMIT=off): half of onebox's default limit of 512 MiB.
const DefaultDecodeMemory = 256 << 20

// DecodeBudget returns the decode memory budget: configured if it is
// positive, else half of memoryLimit, the Go soft memory limit in effect
// (ops.TuneGC's), or DefaultDecodeMemory when there is none.
// The other half is the rest of the process's: its caches, requests, and
// the garbage the collector has not yet reclaimed.
func DecodeBudget(configured, memoryLimit int64) int64 {
	if configured > 0 {
		return configured
	}
	if memoryLimit <= 0 || memoryLimit == math.MaxInt64 {
		return DefaultDecodeMemory
	}
	return memoryLimit / 2
}

// Pipeline runs the photo jobs.
type Pipeline struct {
	store     store.Store
	media     media.Storage
	moderator moderation.Moderator
	hub       notify.Hub
	log       *slog.Logger
	opts      Options
	decodes   *semaphore.Weighted
}

// New returns a Pipeline. moderator may be nil (no moderation).
func New(st store.Store, m media.Storage, mod moderation.Moderator, hub notify.Hub, log *slog.Logger, o Options) *Pipeline {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.DecodeMemory <= 0 {
		o.DecodeMemory = DecodeBudget(0, debug.SetMemoryLimit(-1))
	}
	return &Pipeline{store: st, media: m, moderator: mod, hub: hub, log: log, opts: o, decodes: semaphore.NewWeighted(o.DecodeMemory)}
}

// Process is the jobs.Handler of photos.KindProcess.
func (p *Pipeline) Process(ctx context.Context, m jobs.Message) error {
	var pl photos.ProcessPayload
	if err := json.Unmarshal(m.Payload, &pl); err != nil || pl.PhotoID == "" {
		return fmt.Errorf("%w: bad payload %q", jobs.ErrPermanent, m.Payload)
	}
	ph, err := p.store.Photo(ctx, store.PhotoParams{ID: pl.PhotoID, Freshness: store.MustBeFresh})
	if errors.Is(err, store.ErrNotFound) {
		return nil // deleted before we got to it; its cleanup job removes the original
	}
	if err != nil {
		return err
	}
	if ph.Status != store.PhotoProcessing {
		return nil // finished by an earlier attempt
	}
	log := p.log.With("request_id", m.RequestID, "job_id", m.ID, "kind", m.Kind, "attempt", m.Attempt, "photo_id", ph.ID)

	variants, width, height, reason, err := p.render(ctx, ph)
	if err != nil {
		return err
	}
	params := store.FinishPhotoParams{ID: ph.ID, Status: store.PhotoReady, Width: width, Height: height, Variants: variants, Now: p.opts.Now().UTC()}
	if reason != "" {
		params = store.FinishPhotoParams{ID: ph.ID, Status: store.PhotoRejected, Reason: reason, Now: p.opts.Now().UTC()}
	}
	done, err := p.store.FinishPhoto(ctx, params)
	if errors.Is(err, store.ErrNotFound) {
		// Deleted while we worked: its cleanup job listed no variants, so
		// remove what we published.
		return p.media.Delete(ctx, keys(variants)...)
	}
	if err != nil {
		return err
	}
	log.LogAttrs(ctx, slog.LevelInfo, "photo finished", slog.String("status", string(done.Status)), slog.String("reason", done.Reason))
	if err := p.hub.Publish(ctx, photos.UserTopic(ph.OwnerID)); err != nil {
		log.Warn("notify failed; clients catch up by polling", "err", err)
	}
	return nil
}

// GiveUp is the KindOptions.OnDead of photos.KindProcess: a photo whose
// job is dead-lettered (its attempts used up, by errors or by workers that
// died on it) is rejected, with a reason that says so, instead of staying
// "processing" for good; its owner is told. A photo already finished or
// deleted is left as it is, so it may run twice.
func (p *Pipeline) GiveUp(ctx context.Context, m jobs.Message, reason string) error {
	var pl photos.ProcessPayload
	if err := json.Unmarshal(m.Payload, &pl); err != nil || pl.PhotoID == "" {
		return nil // no photo to tell about
	}
	ph, err := p.store.FinishPhoto(ctx, store.FinishPhotoParams{
		ID: pl.PhotoID, Status: store.PhotoRejected, Now: p.opts.Now().UTC(),
		Reason: "it could not be processed; the operators have been told",
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	p.log.WarnContext(ctx, "photo given up", "request_id", m.RequestID, "job_id", m.ID, "photo_id", ph.ID, "status", ph.Status, "why", reason)
	if err := p.hub.Publish(ctx, photos.UserTopic(ph.OwnerID)); err != nil {
		p.log.Warn("notify failed; clients catch up by polling", "err", err)
	}
	return nil
}

// render decodes, moderates and publishes. A non-empty reason means the
// photo is rejected (not an error: retrying would not change it).
func (p *Pipeline) render(ctx context.Context, ph store.Photo) (vs []store.Variant, w, h int, reason string, err error) {
	obj, err := p.media.Open(ctx, ph.OriginalKey)
	if err != nil {
		return nil, 0, 0, "", fmt.Errorf("open original: %w", err)
	}
	defer obj.Close()
	step := p.step(ctx, StepDecode)
	// One stream, no seek (a bucket object cannot): Probe reads the
	// header through rec, which keeps the bytes, and Decode reads them
	// again followed by the rest of the same stream: one GET, no temp
	// file, and only the header held twice.
	rec := &recorder{r: obj}
	hdr, err := imaging.Probe(rec, p.opts.MaxPixels)
	if err == nil {
		// Checked again here, not only at upload: the budget may have
		// shrunk since (a smaller memory limit, another configuration).
		hdr.FileSize = obj.Info().Size
		err = hdr.CheckMemory(p.opts.DecodeMemory)
	}
	if reason := rejection(err); reason != "" {
		return nil, 0, 0, reason, nil
	}
	if err != nil {
		return nil, 0, 0, "", err
	}
	need := hdr.DecodeBytes() // at most the whole budget, checked above
	if err := p.decodes.Acquire(ctx, need); err != nil {
		return nil, 0, 0, "", err
	}
	defer p.decodes.Release(need)

	img, err := imaging.Decode(ctx, rec.replay(obj.Info().Size), p.opts.MaxPixels)
	step.done()
	if reason := rejection(err); reason != "" {
		return nil, 0, 0, reason, nil
	}
	if err != nil {
		return nil, 0, 0, "", err
	}
	if p.moderator != nil {
		step = p.step(ctx, StepModerate)
		v, err := p.moderator.Moderate(ctx, img.Pixels)
		step.done()
		if err != nil {
			return nil, 0, 0, "", fmt.Errorf("moderate: %w", err)
		}
		if !v.Allowed {
			return nil, 0, 0, v.Reason, nil
		}
	}
	step = p.step(ctx, StepVariants)
	outs, err := imaging.Variants(ctx, img, imaging.Options{JPEGQuality: p.opts.JPEGQuality})
	step.done()
	if err != nil {
		return nil, 0, 0, "", err
	}
	step = p.step(ctx, StepPublish)
	defer step.done()
	for _, o := range outs {
		key := photos.VariantKey(ph.ID, o.Name, o.ContentType)
		info, err := p.media.Put(ctx, key, bytes.NewReader(o.Data), o.ContentType)
		if err != nil {
			return nil, 0, 0, "", fmt.Errorf("publish %s: %w", key, err)
		}
		vs = append(vs, store.Variant{Name: o.Name, Key: key, Width: o.Width, Height: o.Height, Size: info.Size, ContentType: o.ContentType})
	}
	return vs, img.Width, img.Height, "", nil
}

// stepTimer reports one step to Options.OnStep; without the hook it
// does not read the clock.
type stepTimer struct {
	p     *Pipeline
	ctx   context.Context
	name  string
	start time.Time
}

func (p *Pipeline) step(ctx context.Context, name string) stepTimer {
	if p.opts.OnStep == nil {
		return stepTimer{}
	}
	return stepTimer{p: p, ctx: ctx, name: name, start: time.Now()}
}

func (s stepTimer) done() {
	if s.p != nil {
		s.p.opts.OnStep(s.ctx, s.name, time.Since(s.start))
	}
}

// rejection returns the user-facing reason if err means the file itself
// is unacceptable.
func rejection(err error) string {
	var re *imaging.RejectError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ""
}

func keys(vs []store.Variant) []string {
	ks := make([]string, len(vs))
	for i, v := range vs {
		ks[i] = v.Key
	}
	return ks
}

// Cleanup is the jobs.Handler of photos.KindCleanup: it removes the files of
// deleted photos. Deleting a missing file is fine, so it is idempotent.
func (p *Pipeline) Cleanup(ctx context.Context, m jobs.Message) error {
	var pl photos.CleanupPayload
	if err := json.Unmarshal(m.Payload, &pl); err != nil {
		return fmt.Errorf("%w: bad payload %q", jobs.ErrPermanent, m.Payload)
	}
	return p.media.Delete(ctx, pl.Keys...)
}

// recorder keeps the bytes read through it, so that they can be read
// again without seeking.
type recorder struct {
	r   io.Reader
	buf bytes.Buffer
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.buf.Write(p[:n])
	return n, err
}

// replay returns the recorded bytes followed by the rest of the stream,
// of size bytes in all, as a reader that tells how many are left (Len),
// so that Decode sizes its buffer once.
func (r *recorder) replay(size int64) *sizedReader {
	return &sizedReader{r: io.MultiReader(bytes.NewReader(r.buf.Bytes()), r.r), left: size}
}

type sizedReader struct {
	r    io.Reader
	left int64
}

func (s *sizedReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.left -= int64(n)
	return n, err
}

// Len is the bytes left, as bytes.Reader's Len.
func (s *sizedReader) Len() int { return int(max(s.left, 0)) }
