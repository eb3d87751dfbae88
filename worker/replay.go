package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/messages"
)

// Outcome is what became of one Replay of an event.
type Outcome string

// The outcomes of Replay. Apart from OutcomePermanent they are the outcome
// labels of wagate_worker_processed_total, chosen by the same mapping as for
// a delivery.
const (
	// OutcomeDone: the handler ran and succeeded, and the key is marked done.
	OutcomeDone Outcome = outcomeDone
	// OutcomeSkipped: the key is done, so the handler was not run (Force
	// runs it anyway).
	OutcomeSkipped Outcome = outcomeDuplicate
	// OutcomeBusy: another run holds the key's lock (a live worker, or a
	// run that died less than LockTTL ago); the handler was not run.
	OutcomeBusy Outcome = outcomeBusy
	// OutcomeStoreError: the dedupe store failed; the handler was not run,
	// or ran and succeeded but could not be marked done.
	OutcomeStoreError Outcome = outcomeStoreError
	// OutcomeRetry: the handler returned a retryable error; the lock was
	// released and the key is not done.
	OutcomeRetry Outcome = outcomeRetry
	// OutcomePermanent: the handler returned Permanent(err). A delivery
	// would be dead-lettered; Replay only reports it.
	OutcomePermanent Outcome = "permanent"
	// OutcomeLockLost: the lock was lost while the handler ran or at
	// finish; the key is not done.
	OutcomeLockLost Outcome = outcomeLockLost
	// OutcomeInterrupted: ctx was cancelled while the lock was taken or the
	// handler ran; the lock was released and the key is not done.
	OutcomeInterrupted Outcome = outcomeInterrupted
)

// Replayed is the result of one Replay.
type Replayed struct {
	// Outcome is what became of the event.
	Outcome Outcome
	// Fence is the fencing number of the run's lock: higher than that of
	// every earlier run of the key. 0 when the lock was not taken
	// (OutcomeSkipped, OutcomeBusy, or a store error at begin).
	Fence int64
}

// ReplayOptions configure Replay. The zero value replays only an event whose
// key is not done.
type ReplayOptions struct {
	// Force runs the handler even when the key is done (with a new, higher
	// fencing number); it never runs while another run holds the lock.
	Force bool
}

// noProgress is the heartbeat's message for a run without a JetStream
// delivery: there is no AckWait to reset, only the lock to extend.
type noProgress struct{}

// InProgress does nothing and returns nil: there is no message to keep alive.
func (noProgress) InProgress() error { return nil }

// Replay runs ev once through the path a delivery takes, without a
// JetStream message: it takes the key's lock (dedupe.Store.Begin, with
// opts.Force), runs the Handler with the lock extended every Heartbeat and a
// context carrying Run{Fence, Delivery: 0}, then marks the key done or
// releases the lock. It neither acknowledges nor dead-letters anything; the
// outcome is chosen by the same mapping as a delivery's.
//
// Replay never runs the handler for a key whose lock another run holds, so
// it is safe while live workers consume the same events. The handler's
// context is cancelled when ctx is, when the lock is lost, or after
// Config.HandlerTimeout.
//
// It returns the outcome and, for every outcome other than OutcomeDone and
// OutcomeSkipped, an error saying why: one wrapping dedupe.ErrBusy, the
// store's error, or the handler's error (a *PermanentError for
// OutcomePermanent). An event without a key is refused with an error
// wrapping dedupe.ErrInvalidKey. Replay is safe for concurrent use, also
// while Run is active.
func (w *Worker) Replay(ctx context.Context, ev messages.Event, opts ReplayOptions) (Replayed, error) {
	if ev.Key == "" {
		return Replayed{}, fmt.Errorf("worker: replay: %w: event without a key", dedupe.ErrInvalidKey)
	}
	log := w.log.With(slog.String("key", ev.Key), slog.Bool("replay", true), slog.Bool("force", opts.Force))
	// A replay does not hold an event while the store is unreachable: the
	// closed stop channel makes the first failed Begin final.
	a := w.run(ctx, closedStop, noProgress{}, ev, attempt{force: opts.Force}, log)
	o := verdict(a, w.cfg.Streams)
	r := Replayed{Outcome: Outcome(o.label), Fence: a.fence}
	if o.action == actDeadLetter {
		r.Outcome = OutcomePermanent
	}
	switch r.Outcome {
	case OutcomeDone, OutcomeSkipped:
		log.Info("worker: replayed", slog.String("outcome", string(r.Outcome)), slog.Int64("fence", r.Fence))
		return r, nil
	}
	err := errors.Join(a.beginErr, a.handlerErr, a.finishErr)
	if err == nil {
		err = errors.New(o.reason)
	}
	log.Warn("worker: replay did not complete", slog.String("outcome", string(r.Outcome)),
		slog.Int64("fence", r.Fence), slog.String("reason", o.reason))
	return r, fmt.Errorf("worker: replay %s: %s: %w", ev.Key, r.Outcome, err)
}

// closedStop is a closed channel: a run given it never waits for the store.
var closedStop = func() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()
