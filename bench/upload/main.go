// Command upload measures photo uploads against a running onebox: first
// the most POST /v1/photos per second a closed loop reaches, then, at a
// fixed arrival rate (open loop, a fraction of that maximum), the time from
// each 202 to the photo's "ready" event on the user's SSE stream.
//
//	go run ./bench/upload -url http://127.0.0.1:8080 -image testdata/images/formats/jpeg_gray_hopper.jpg
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:8080", "onebox base URL")
	image := flag.String("image", "", "image file to upload")
	conc := flag.Int("c", 16, "closed-loop concurrency")
	dur := flag.Duration("d", 10*time.Second, "duration of each phase")
	frac := flag.Float64("rate", 0.8, "open-loop arrival rate as a fraction of the closed-loop maximum")
	flag.Parse()
	if err := run(*base, *image, *conc, *dur, *frac); err != nil {
		fmt.Fprintln(os.Stderr, "upload:", err)
		os.Exit(1)
	}
}

func run(base, image string, conc int, dur time.Duration, frac float64) error {
	data, err := os.ReadFile(image)
	if err != nil {
		return err
	}
	token, err := login(base)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc * 2}}

	// Phase 1: closed loop, as fast as the server answers.
	var ok, failed atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := upload(client, base, token, data); err != nil {
					failed.Add(1)
				} else {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	cancel()
	maxRate := float64(ok.Load()) / time.Since(start).Seconds()
	fmt.Printf("closed loop: %d uploads accepted in %s with %d connections: %.0f uploads/s (%d failed)\n",
		ok.Load(), dur, conc, maxRate, failed.Load())
	if ok.Load() == 0 {
		return errors.New("no upload was accepted")
	}

	// Let the backlog of phase 1 drain before measuring latency.
	if err := waitIdle(client, base, token); err != nil {
		return err
	}

	// Phase 2: open loop at a fixed rate; the SSE stream reports readiness.
	rate := maxRate * frac
	readyAt := make(map[string]time.Time)
	var mu sync.Mutex
	sctx, stop := context.WithCancel(context.Background())
	defer stop()
	streamReady := make(chan struct{})
	go stream(sctx, base, token, streamReady, func(id, status string) {
		if status != "ready" && status != "rejected" {
			return
		}
		mu.Lock()
		if _, seen := readyAt[id]; !seen {
			readyAt[id] = time.Now()
		}
		mu.Unlock()
	})
	<-streamReady
	accepted := map[string]time.Time{}
	var amu sync.Mutex
	interval := time.Duration(float64(time.Second) / rate)
	tick := time.NewTicker(interval)
	end := time.Now().Add(dur)
	var sent sync.WaitGroup
	for now := range tick.C {
		if now.After(end) {
			break
		}
		sent.Go(func() {
			id, err := upload(client, base, token, data)
			if err != nil {
				failed.Add(1)
				return
			}
			amu.Lock()
			accepted[id] = time.Now()
			amu.Unlock()
		})
	}
	tick.Stop()
	sent.Wait()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := 0
		for id := range accepted {
			if _, ok := readyAt[id]; ok {
				n++
			}
		}
		mu.Unlock()
		if n == len(accepted) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var lat []time.Duration
	mu.Lock()
	for id, t0 := range accepted {
		if t1, ok := readyAt[id]; ok {
			lat = append(lat, max(t1.Sub(t0), 0))
		}
	}
	mu.Unlock()
	if len(lat) == 0 {
		return errors.New("no photo became ready")
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	fmt.Printf("open loop: %.0f uploads/s offered (%.0f%% of max) for %s: %d accepted, %d ready; 202→ready p50 %s, p99 %s, max %s\n",
		rate, frac*100, dur, len(accepted), len(lat), q(0.5).Round(time.Millisecond), q(0.99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	return nil
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

func upload(client *http.Client, base, token string, data []byte) (string, error) {
	req, _ := http.NewRequest("POST", base+"/v1/photos", bytes.NewReader(data))
	req.Header.Set("Content-Type", "image/jpeg")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("status %d: %s", res.StatusCode, b)
	}
	var a struct{ ID string }
	err = json.Unmarshal(b, &a)
	return a.ID, err
}

// waitIdle waits until the user's newest photos are no longer processing.
func waitIdle(client *http.Client, base, token string) error {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", base+"/v1/users/me/photos?limit=100", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := client.Do(req)
		if err != nil {
			return err
		}
		var page struct{ Items []struct{ Status string } }
		err = json.NewDecoder(res.Body).Decode(&page)
		res.Body.Close()
		if err != nil {
			return err
		}
		busy := slices.ContainsFunc(page.Items, func(p struct{ Status string }) bool { return p.Status == "processing" })
		if !busy {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return errors.New("the backlog did not drain in 5 minutes")
}

// stream follows /v1/users/me/events and calls seen for each photo event.
func stream(ctx context.Context, base, token string, ready chan<- struct{}, seen func(id, status string)) {
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/users/me/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		close(ready)
		return
	}
	defer res.Body.Close()
	close(ready)
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var ev struct{ ID, Status string }
		if json.Unmarshal([]byte(line), &ev) == nil && ev.ID != "" {
			seen(ev.ID, ev.Status)
		}
	}
}
