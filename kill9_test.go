package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"onebox/internal/testimages"
	"onebox/store"
	"onebox/store/sqlite"
)

// TestKill9UnderLoad kills onebox with SIGKILL under mixed writes, 20
// times in a row, each kill at another moment of the load: sign-ups, and
// two users editing their profiles and uploading photos. After every
// kill, before the next start, the database passes PRAGMA
// integrity_check and holds every write answered 2xx in this round or
// any before: each sign-up, each user's last acknowledged edit (or a
// later one) at its version or later, each upload's row. After the last
// start every upload answered 202 ends ready, however many of its
// attempts the kills cut short.
func TestKill9UnderLoad(t *testing.T) {
	t.Parallel()
	const rounds = 20
	data := t.TempDir()
	// A small photo: a job the kills cut short five times is
	// dead-lettered (its worker counts as lost), so under -race a photo
	// must take less than most rounds to process.
	photo, err := testimages.PhotoJPEG(96, 64, 1, 80)
	if err != nil {
		t.Fatal(err)
	}
	// A job a kill cut short comes back after its visibility: 5 s keeps
	// the last round's from waiting the default out.
	env := []string{"ONEBOX_RATE_AUTH=100000/1m", "ONEBOX_RATE_UPLOAD=100000/1m", "ONEBOX_JOB_VISIBILITY=5s"}

	// The editors sign up once: under -race a password hash takes long
	// enough that a session per round would leave little time to write.
	c := startChild(t, data, env...)
	var editors []*k9Editor
	for i := range 2 {
		creds := fmt.Sprintf(`{"handle":"k9_editor_%d","password":"correct horse"}`, i)
		id := c.call("POST", "/v1/users", "", "application/json", strings.NewReader(creds))["id"].(string)
		token := c.call("POST", "/v1/sessions", "", "application/json", strings.NewReader(creds))["token"].(string)
		editors = append(editors, &k9Editor{id: id, token: token})
	}
	// Their sign-ups count: under -race on a busy machine a round may
	// end before any other sign-up is answered.
	acked := &k9Acked{users: []string{editors[0].id, editors[1].id}}
	start := time.Now()
	for round := range rounds {
		if round > 0 {
			c = startChild(t, data, env...)
		}
		// 150 ms to 710 ms of load: the kill lands at a different step
		// of the writes (and of the photo jobs) each round.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { acked.signUps(c.base, round, stop) })
		for _, e := range editors {
			wg.Go(func() { acked.edit(c.base, e, photo, stop) })
		}
		time.Sleep(150*time.Millisecond + time.Duration(round*7%15)*40*time.Millisecond)
		c.kill()
		close(stop)
		wg.Wait()
		acked.check(t, filepath.Join(data, "onebox.db"), editors, round)
	}
	t.Logf("%d kills in %s: %d sign-ups, %d edits, %d uploads acknowledged",
		rounds, time.Since(start).Round(time.Millisecond), len(acked.users), acked.edits, len(acked.photos))
	if len(acked.photos) == 0 || acked.edits == 0 {
		t.Fatal("the load acknowledged no edit or upload: nothing was checked")
	}

	c = startChild(t, data, env...)
	// A bound for a loaded machine under -race, not a measurement.
	deadline := time.Now().Add(3 * time.Minute)
	for _, ph := range acked.photos {
		var p struct {
			Status string `json:"status"`
		}
		for ; ; time.Sleep(50 * time.Millisecond) {
			if err := json.Unmarshal(get(t, c.base+"/v1/photos/"+ph.id, ph.token).body, &p); err != nil {
				t.Fatal(err)
			}
			if p.Status != "processing" || time.Now().After(deadline) {
				break
			}
		}
		if p.Status != "ready" {
			t.Errorf("upload %s, answered 202, ends %s", ph.id, p.Status)
		}
	}
	if t.Failed() {
		c.kill() // its log is written until it exits
		for line := range strings.Lines(c.log.String()) {
			if strings.Contains(line, `"jobs: `) {
				t.Log(line)
			}
		}
	}
	t.Logf("every upload ready %s after the first kill", time.Since(start).Round(time.Millisecond))
}

// k9Editor is a user who edits and uploads; bio is the edit's number,
// which keeps counting across rounds.
type k9Editor struct {
	id, token string
	edit      int   // the last acknowledged edit
	version   int64 // the version its answer gave
	next      int
}

// k9Acked are the writes onebox answered 2xx, over all rounds.
type k9Acked struct {
	mu     sync.Mutex
	users  []string
	edits  int
	photos []ackedPhoto
}

// signUps signs up users until the process dies or stop closes.
func (a *k9Acked) signUps(base string, round int, stop <-chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		var u struct {
			ID string `json:"id"`
		}
		creds := fmt.Sprintf(`{"handle":"k9_%d_%d","password":"correct horse"}`, round, i)
		if send("POST", base+"/v1/users", "", "application/json", strings.NewReader(creds), http.StatusCreated, &u) != nil {
			return // the kill
		}
		a.mu.Lock()
		a.users = append(a.users, u.ID)
		a.mu.Unlock()
	}
}

// edit edits e's profile and uploads a photo after every second edit,
// until the process dies or stop closes.
func (a *k9Acked) edit(base string, e *k9Editor, photo []byte, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		e.next++
		var u struct {
			Version int64 `json:"version"`
		}
		body := fmt.Sprintf(`{"bio":"%d"}`, e.next)
		if send("PATCH", base+"/v1/users/me", e.token, "application/merge-patch+json", strings.NewReader(body), http.StatusOK, &u) != nil {
			return
		}
		a.mu.Lock()
		e.edit, e.version = e.next, u.Version
		a.edits++
		a.mu.Unlock()
		if e.next%2 != 0 {
			continue
		}
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		fw, _ := mw.CreateFormFile("file", "photo.jpg")
		fw.Write(photo)
		mw.Close()
		var ph struct {
			ID string `json:"id"`
		}
		if send("POST", base+"/v1/photos", e.token, mw.FormDataContentType(), &buf, http.StatusAccepted, &ph) != nil {
			return
		}
		a.mu.Lock()
		a.photos = append(a.photos, ackedPhoto{id: ph.ID, token: e.token})
		a.mu.Unlock()
	}
}

// check opens the database of the killed process and fails the test
// unless it is intact and holds every acknowledged write.
func (a *k9Acked) check(t *testing.T, path string, editors []*k9Editor, round int) {
	t.Helper()
	ctx := t.Context()
	st, err := sqlite.New(ctx, sqlite.Options{Path: path, ReadConns: 1, NoCreate: true, SkipMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.IntegrityCheck(ctx); err != nil {
		t.Fatalf("after kill %d: %v", round+1, err)
	}
	lost := func(format string, args ...any) {
		t.Helper()
		t.Errorf("after kill %d: "+format, append([]any{round + 1}, args...)...)
	}
	for _, id := range a.users {
		if _, err := st.User(ctx, store.UserParams{ID: id, Freshness: store.MustBeFresh}); err != nil {
			lost("sign-up %s: %v", id, err)
		}
	}
	for _, e := range editors {
		u, err := st.User(ctx, store.UserParams{ID: e.id, Freshness: store.MustBeFresh})
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := strconv.Atoi(u.Bio); n < e.edit || u.Version < e.version {
			lost("user %s has bio %q at version %d, but edit %d was answered with version %d", e.id, u.Bio, u.Version, e.edit, e.version)
		}
	}
	for _, ph := range a.photos {
		if _, err := st.Photo(ctx, store.PhotoParams{ID: ph.id, Freshness: store.MustBeFresh}); errors.Is(err, store.ErrNotFound) {
			lost("upload %s, answered 202, has no row", ph.id)
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}
