package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"onebox/jobs"
	"onebox/store"
)

// EnqueuedReader lists what a store enqueued, so the suite can check
// that a job commits with its row and never without it (CreatePhoto,
// DeletePhoto, DeleteUser). A store may implement it in its own test
// files only (export_test.go), as jobstest.RawSender.
//
// Unlike RawSender it is required: the suite's tests of the writes that
// enqueue fail on a store without it. The job is part of those writes'
// contract ("an accepted upload is never without its job"), every store
// has a queue it can read back, and a store that skipped the check would
// pass the suite while dropping jobs, which is what the check is for.
type EnqueuedReader interface {
	// Enqueued returns every message of kind waiting in the store's
	// queue, in any order, with what the sender chose (Kind, Payload,
	// RequestID, TraceParent), without receiving it: reading twice
	// returns the same. The suite receives nothing, so that is every job
	// of kind the store enqueued and committed.
	Enqueued(ctx context.Context, kind string) ([]jobs.Message, error)
}

// The job kinds the suite's writes enqueue.
const (
	processKind = "test.process"
	cleanupKind = "test.cleanup"
)

// cleanupJob is the suite's store.CleanupJob: its payload is the keys.
func cleanupJob(keys []string) jobs.Message {
	payload, _ := json.Marshal(map[string][]string{"keys": keys})
	return jobs.Message{Kind: cleanupKind, Payload: payload}
}

// mustEnqueued reads the jobs of kind in s's queue, failing the test if
// s cannot show them.
func mustEnqueued(t *testing.T, s store.Store, kind string) []jobs.Message {
	t.Helper()
	r, ok := s.(EnqueuedReader)
	if !ok {
		t.Fatalf("%T does not implement storetest.EnqueuedReader, so the suite cannot check that its jobs commit with their rows; "+
			"every store must let the suite read its queue (a method in the backend's export_test.go will do)", s)
	}
	msgs, err := r.Enqueued(t.Context(), kind)
	if err != nil {
		t.Fatalf("Enqueued(%q): %v", kind, err)
	}
	return msgs
}

// jobString is what the sender chose of m, for comparisons and messages.
func jobString(m jobs.Message) string {
	return fmt.Sprintf("{%s %s request %q trace %q}", m.Kind, m.Payload, m.RequestID, m.TraceParent)
}

// wantJobs fails unless s's queue holds exactly want of kind, in any
// order. Payloads compare as bytes, as jobstest compares them: a queue
// keeps a handler's JSON as it was sent.
func wantJobs(t *testing.T, s store.Store, what, kind string, want ...jobs.Message) {
	t.Helper()
	got := sortedStrings(mustEnqueued(t, s, kind), jobString)
	w := sortedStrings(want, jobString)
	if !slices.Equal(got, w) {
		t.Errorf("%s: jobs of kind %s in the queue:\n got %v\nwant %v", what, kind, got, w)
	}
}

// wantCleanups fails unless s's queue holds one cleanup job per want,
// in any order, each with its keys in any order.
func wantCleanups(t *testing.T, s store.Store, what string, want ...[]string) {
	t.Helper()
	keyList := func(keys []string) string { return strings.Join(slices.Sorted(slices.Values(keys)), " ") }
	var got []string
	for _, m := range mustEnqueued(t, s, cleanupKind) {
		var p struct{ Keys []string }
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			t.Fatalf("%s: cleanup job %s: %v", what, jobString(m), err)
		}
		got = append(got, keyList(p.Keys))
	}
	slices.Sort(got)
	w := sortedStrings(want, keyList)
	if !slices.Equal(got, w) {
		t.Errorf("%s: cleanup jobs in the queue, by their keys:\n got %q\nwant %q", what, got, w)
	}
}

func sortedStrings[T any](s []T, str func(T) string) []string {
	out := make([]string, 0, len(s))
	for _, v := range s {
		out = append(out, str(v))
	}
	slices.Sort(out)
	return out
}
