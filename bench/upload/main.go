// Command upload measures photo uploads against a running onebox: first
// the most POST /v1/photos per second a closed loop reaches, then, at a
// fixed arrival rate (open loop, a fraction of that maximum), the time from
// each 202 to the photo's "ready" event on the user's SSE stream.
//
//	go run ./bench/upload -url http://127.0.0.1:8080 -image testdata/images/formats/jpeg_gray_hopper.jpg
//	go run ./bench/upload -url http://127.0.0.1:8080 -generate 4032x3024
//	go run ./bench/upload -url http://127.0.0.1:8080 -pipeline -c 4 -d 30s
//
// The accept path outruns the pipeline, so an open loop at a fraction of
// the closed loop's accept rate only measures a growing backlog. With
// -pipeline each closed-loop connection waits for its photo's final event
// before it uploads the next: the loop's rate is then photos finished a
// second, the pipeline's sustainable rate (uploads included), and the open
// loop runs at -rate of that. -per-s sets the open loop's rate outright.
// The open loop's 202→ready percentiles are also given for the photos
// accepted in its first and its last third: a backlog that grows shows as
// a last third slower than the first.
//
// Every upload has one outcome, and every phase counts them all: accepted
// (202), then ready, rejected by the pipeline (moderation, decoding; with
// the reason), or timed out (still not finished -wait after the phase);
// or refused at upload (a 4xx: status, problem type and detail), or
// failed (a transport error or a 5xx). Each refusal, failure, rejection
// and time-out is printed as it is known. Latency percentiles are over the
// photos that became ready, and say so; the others are reported beside
// them, never left out silently. The exit status is 1 when any upload
// did not end ready.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"onebox/internal/testimages"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:8080", "onebox base URL")
	image := flag.String("image", "testdata/images/formats/jpeg_gray_hopper.jpg", "image file to upload")
	gen := flag.String("generate", "", "upload a generated photo-like JPEG of this size, WIDTHxHEIGHT (4032x3024: 12 MP), instead of -image")
	conc := flag.Int("c", 16, "closed-loop concurrency")
	dur := flag.Duration("d", 10*time.Second, "duration of each phase")
	frac := flag.Float64("rate", 0.8, "open-loop arrival rate as a fraction of the closed-loop maximum")
	wait := flag.Duration("wait", 5*time.Minute, "how long after a phase its accepted photos may take to finish before they count as timed out")
	pipe := flag.Bool("pipeline", false, "closed loop: each connection waits for its photo to finish before the next upload (the pipeline's sustainable rate, not the accept rate)")
	perS := flag.Float64("per-s", 0, "open-loop arrival rate in uploads a second (0: -rate of the closed loop's)")
	flag.Parse()
	data, err := input(*image, *gen)
	if err == nil {
		err = run(*base, data, options{conc: *conc, dur: *dur, frac: *frac, wait: *wait, pipeline: *pipe, perS: *perS})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "upload:", err)
		os.Exit(1)
	}
}

func input(path, gen string) ([]byte, error) {
	if gen == "" {
		return os.ReadFile(path)
	}
	w, h, err := testimages.ParseSize(gen)
	if err != nil {
		return nil, err
	}
	return testimages.PhotoJPEG(w, h, testimages.Photo12MPSeed, 90)
}

// errNotAllReady is run's answer when it measured, printed everything,
// and some upload did not end ready.
var errNotAllReady = errors.New("not every upload became ready (see above)")

// options are the command's flags.
type options struct {
	conc     int
	dur      time.Duration
	frac     float64
	wait     time.Duration
	pipeline bool
	perS     float64
}

func run(base string, data []byte, o options) error {
	conc, dur, frac, wait := o.conc, o.dur, o.frac, o.wait
	token, err := login(base)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc * 2}}

	// One stream for the whole run, opened before the first upload, so
	// every photo's last event is seen.
	ev := newEvents()
	sctx, stop := context.WithCancel(context.Background())
	defer stop()
	streamReady := make(chan struct{})
	go ev.follow(sctx, base, token, streamReady)
	<-streamReady

	// Phase 1: closed loop, as fast as the server answers.
	closed := newPhase("closed loop")
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	var wg sync.WaitGroup
	start := time.Now()
	var nfinished int // -pipeline: photos that finished within the phase
	var fmu sync.Mutex
	for range conc {
		wg.Go(func() {
			for ctx.Err() == nil {
				r := upload(client, base, token, data)
				closed.record(r)
				if !o.pipeline || r.status != http.StatusAccepted {
					continue
				}
				if ev.wait(ctx, r.id) {
					fmu.Lock()
					nfinished++
					fmu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	cancel()
	elapsed := time.Since(start)
	maxRate := float64(len(closed.accepted)) / elapsed.Seconds()
	if o.pipeline {
		maxRate = float64(nfinished) / elapsed.Seconds()
		fmt.Printf("closed loop to ready: %d connections for %s: %d photos finished, %.1f photos/s (the pipeline's sustainable rate)\n", conc, dur, nfinished, maxRate)
	} else {
		fmt.Printf("closed loop: %d connections for %s: %.0f uploads/s accepted\n", conc, dur, maxRate)
	}
	// Let the backlog of phase 1 drain before measuring latency; its
	// outcomes count too.
	closed.settle(client, base, token, ev, wait)
	closed.report(ev)
	if len(closed.accepted) == 0 {
		return errors.New("no upload was accepted")
	}

	// Phase 2: open loop at a fixed rate; the SSE stream reports readiness.
	open := newPhase("open loop")
	rate := maxRate * frac
	if o.perS > 0 {
		rate, frac = o.perS, o.perS/maxRate
	}
	// Upload i is due at start + i/rate. A late wake-up (a busy machine)
	// sends what fell due meanwhile at once, as arrivals that do not wait
	// for the server would, where a ticker would drop them.
	start = time.Now()
	var sent sync.WaitGroup
	for i := 0; ; i++ {
		due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if due.Sub(start) >= dur {
			break
		}
		time.Sleep(time.Until(due))
		sent.Go(func() { open.record(upload(client, base, token, data)) })
	}
	sent.Wait()
	fmt.Printf("open loop: %.1f uploads/s (%.0f%% of the maximum) for %s: %d sent\n", rate, frac*100, dur, open.sent)
	open.settle(client, base, token, ev, wait)
	lat := open.report(ev)
	var p50, p99 time.Duration
	if len(lat) > 0 {
		slices.Sort(lat)
		p50, p99 = quantile(lat, 0.5), quantile(lat, 0.99)
		fmt.Printf("  202→ready over the %d ready photos: p50 %s, p90 %s, p99 %s, max %s\n",
			len(lat), p50, quantile(lat, 0.9), p99, lat[len(lat)-1].Round(time.Millisecond))
	}
	// The same over the photos accepted in the first and the last third
	// of the open loop: equal when the pipeline keeps up.
	first := open.latencies(ev, start, start.Add(dur/3))
	last := open.latencies(ev, start.Add(2*dur/3), start.Add(dur))
	for _, t := range []struct {
		name string
		lat  []time.Duration
	}{{"first", first}, {"last", last}} {
		if len(t.lat) > 0 {
			fmt.Printf("  202→ready, %s third (%d photos): p50 %s, p99 %s\n", t.name, len(t.lat), quantile(t.lat, 0.5), quantile(t.lat, 0.99))
		}
	}
	thirds := func(lat []time.Duration, p float64) int64 {
		if len(lat) == 0 {
			return -1
		}
		return quantile(lat, p).Milliseconds()
	}
	// One line for scripts (bench/upload.sh sums several runs up).
	notReady := closed.notReady(ev) + open.notReady(ev)
	fmt.Printf("RESULT max_per_s=%.1f offered_per_s=%.1f ready_timed=%d not_ready=%d p50_ms=%d p99_ms=%d first_p50_ms=%d first_p99_ms=%d last_p50_ms=%d last_p99_ms=%d\n",
		maxRate, rate, len(lat), notReady, p50.Milliseconds(), p99.Milliseconds(),
		thirds(first, 0.5), thirds(first, 0.99), thirds(last, 0.5), thirds(last, 0.99))
	if notReady > 0 {
		return errNotAllReady
	}
	return nil
}

// quantile returns the p-quantile of lat, sorting it.
func quantile(lat []time.Duration, p float64) time.Duration {
	slices.Sort(lat)
	return lat[min(len(lat)-1, int(p*float64(len(lat))))].Round(time.Millisecond)
}

// result is one upload's answer.
type result struct {
	id     string    // on 202
	at     time.Time // when the answer came
	status int       // 0: no answer (transport error)
	kind   string    // the problem type of a refusal
	detail string    // the problem's detail, or the error
}

// phase counts the outcomes of one phase's uploads.
type phase struct {
	name     string
	mu       sync.Mutex
	sent     int
	accepted map[string]time.Time // id → when its 202 came
	refused  map[string]int       // "status type" → count, 4xx answers
	failed   int                  // transport errors and 5xx answers
	timedOut []string             // accepted, not finished after the wait
	late     map[string]string    // accepted, finished, event not seen: id → status
}

func newPhase(name string) *phase {
	return &phase{name: name, accepted: map[string]time.Time{}, refused: map[string]int{}, late: map[string]string{}}
}

func (p *phase) record(r result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent++
	switch {
	case r.status == http.StatusAccepted:
		p.accepted[r.id] = r.at
	case r.status >= 400 && r.status < 500:
		p.refused[fmt.Sprintf("%d %s", r.status, r.kind)]++
		fmt.Printf("  %s: refused at upload: %d %s: %s\n", p.name, r.status, r.kind, r.detail)
	default:
		p.failed++
		fmt.Printf("  %s: failed: status %d %s: %s\n", p.name, r.status, r.kind, r.detail)
	}
}

// settle waits until every accepted photo has finished on the stream, at
// most wait; then asks the API about each that has not: one that finished
// without its event being seen is late, one still processing timed out.
func (p *phase) settle(client *http.Client, base, token string, ev *events, wait time.Duration) {
	ids := slices.Collect(maps.Keys(p.accepted))
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) && ev.unfinished(ids) > 0 {
		time.Sleep(100 * time.Millisecond)
	}
	for _, id := range ids {
		if _, ok := ev.final(id); ok {
			continue
		}
		status, reason, err := getPhoto(client, base, token, id)
		switch {
		case err != nil:
			p.timedOut = append(p.timedOut, id)
			fmt.Printf("  %s: timed out: photo %s: no event in %s, and GET failed: %v\n", p.name, id, wait, err)
		case status == "processing":
			p.timedOut = append(p.timedOut, id)
			fmt.Printf("  %s: timed out: photo %s still processing %s after the phase\n", p.name, id, wait)
		default:
			p.late[id] = status
			fmt.Printf("  %s: photo %s is %s %s, but its event was not seen (no latency)\n", p.name, id, status, reason)
		}
	}
}

// report prints the phase's outcomes and returns the 202→ready latencies.
func (p *phase) report(ev *events) []time.Duration {
	var lat []time.Duration
	rejected := map[string]int{}
	for id, t0 := range p.accepted {
		f, ok := ev.final(id)
		switch {
		case !ok:
		case f.status == "ready":
			lat = append(lat, max(f.at.Sub(t0), 0))
		default:
			rejected[f.reason]++
			fmt.Printf("  %s: photo %s %s: %s\n", p.name, id, f.status, f.reason)
		}
	}
	var refused, nrejected, lateReady int
	for _, n := range p.refused {
		refused += n
	}
	for _, n := range rejected {
		nrejected += n
	}
	for _, s := range p.late {
		if s == "ready" {
			lateReady++
		}
	}
	fmt.Printf("  %s: %d sent: %d accepted, %d refused at upload, %d failed; of the accepted: %d ready, %d rejected, %d timed out",
		p.name, p.sent, len(p.accepted), refused, p.failed, len(lat)+lateReady, nrejected+len(p.late)-lateReady, len(p.timedOut))
	if lateReady > 0 {
		fmt.Printf(" (%d of the ready without their event, so without a latency)", lateReady)
	}
	fmt.Println()
	for _, k := range slices.Sorted(maps.Keys(p.refused)) {
		fmt.Printf("    refused %s: %d\n", k, p.refused[k])
	}
	for _, k := range slices.Sorted(maps.Keys(rejected)) {
		fmt.Printf("    rejected %q: %d\n", k, rejected[k])
	}
	return lat
}

// latencies returns the 202→ready times of the phase's photos whose 202
// came in [from, to).
func (p *phase) latencies(ev *events, from, to time.Time) []time.Duration {
	var lat []time.Duration
	for id, t0 := range p.accepted {
		if t0.Before(from) || !t0.Before(to) {
			continue
		}
		if f, ok := ev.final(id); ok && f.status == "ready" {
			lat = append(lat, max(f.at.Sub(t0), 0))
		}
	}
	return lat
}

// notReady counts the phase's uploads that did not end ready: refused,
// failed, rejected, timed out.
func (p *phase) notReady(ev *events) int {
	n := p.sent
	for id := range p.accepted {
		if f, ok := ev.final(id); ok && f.status == "ready" || p.late[id] == "ready" {
			n--
		}
	}
	return n
}

// events holds the last state of every photo the stream reported
// finished: ready or rejected.
type events struct {
	mu      sync.Mutex
	done    map[string]finished
	waiters map[string]chan struct{} // closed when the id finishes
}

type finished struct {
	status, reason string
	at             time.Time
}

func newEvents() *events {
	return &events{done: map[string]finished{}, waiters: map[string]chan struct{}{}}
}

// wait returns true once id has finished, false if ctx ends first.
func (e *events) wait(ctx context.Context, id string) bool {
	e.mu.Lock()
	if _, ok := e.done[id]; ok {
		e.mu.Unlock()
		return true
	}
	ch, ok := e.waiters[id]
	if !ok {
		ch = make(chan struct{})
		e.waiters[id] = ch
	}
	e.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

func (e *events) final(id string) (finished, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f, ok := e.done[id]
	return f, ok
}

func (e *events) unfinished(ids []string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, id := range ids {
		if _, ok := e.done[id]; !ok {
			n++
		}
	}
	return n
}

// follow reads /v1/users/me/events until ctx ends, reconnecting with
// Last-Event-ID when the stream ends (the server closes streams after an
// hour, or on shutdown), and closes ready once the first stream answers.
func (e *events) follow(ctx context.Context, base, token string, ready chan<- struct{}) {
	var last string
	once := sync.OnceFunc(func() { close(ready) })
	defer once()
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/users/me/events", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				fmt.Printf("  event stream: %v; reconnecting\n", err)
			}
			once()
			time.Sleep(time.Second)
			continue
		}
		if res.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<10))
			res.Body.Close()
			fmt.Printf("  event stream: status %d: %s; reconnecting\n", res.StatusCode, b)
			once()
			time.Sleep(time.Second)
			continue
		}
		once()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
				last = id
				continue
			}
			line, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var p struct{ ID, Status, Reason string }
			if json.Unmarshal([]byte(line), &p) != nil || p.ID == "" || p.Status == "processing" {
				continue
			}
			e.mu.Lock()
			if _, seen := e.done[p.ID]; !seen {
				e.done[p.ID] = finished{status: p.Status, reason: p.Reason, at: time.Now()}
				if ch, ok := e.waiters[p.ID]; ok {
					close(ch)
					delete(e.waiters, p.ID)
				}
			}
			e.mu.Unlock()
		}
		res.Body.Close()
	}
}

func login(base string) (string, error) {
	handle := fmt.Sprintf("bench%d", time.Now().UnixNano()%1_000_000_000)
	body := `{"handle":"` + handle + `","password":"correct horse"}`
	for _, path := range []string{"/v1/users", "/v1/sessions"} {
		res, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			return "", err
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			return "", fmt.Errorf("%s: %d %s", path, res.StatusCode, b)
		}
		if path == "/v1/sessions" {
			var s struct{ Token string }
			if err := json.Unmarshal(b, &s); err != nil {
				return "", err
			}
			return s.Token, nil
		}
	}
	return "", errors.New("unreachable")
}

func upload(client *http.Client, base, token string, data []byte) result {
	req, _ := http.NewRequest("POST", base+"/v1/photos", bytes.NewReader(data))
	req.Header.Set("Content-Type", "image/jpeg")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := client.Do(req)
	if err != nil {
		return result{at: time.Now(), detail: err.Error()}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	r := result{at: time.Now(), status: res.StatusCode}
	if err != nil {
		r.status, r.detail = 0, "reading the answer: "+err.Error()
		return r
	}
	if res.StatusCode == http.StatusAccepted {
		var a struct{ ID string }
		if err := json.Unmarshal(b, &a); err != nil || a.ID == "" {
			r.status, r.detail = 0, fmt.Sprintf("202 without an id: %.200s", b)
		}
		r.id = a.ID
		return r
	}
	var p struct{ Type, Title, Detail string }
	if json.Unmarshal(b, &p) == nil && p.Type != "" {
		r.kind, r.detail = p.Type, cmp.Or(p.Detail, p.Title)
	} else {
		r.kind, r.detail = "(not problem+json)", fmt.Sprintf("%.200s", b)
	}
	if ra := res.Header.Get("Retry-After"); ra != "" {
		r.detail += " (Retry-After " + ra + ")"
	}
	return r
}

// getPhoto asks the API for a photo's status and reason.
func getPhoto(client *http.Client, base, token, id string) (status, reason string, err error) {
	req, _ := http.NewRequest("GET", base+"/v1/photos/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := client.Do(req)
	if err != nil {
		return "", "", err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", "", errors.New("status " + strconv.Itoa(res.StatusCode))
	}
	var p struct{ Status, Reason string }
	if err := json.NewDecoder(res.Body).Decode(&p); err != nil {
		return "", "", err
	}
	return p.Status, p.Reason, nil
}
