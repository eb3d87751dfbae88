package worker

import (
	"context"
	"errors"

	"github.com/wagate/wagate/messages"
)

// Handler runs an event's business logic. It must be safe for concurrent use.
//
// The context is cancelled when the worker loses the event's lock or shuts
// down; a handler must stop its side effects then. Returning nil marks the
// event done; Permanent(err) sends it to the dead-letter stream at once; any
// other error retries with backoff.
type Handler interface {
	Handle(ctx context.Context, ev messages.Event) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, ev messages.Event) error

// Handle calls f(ctx, ev).
func (f HandlerFunc) Handle(ctx context.Context, ev messages.Event) error { return f(ctx, ev) }

// Run is what a handler learns of the run in progress, from RunFromContext.
type Run struct {
	// Fence is the fencing number of this run's lock: strictly greater than
	// every earlier run's for the same key.
	Fence int64
	// Delivery is JetStream's delivery count of the message, from 1; 0 for
	// a run started by Worker.Replay (wagate replay).
	Delivery uint64
}

type runKey struct{}

// WithRun returns ctx carrying r.
func WithRun(ctx context.Context, r Run) context.Context { return context.WithValue(ctx, runKey{}, r) }

// RunFromContext returns the run carried by ctx and whether there was one.
func RunFromContext(ctx context.Context) (Run, bool) {
	r, ok := ctx.Value(runKey{}).(Run)
	return r, ok
}

// Permanent marks err as permanent: the event goes to the dead-letter stream
// without further retries.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// PermanentError is an error that must not be retried.
type PermanentError struct{ Err error }

// Error returns "permanent: " and the wrapped error's text.
func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.Err }

// IsPermanent reports whether err, or an error it wraps, is permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}
