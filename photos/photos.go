// Package photos names what the API and the photo pipeline share: the job
// kinds and their payloads, the notification topic of a user's photo
// events, and where a photo's files live in media storage. The API
// enqueues and announces with these names; the pipeline (the worker) reads
// them; neither imports the other.
package photos

import (
	"context"
	"encoding/json"
	"path"

	"onebox/correlation"
	"onebox/jobs"
	"onebox/store"
)

// Job kinds.
const (
	KindProcess = "photo.process" // decode, moderate and publish a new photo
	KindCleanup = "media.delete"  // remove the files of deleted photos
)

// ProcessPayload is the payload of a KindProcess job.
type ProcessPayload struct {
	PhotoID string `json:"photo_id"`
}

// CleanupPayload is the payload of a KindCleanup job.
type CleanupPayload struct {
	Keys []string `json:"keys"`
}

// ProcessJob returns the job that processes a new photo of ownerID,
// carrying the request id and the trace context of ctx (the enqueuing
// request). Its fair key is the owner, so the queue serves owners in
// turn: one user's thousand uploads do not hold up another's one.
func ProcessJob(ctx context.Context, ownerID, photoID string) jobs.Message {
	b, _ := json.Marshal(ProcessPayload{PhotoID: photoID})
	return jobs.Message{Kind: KindProcess, Payload: b, RequestID: correlation.RequestID(ctx), TraceParent: correlation.TraceParent(ctx), FairKey: ownerID}
}

// CleanupJob is a store.CleanupJob: the job that removes deleted files,
// carrying the request id and the trace context of ctx.
func CleanupJob(ctx context.Context) store.CleanupJob {
	requestID, traceParent := correlation.RequestID(ctx), correlation.TraceParent(ctx)
	return func(keys []string) jobs.Message {
		b, _ := json.Marshal(CleanupPayload{Keys: keys})
		return jobs.Message{Kind: KindCleanup, Payload: b, RequestID: requestID, TraceParent: traceParent}
	}
}

// UserTopic is the notify topic of a user's photo events.
func UserTopic(userID string) string { return "user:" + userID }

// VariantKey is where a variant is published: under the photo's own id,
// so two photos of the same bytes never share (and delete) files, and a
// retried job overwrites the same keys instead of adding new ones.
func VariantKey(photoID, name, contentType string) string {
	ext := ".jpg"
	if contentType == "image/png" {
		ext = ".png"
	}
	return path.Join("photos", photoID, name+ext)
}

// OriginalKey is where the upload is kept, under the private prefix that
// is never served (the original still carries its GPS tags).
func OriginalKey(photoID string) string { return path.Join("private", "originals", photoID) }
