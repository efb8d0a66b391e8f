package postgres

import (
	"context"

	"maragu.dev/goqite"
)

// SendRaw stores body as a message of kind with goqite's own Send, for
// jobstest's malformed-body checks (jobstest.RawSender). Tests only.
func (q *Queue) SendRaw(ctx context.Context, kind string, body []byte) error {
	g := goqite.New(goqite.NewOpts{DB: q.db, Name: queuePrefix + kind, SQLFlavor: goqite.SQLFlavorPostgreSQL})
	return g.Send(ctx, goqite.Message{Body: body})
}

// HonoursPriority: goqite receives higher priorities first
// (jobstest.Prioritizer).
func (q *Queue) HonoursPriority() {}

// ServesKeysInTurn: Receive takes fair turns (jobstest.FairQueue).
func (q *Queue) ServesKeysInTurn() {}
