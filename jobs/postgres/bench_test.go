package postgres_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"onebox/jobs"
)

// BenchmarkReceiveAck takes batches from a preloaded queue and acks each
// batch in one statement, as the Runner does: the statements a lease
// touches (Receive's, unchanged, and Ack's join on id and received).
func BenchmarkReceiveAck(b *testing.B) {
	if os.Getenv("ONEBOX_TEST_POSTGRES_URL") == "" {
		b.Skip("ONEBOX_TEST_POSTGRES_URL not set")
	}
	for _, batch := range []int{1, 10, 100} {
		b.Run(fmt.Sprint("batch=", batch), func(b *testing.B) {
			q := newQueue(b)
			preload(b, q, "k", b.N*batch)
			ctx := context.Background()
			rs := make([]jobs.Receipt, 0, batch)
			b.ResetTimer()
			for range b.N {
				msgs, err := q.queue.Receive(ctx, "k", batch, time.Minute)
				if err != nil || len(msgs) != batch {
					b.Fatalf("Receive = %d, %v; want %d", len(msgs), err, batch)
				}
				rs = rs[:0]
				for _, m := range msgs {
					rs = append(rs, m.Receipt())
				}
				if err := q.queue.Ack(ctx, rs...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "jobs/s")
		})
	}
}
