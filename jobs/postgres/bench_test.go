package postgres_test

import (
	"os"
	"testing"

	"onebox/jobs"
	"onebox/jobs/jobstest"
)

// BenchmarkReceiveAck: jobstest.BenchReceiveAck on PostgreSQL, the
// statements a lease touches (Receive's, unchanged, and Ack's join on id
// and received).
func BenchmarkReceiveAck(b *testing.B) {
	if os.Getenv("ONEBOX_TEST_POSTGRES_URL") == "" {
		b.Skip("ONEBOX_TEST_POSTGRES_URL not set")
	}
	jobstest.BenchReceiveAck(b, func(b *testing.B, n int) jobs.Queue {
		q := newQueue(b)
		preload(b, q, "k", n)
		return q.queue
	})
}
