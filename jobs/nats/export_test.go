package nats

import (
	"context"

	"github.com/nats-io/nats.go"
)

// SendRaw publishes body as a message of kind, for jobstest's
// malformed-body checks (jobstest.RawSender). Tests only.
func (q *Queue) SendRaw(ctx context.Context, kind string, body []byte) error {
	msg := nats.NewMsg(q.jobSubject(kind))
	msg.Data = body
	_, err := q.js.PublishMsg(ctx, msg)
	return err
}

// InFlightUntilRedelivered: see jobstest.InFlightUntilRedelivered.
func (q *Queue) InFlightUntilRedelivered() {}
