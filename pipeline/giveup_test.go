package pipeline_test

import (
	"strings"
	"testing"

	"onebox/imaging"
	"onebox/store"
)

// TestGiveUp: a photo whose job is dead-lettered is rejected with a reason
// the owner can read, instead of staying "processing"; a photo already
// finished keeps its outcome, so a repeated call changes nothing.
func TestGiveUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPipeline(e, e.media, imaging.DefaultMaxPixels*8)
	job := e.addPhoto(t, "p1", testPNG(t))
	if err := p.GiveUp(t.Context(), job, "delivered 6 times, at most 5 allowed: earlier attempts never finished (worker lost)"); err != nil {
		t.Fatal(err)
	}
	ph := e.photo(t, "p1")
	if ph.Status != store.PhotoRejected || !strings.Contains(ph.Reason, "could not be processed") {
		t.Fatalf("after GiveUp: %s %q, want rejected, saying it could not be processed", ph.Status, ph.Reason)
	}

	ready := e.addPhoto(t, "p2", testPNG(t))
	if err := p.Process(processCtx(t), ready); err != nil {
		t.Fatal(err)
	}
	if err := p.GiveUp(t.Context(), ready, "late"); err != nil {
		t.Fatal(err)
	}
	if ph := e.photo(t, "p2"); ph.Status != store.PhotoReady {
		t.Errorf("GiveUp on a ready photo made it %s", ph.Status)
	}
}
