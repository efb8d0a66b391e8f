package jobstest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"onebox/jobs"
)

// BenchReceiveAck takes batches of 1, 10 and 100 from a queue preloaded
// with jobs of kind "k" and acks each batch in one call, as the Runner
// does, reporting jobs/s. preloaded returns a new queue holding n such
// jobs; the same benchmark runs on every backend.
func BenchReceiveAck(b *testing.B, preloaded func(b *testing.B, n int) jobs.Queue) {
	for _, batch := range []int{1, 10, 100} {
		b.Run(fmt.Sprint("batch=", batch), func(b *testing.B) {
			q := preloaded(b, b.N*batch)
			ctx := context.Background()
			rs := make([]jobs.Receipt, 0, batch)
			b.ResetTimer()
			for range b.N {
				msgs, err := q.Receive(ctx, "k", batch, time.Minute)
				if err != nil || len(msgs) != batch {
					b.Fatalf("Receive = %d, %v; want %d", len(msgs), err, batch)
				}
				rs = rs[:0]
				for _, m := range msgs {
					rs = append(rs, m.Receipt())
				}
				if err := q.Ack(ctx, rs...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "jobs/s")
		})
	}
}
