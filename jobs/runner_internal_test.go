package jobs

import (
	"testing"
	"time"
)

// pacing is a queue that prefers an ack interval (AckPacer); the
// Runner's options are all this test looks at, so no queue is behind it.
type pacing struct {
	Consumer
	d time.Duration
}

func (p pacing) AckInterval() time.Duration { return p.d }

// TestRunnerAckInterval: the Runner gathers acks for the queue's
// preferred interval unless its options name one.
func TestRunnerAckInterval(t *testing.T) {
	tests := []struct {
		name   string
		q      Consumer
		option time.Duration
		want   time.Duration
	}{
		{"no preference", struct{ Consumer }{}, 0, 5 * time.Millisecond},
		{"the queue's", pacing{d: time.Millisecond}, 0, time.Millisecond},
		{"the queue's none", pacing{}, 0, 5 * time.Millisecond},
		{"the option's over the queue's", pacing{d: time.Millisecond}, 7 * time.Millisecond, 7 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRunner(tt.q, RunnerOptions{AckInterval: tt.option})
			if r.o.AckInterval != tt.want {
				t.Errorf("AckInterval = %v, want %v", r.o.AckInterval, tt.want)
			}
		})
	}
}
