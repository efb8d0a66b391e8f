package dashboard_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"onebox/ops/dashboard"
)

// TestPageInBrowser loads the dashboard in headless Chromium while a
// stand-in process serves traffic: the panels fill in from the polls,
// an incident shows up in place, and the console stays clean (so the
// strict CSP holds: a violation is a console error).
func TestPageInBrowser(t *testing.T) {
	t.Parallel()
	exe, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed")
		}
		t.Skip("chromium is not installed; the browser test runs in CI")
	}
	q, _ := deadQueue(t, [3]string{"photo.process", "decode: timeout", `{"photo":"p1"}`})
	p := newProc(t, dashboard.Options{
		Dead: q,
		Now:  time.Now, Interval: 100 * time.Millisecond, Recent: time.Second, Window: 30 * time.Second, Token: "s3cret",
		Thresholds: dashboard.Thresholds{QueueGrowth: time.Second, QueueOldest: time.Second},
	})
	ctx, stop := context.WithCancel(context.Background())
	var slow atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() { p.d.Run(ctx) })
	wg.Go(func() {
		for n := 1; ctx.Err() == nil; n++ {
			if slow.Load() {
				p.slowDatabase(n)
			} else {
				p.normal()
			}
			time.Sleep(50 * time.Millisecond) // the pace of the stand-in traffic
		}
	})
	t.Cleanup(func() { stop(); wg.Wait() })
	srv := httptest.NewServer(p.d.Handler())
	t.Cleanup(srv.Close)

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), chromedp.ExecPath(exe), chromedp.Headless,
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1400, 1000))
	bctx, cancel := chromedp.NewContext(alloc)
	if err := chromedp.Do(bctx); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var problems []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range chromedp.Console(bctx) {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				mu.Lock()
				problems = append(problems, m.String())
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); cancelAlloc(); <-done })

	step := func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			text, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.body.innerText`))
			t.Fatalf("%s: %v\n%s", name, err, text)
		}
	}
	until := func(expr string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(25*time.Second)))
			return err
		})
	}

	step("the page loads", chromedp.Navigate(srv.URL+"/ops/?token=s3cret"), chromedp.WaitVisible(chromedp.ID("panel-http")))
	first, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById('updated').textContent`))
	if err != nil {
		t.Fatal(err)
	}
	step("the polls update the panels",
		until(`document.getElementById('updated').textContent !== `+jsString(first)),
		until(`document.querySelector('#panel-http .headline .value').textContent.endsWith('/s')`),
		until(`document.querySelector('#panel-http [data-key="http.p95"] path').getAttribute('d').includes('L')`),
		until(`document.querySelector('#panel-database .badge').textContent === 'healthy'`),
		until(`document.getElementById('incident').hidden`))

	step("the dead letters are listed, and one redriven",
		until(`document.querySelectorAll('#dead-list tbody tr').length === 1`),
		until(`document.getElementById('dead-kinds').textContent === 'photo.process 1 dead'`),
		until(`document.querySelector('#dead-list tbody tr').textContent.includes('decode: timeout')`),
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true; document.querySelector('#dead-list tbody button').click()`),
		until(`document.getElementById('dead-result').textContent === '1 job(s) back in the queue'`),
		until(`document.getElementById('dead-none').textContent === 'no dead jobs match' && document.getElementById('dead-list').hidden`))

	slow.Store(true)
	step("the incident shows",
		until(`!document.getElementById('incident').hidden`),
		until(`document.querySelector('#root strong')?.textContent === 'Database'`),
		until(`document.querySelector('#panel-database').classList.contains('s-failing')`),
		until(`[...document.querySelectorAll('#downstream li')].some(li => li.textContent.includes('jobs wait on the database'))`))

	if dir := os.Getenv("ONEBOX_SCREENSHOT_DIR"); dir != "" {
		if png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)); err == nil {
			os.WriteFile(filepath.Join(dir, "ops.png"), png, 0o644)
		}
	}
	mu.Lock()
	got := slices.Clone(problems)
	mu.Unlock()
	if len(got) > 0 {
		t.Fatalf("console errors:\n%s", strings.Join(got, "\n"))
	}
	// The check above would see a CSP violation: an inline style is one.
	step("a violation reaches the console",
		chromedp.Evaluate[chromedp.Void](`document.body.insertAdjacentHTML('beforeend', '<p style="color: red">x</p>')`),
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			for ctx.Err() == nil {
				mu.Lock()
				seen := slices.ContainsFunc(problems, func(m string) bool { return strings.Contains(m, "Content Security Policy") })
				mu.Unlock()
				if seen {
					return nil
				}
				time.Sleep(20 * time.Millisecond) // polling what the console goroutine collected
			}
			return errors.New("no CSP violation reported for an inline style")
		}))
}

func jsString(s string) string { return "'" + strings.ReplaceAll(s, "'", `\'`) + "'" }
