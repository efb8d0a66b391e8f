package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"onebox/store"
	"onebox/store/sqlite"
)

// The drill's Litestream timing: it looks at the WAL every
// monitorInterval and ships what it found every syncInterval, so a
// commit reaches the replica within their sum (litestream.yml's).
const (
	syncInterval    = time.Second
	monitorInterval = 100 * time.Millisecond
	recoveryPoint   = syncInterval + monitorInterval
)

// TestDisasterDrill is README's restore, done for real: under a stream
// of sign-ups, profile edits and uploads, with Litestream replicating
// the database and ONEBOX_MEDIA_BACKUP_DIR copying the media, onebox and
// Litestream are killed with SIGKILL and the data directory is deleted.
// Then, as README says: litestream restore, copy the media back, onebox
// reconcile -sweep, start. It checks the integrity of the database, that
// every write acknowledged more than the recovery point before the kill
// is there (an edit: that one or a later one), and that every upload
// answered 202 has its original in the media copy (the media's recovery
// point is zero) and, if its row is there (always, if it was acknowledged
// before the recovery point), ends ready with its variants served.
func TestDisasterDrill(t *testing.T) {
	litestream := litestreamBin(t, "no disaster drill")
	t.Parallel()
	root := t.TempDir()
	data, replica, mediaCopy := filepath.Join(root, "data"), filepath.Join(root, "replica"), filepath.Join(root, "media-copy")
	db := filepath.Join(data, "onebox.db")
	config := writeLitestreamConfig(t, filepath.Join(root, "litestream.yml"), db, replica)
	photo, err := os.ReadFile(filepath.Join("testdata", "images", "formats", "jpeg_baseline_testorig.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	env := []string{
		"ONEBOX_MEDIA_BACKUP_DIR=" + mediaCopy,
		"ONEBOX_RATE_AUTH=100000/1m", "ONEBOX_RATE_AUTH_HANDLE=100000/1m", "ONEBOX_RATE_UPLOAD=100000/1m",
	}

	c := startChild(t, data, env...)
	ls := startLitestream(t, litestream, config, replica)
	load := runLoad(c.base, photo, 3*time.Second, 60*time.Second)
	killAt := time.Now()
	c.kill()
	ls.kill()
	acked := load.wait()
	t.Logf("load: %d sign-ups, %d edits, %d uploads acknowledged; the kill came %s into it", len(acked.users), acked.edits, len(acked.photos), killAt.Sub(acked.start).Round(time.Millisecond))
	if len(acked.photos) == 0 || acked.edits == 0 {
		t.Fatalf("the load acknowledged too little to check; the workers ended with %v", acked.stopped)
	}
	// Media: every upload answered 202 has its original in the copy.
	for _, ph := range acked.photos {
		if _, err := os.Stat(filepath.Join(mediaCopy, "private", "originals", ph.id)); err != nil {
			t.Errorf("upload %s was answered 202 but its original is not in the media copy: %v", ph.id, err)
		}
	}

	// The disaster, and the restore as README says it.
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	lap := func() time.Duration { d := time.Since(start); start = time.Now(); return d.Round(time.Millisecond) }
	mustRun(t, litestream, "restore", "-config", config, "-if-replica-exists", db)
	tLitestream := lap()
	if err := os.MkdirAll(filepath.Join(data, "media"), 0o750); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "cp", "-a", mediaCopy+"/.", filepath.Join(data, "media"))
	tMedia := lap()
	var out, errOut bytes.Buffer
	lookup := func(k string) (string, bool) {
		if k == "ONEBOX_DATA_DIR" {
			return data, true
		}
		if k == "ONEBOX_MEDIA_BACKUP_DIR" {
			return mediaCopy, true
		}
		return "", false
	}
	if err := run(t.Context(), []string{"reconcile", "-sweep", "-grace", "0s"}, lookup, &out, &errOut); err != nil {
		t.Fatalf("onebox reconcile: %v\n%s%s", err, out.String(), errOut.String())
	}
	tReconcile := lap()
	t.Logf("onebox reconcile:\n%s", lastLines(out.String(), 3))
	if !strings.Contains(out.String(), " 0 reprocessed, 0 lost,") {
		t.Errorf("reconcile found photos without their files, which the media copy should have held:\n%s", out.String())
	}
	c = startChild(t, data, env...)
	tStart := lap()
	t.Logf("restore: %s (litestream restore %s, media copy %s, reconcile %s, start until ready %s)",
		tLitestream+tMedia+tReconcile+tStart, tLitestream, tMedia, tReconcile, tStart)

	restored := checkRestored(t, db, acked, killAt)
	// Every upload whose row is there ends ready, its variants served.
	lostRows := 0
	defer func() {
		t.Logf("%d of %d uploads ready; %d, answered within the recovery point, lost with their rows", len(acked.photos)-lostRows, len(acked.photos), lostRows)
	}()
	for _, ph := range acked.photos {
		if !restored[ph.id] {
			lostRows++
			continue // within the database's recovery point (checkRestored); reconcile swept its original
		}
		var p struct {
			Status   string `json:"status"`
			Variants []struct {
				URL string `json:"url"`
			} `json:"variants"`
		}
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
			if err := json.Unmarshal(get(t, c.base+"/v1/photos/"+ph.id, ph.token).body, &p); err != nil {
				t.Fatal(err)
			}
			if p.Status != "processing" || time.Now().After(deadline) {
				break
			}
		}
		if p.Status != "ready" || len(p.Variants) == 0 {
			t.Errorf("upload %s after the restore: %s with %d variants, want ready", ph.id, p.Status, len(p.Variants))
			continue
		}
		for _, v := range p.Variants {
			if res := get(t, c.base+v.URL, ""); res.status != http.StatusOK {
				t.Errorf("variant %s of %s: %d", v.URL, ph.id, res.status)
			}
		}
	}
}

// checkRestored opens the restored database beside the running service
// and checks its integrity and every write acknowledged more than the
// recovery point before killAt; it logs the oldest write it lost, and
// returns which uploads' rows it found.
func checkRestored(t *testing.T, path string, acked ackedWrites, killAt time.Time) (restored map[string]bool) {
	t.Helper()
	restored = map[string]bool{} // of each acknowledged upload, whether its row is there
	st, err := sqlite.New(t.Context(), sqlite.Options{Path: path, ReadConns: 1, NoCreate: true, SkipMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.IntegrityCheck(t.Context()); err != nil {
		t.Fatal(err)
	}
	var oldestLost time.Duration // before the kill
	lost := func(what string, at time.Time) {
		age := killAt.Sub(at)
		oldestLost = max(oldestLost, age)
		if age > recoveryPoint {
			t.Errorf("%s, acknowledged %s before the kill, is lost", what, age.Round(time.Millisecond))
		}
	}
	for _, u := range acked.users {
		got, err := st.User(t.Context(), store.UserParams{ID: u.id, Freshness: store.MustBeFresh})
		if errors.Is(err, store.ErrNotFound) {
			lost("sign-up "+u.id, u.at)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := strconv.Atoi(got.Bio); n < u.edit {
			lost(fmt.Sprintf("edit %d of %s (restored: %q)", u.edit, u.id, got.Bio), u.editAt)
		}
	}
	for _, ph := range acked.photos {
		_, err := st.Photo(t.Context(), store.PhotoParams{ID: ph.id, Freshness: store.MustBeFresh})
		if errors.Is(err, store.ErrNotFound) {
			lost("upload "+ph.id, ph.at)
			restored[ph.id] = false
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		restored[ph.id] = true
	}
	t.Logf("integrity check ok; the oldest write lost was acknowledged %s before the kill (recovery point %s)", oldestLost.Round(time.Millisecond), recoveryPoint)
	return restored
}

// litestreamProcess is `litestream replicate` on the drill's config.
type litestreamProcess struct {
	cmd *exec.Cmd
	log *bytes.Buffer
}

// startLitestream starts replicating and waits for its first copy of
// the database in the replica.
func startLitestream(t *testing.T, bin, config, replica string) *litestreamProcess {
	t.Helper()
	p := &litestreamProcess{cmd: exec.Command(bin, "replicate", "-config", config), log: &bytes.Buffer{}}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() })
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if entries, _ := os.ReadDir(replica); len(entries) > 0 {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("litestream wrote no replica; log:\n%s", p.log)
		}
	}
}

func (p *litestreamProcess) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

// ackedWrites are the writes onebox acknowledged, with when the answer
// came (after the commit).
type ackedWrites struct {
	start  time.Time
	users  []ackedUser
	edits  int
	photos []ackedPhoto
	// stopped are the errors that ended workers: the kill's, in flight.
	stopped []error
}

type ackedUser struct {
	id     string
	at     time.Time
	edit   int // the last acknowledged edit: bio is its number
	editAt time.Time
}

type ackedPhoto struct {
	id, token string
	at        time.Time
}

type loadRun struct {
	mu    sync.Mutex
	acked ackedWrites
	wg    sync.WaitGroup
}

// runLoad starts workers that each sign up a user, log in, edit the
// profile and upload a photo, over and over, until the process dies. It
// returns, with the workers still writing, once at least minFor has
// passed and enough writes were acknowledged long enough ago for the
// checks to mean something (a loaded machine under -race may take far
// longer than minFor to get there), or after maxFor, whichever is first.
func runLoad(base string, photo []byte, minFor, maxFor time.Duration) *loadRun {
	l := &loadRun{acked: ackedWrites{start: time.Now()}}
	for w := range 3 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; time.Since(l.acked.start) < maxFor+time.Minute; i++ {
				if err := l.session(base, fmt.Sprintf("drill_%d_%d", w, i), photo); err != nil {
					l.mu.Lock()
					l.acked.stopped = append(l.acked.stopped, err)
					l.mu.Unlock()
					return // the kill
				}
			}
		}()
	}
	time.Sleep(minFor)
	for time.Since(l.acked.start) < maxFor && !l.enough() {
		time.Sleep(100 * time.Millisecond)
	}
	return l
}

// enough: an edit and an upload acknowledged more than twice the
// recovery point ago, so the drill checks writes it must have kept.
func (l *loadRun) enough() bool {
	old := time.Now().Add(-2 * recoveryPoint)
	l.mu.Lock()
	defer l.mu.Unlock()
	photos, edits := 0, 0
	for _, ph := range l.acked.photos {
		if ph.at.Before(old) {
			photos++
		}
	}
	for _, u := range l.acked.users {
		if u.edit > 0 && u.editAt.Before(old) {
			edits++
		}
	}
	return photos > 0 && edits > 0
}

func (l *loadRun) wait() ackedWrites {
	l.wg.Wait()
	return l.acked
}

// session is one user's writes; it returns the first error.
func (l *loadRun) session(base, handle string, photo []byte) error {
	creds := fmt.Sprintf(`{"handle":%q,"password":"correct horse"}`, handle)
	var u struct {
		ID string `json:"id"`
	}
	if err := send("POST", base+"/v1/users", "", "application/json", strings.NewReader(creds), http.StatusCreated, &u); err != nil {
		return err
	}
	l.mu.Lock()
	l.acked.users = append(l.acked.users, ackedUser{id: u.ID, at: time.Now()})
	i := len(l.acked.users) - 1
	l.mu.Unlock()
	var s struct {
		Token string `json:"token"`
	}
	if err := send("POST", base+"/v1/sessions", "", "application/json", strings.NewReader(creds), http.StatusCreated, &s); err != nil {
		return err
	}
	for edit := 1; edit <= 3; edit++ {
		if err := send("PATCH", base+"/v1/users/me", s.Token, "application/merge-patch+json", strings.NewReader(fmt.Sprintf(`{"bio":"%d"}`, edit)), http.StatusOK, nil); err != nil {
			return err
		}
		l.mu.Lock()
		l.acked.users[i].edit, l.acked.users[i].editAt = edit, time.Now()
		l.acked.edits++
		l.mu.Unlock()
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "photo.jpg")
	fw.Write(photo)
	mw.Close()
	var ph struct {
		ID string `json:"id"`
	}
	if err := send("POST", base+"/v1/photos", s.Token, mw.FormDataContentType(), &body, http.StatusAccepted, &ph); err != nil {
		return err
	}
	l.mu.Lock()
	l.acked.photos = append(l.acked.photos, ackedPhoto{id: ph.ID, token: s.Token, at: time.Now()})
	l.mu.Unlock()
	return nil
}

// send makes one request and decodes the answer into out, if the status
// is want.
func send(method, url, token, contentType string, body io.Reader, want int, out any) error {
	res, b, err := request(http.DefaultClient, method, url, token, contentType, body)
	if err != nil {
		return err
	}
	if res.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s", method, url, res.StatusCode, b)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

type response struct {
	status int
	body   []byte
}

func get(t *testing.T, url, token string) response {
	t.Helper()
	res, b, err := request(http.DefaultClient, "GET", url, token, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return response{res.StatusCode, b}
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
