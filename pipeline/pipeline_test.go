package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"math"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"onebox/imaging"
	"onebox/jobs"
	"onebox/media"
	medialocal "onebox/media/local"
	notifymemory "onebox/notify/memory"
	"onebox/photos"
	"onebox/pipeline"
	"onebox/store"
	"onebox/store/sqlite"
)

// testPNG is a small opaque gradient followed by 1 MiB the decoder never
// reads (after IEND), so that the file weighs in its estimate: the
// worker holds the whole file while it decodes.
func testPNG(t *testing.T) []byte {
	t.Helper()
	m := image.NewRGBA(image.Rect(0, 0, 64, 48))
	for y := range 48 {
		for x := range 64 {
			m.Set(x, y, color.RGBA{uint8(4 * x), uint8(5 * y), 128, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return append(b.Bytes(), make([]byte, 1<<20)...)
}

// need is what the worker weighs data at.
func need(t *testing.T, data []byte) int64 {
	t.Helper()
	h, err := imaging.Probe(bytes.NewReader(data), 0)
	if err != nil {
		t.Fatal(err)
	}
	h.FileSize = int64(len(data))
	return h.DecodeBytes()
}

type env struct {
	store store.Store
	media media.Storage
	owner string
}

// newEnv is a real SQLite store and media directory with one user.
func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := sqlite.New(t.Context(), sqlite.Options{Path: t.TempDir() + "/test.db"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	med, err := medialocal.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	u, err := st.CreateUser(t.Context(), store.CreateUserParams{ID: "u1", Handle: "owner", DisplayName: "x", PasswordHash: "x", Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return &env{store: st, media: med, owner: u.ID}
}

// addPhoto stores data as an upload would and returns the processing
// photo's job message.
func (e *env) addPhoto(t *testing.T, id string, data []byte) jobs.Message {
	t.Helper()
	ctx := t.Context()
	orig := photos.OriginalKey(id)
	info, err := e.media.Put(ctx, orig, bytes.NewReader(data), "image/png")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	job := photos.ProcessJob(ctx, e.owner, id)
	_, _, err = e.store.CreatePhoto(ctx, store.CreatePhotoParams{
		Photo: store.Photo{ID: id, OwnerID: e.owner, Status: store.PhotoProcessing, OriginalKey: orig,
			ContentType: "image/png", Size: info.Size, CreatedAt: now, UpdatedAt: now},
		Job: job,
	})
	if err != nil {
		t.Fatal(err)
	}
	return job
}

func (e *env) photo(t *testing.T, id string) store.Photo {
	t.Helper()
	ph, err := e.store.Photo(t.Context(), store.PhotoParams{ID: id, Freshness: store.MustBeFresh})
	if err != nil {
		t.Fatal(err)
	}
	return ph
}

func newPipeline(e *env, m media.Storage, budget int64) *pipeline.Pipeline {
	return pipeline.New(e.store, m, nil, notifymemory.New(), slog.New(slog.DiscardHandler),
		pipeline.Options{MaxPixels: imaging.DefaultMaxPixels, DecodeMemory: budget})
}

// processCtx bounds a job that would otherwise wait forever for decode
// memory it can never get.
func processCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestDecodeMemoryAdmission: an image estimated above the whole budget is
// rejected for good (the job succeeds, so it is not retried, and nothing
// is decoded or published), whatever the upload's check said; one at
// exactly the budget is processed.
func TestDecodeMemoryAdmission(t *testing.T) {
	t.Parallel()
	data := testPNG(t)
	n := need(t, data)
	tests := []struct {
		name   string
		budget int64
		want   store.PhotoStatus
	}{
		{"over budget", n - 1, store.PhotoRejected},
		{"at budget", n, store.PhotoReady},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			msg := e.addPhoto(t, "p1", data)
			if err := newPipeline(e, e.media, tt.budget).Process(processCtx(t), msg); err != nil {
				t.Fatalf("Process = %v, want nil (a rejection is not retried)", err)
			}
			ph := e.photo(t, "p1")
			if ph.Status != tt.want {
				t.Fatalf("status %s (%q), want %s", ph.Status, ph.Reason, tt.want)
			}
			if tt.want != store.PhotoRejected {
				return
			}
			limit := fmt.Sprintf("; the limit is %d MiB", tt.budget>>20)
			if !strings.HasPrefix(ph.Reason, "this image needs about ") || !strings.HasSuffix(ph.Reason, limit) {
				t.Errorf("reason %q, want the need and the limit", ph.Reason)
			}
			if _, err := e.media.Open(t.Context(), photos.VariantKey("p1", "thumb", "image/jpeg")); !errors.Is(err, media.ErrNotFound) {
				t.Errorf("a variant of the rejected photo exists (%v)", err)
			}
		})
	}
}

// gatedMedia holds every decode at its first large read of the original
// (the pipeline probes the header in small reads, waits for decode
// memory, then decodes, reading the rest of the stream into a buffer
// sized to it), counting how many are inside at once.
type gatedMedia struct {
	media.Storage
	gate chan struct{} // closed: decodes go on

	mu            sync.Mutex
	inside, most  int
	entered, done int
}

func (g *gatedMedia) Open(ctx context.Context, key string) (media.Object, error) {
	o, err := g.Storage.Open(ctx, key)
	if err != nil || !strings.HasPrefix(key, "private/") {
		return o, err
	}
	return &gatedObject{Object: o, g: g}, nil
}

func (g *gatedMedia) counts() (inside, most int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inside, g.most
}

type gatedObject struct {
	media.Object
	g        *gatedMedia
	decoding bool
}

// decodeRead is a read the probe never makes: it reads through a 4 KiB
// bufio.Reader.
const decodeRead = 64 << 10

func (o *gatedObject) Read(p []byte) (int, error) {
	if len(p) >= decodeRead && !o.decoding {
		o.decoding = true
		o.g.mu.Lock()
		o.g.inside++
		o.g.most = max(o.g.most, o.g.inside)
		o.g.mu.Unlock()
		<-o.g.gate
	}
	n, err := o.Object.Read(p)
	if err == io.EOF && o.decoding {
		o.decoding = false
		o.g.mu.Lock()
		o.g.inside--
		o.g.mu.Unlock()
	}
	return n, err
}

// waitingForDecodeMemory counts goroutines parked in the decode
// semaphore: proof that a job was held back, not just slow to arrive.
func waitingForDecodeMemory() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("semaphore.(*Weighted).Acquire"))
}

// TestDecodesShareTheBudget: with room for two images' estimates, two
// decode at once and the third waits for one of them to finish.
func TestDecodesShareTheBudget(t *testing.T) {
	e := newEnv(t)
	data := testPNG(t)
	g := &gatedMedia{Storage: e.media, gate: make(chan struct{})}
	p := newPipeline(e, g, 2*need(t, data))
	ids := []string{"a", "b", "c"}
	errs := make(chan error, len(ids))
	ctx := processCtx(t)
	for _, id := range ids {
		msg := e.addPhoto(t, id, data)
		go func() { errs <- p.Process(ctx, msg) }()
	}
	opened := false
	defer func() {
		if !opened {
			close(g.gate)
		}
	}()
	// Two inside and one parked in the semaphore; or, if the budget did
	// not hold, all three inside.
	deadline := time.Now().Add(time.Minute)
	for {
		inside, _ := g.counts()
		if inside == 3 || inside == 2 && waitingForDecodeMemory() == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d decodes inside, %d waiting for memory, after a minute", inside, waitingForDecodeMemory())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if inside, _ := g.counts(); inside != 2 {
		t.Errorf("%d decodes at once with a budget for 2", inside)
	}
	close(g.gate)
	opened = true
	for range ids {
		if err := <-errs; err != nil {
			t.Errorf("Process = %v", err)
		}
	}
	if _, most := g.counts(); most != 2 {
		t.Errorf("at most %d decodes at once, want 2", most)
	}
	for _, id := range ids {
		if ph := e.photo(t, id); ph.Status != store.PhotoReady {
			t.Errorf("photo %s is %s (%q)", id, ph.Status, ph.Reason)
		}
	}
}

func TestDecodeBudget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		configured, memoryLimit, want int64
	}{
		{0, 512 << 20, 256 << 20},         // the default soft limit
		{0, 192 << 20, 96 << 20},          // ¾ of a 256 MiB cgroup
		{0, math.MaxInt64, 256 << 20},     // GOMEMLIMIT=off: half the default limit
		{100 << 20, 512 << 20, 100 << 20}, // configured
		{1 << 30, 512 << 20, 1 << 30},     // configured above the limit: the operator's call
	}
	for _, tt := range tests {
		if got := pipeline.DecodeBudget(tt.configured, tt.memoryLimit); got != tt.want {
			t.Errorf("DecodeBudget(%d, %d) = %d, want %d", tt.configured, tt.memoryLimit, got, tt.want)
		}
	}
}
