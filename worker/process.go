package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/failpoint"
	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/messages/streams"
)

// opTimeout bounds one round trip to the dedupe store or JetStream outside
// the handler: begin, finish, unlock, dead-letter publish.
const opTimeout = 5 * time.Second

// Causes of a handler's context cancellation by its heartbeat.
var (
	errLockLost     = fmt.Errorf("worker: %w", dedupe.ErrLockLost)
	errLockExpiring = fmt.Errorf("worker: lock could not be extended before it expires: %w", dedupe.ErrLockLost)
)

// action is what is done with a delivery.
type action uint8

const (
	actAck        action = iota // Ack: processed now or before (the done mark protects it)
	actNak                      // NakWithDelay: try again later
	actDeadLetter               // publish to the dead-letter stream, then Term
)

// outcome is the verdict on one delivery.
type outcome struct {
	action action
	label  string        // outcome label of wagate_worker_processed_total
	delay  time.Duration // actNak: redelivery delay
	cause  string        // actDeadLetter: cause label of wagate_worker_dead_letters_total
	reason string        // why: the dead letter's Wagate-Error, or the log's reason
}

// attempt records what happened to one delivery.
type attempt struct {
	delivered   uint64 // JetStream's delivery count, from 1
	decodeErr   error  // the payload is not an event
	beginErr    error  // store.Begin failed: ErrDone, ErrBusy or unreachable
	handlerErr  error  // the handler's error (the handler ran: beginErr == nil)
	interrupted bool   // shutdown cancelled the handler
	lockLost    bool   // the heartbeat lost the lock while the handler ran
	finishErr   error  // store.Finish failed (the handler succeeded)
	force       bool   // Replay with force: begin even when the key is done
	fence       int64  // the lock's fencing number, once taken
	began       *began // the answer of the fetched batch's BeginAll, if any
	runs        bool   // count runs (the fencing number), not deliveries, against MaxDeliver (OrderConversation)
	exhausted   bool   // runs: the run begun is past MaxDeliver, the ones before it died; not started
}

// began is one delivery's answer from the Begin of its fetched batch
// (dedupe.BeginAll), taken before its handler starts.
type began struct {
	key   string // the key begun: the message's Nats-Msg-Id
	taken time.Time
	dedupe.Began
}

// settled reports whether b answers Begin for key for good: a lease, done,
// busy or an invalid key. A store error is not final: run then begins
// again, holding the message while the store is unreachable.
func (b *began) settled(key string) bool {
	if b == nil || b.key != key {
		return false
	}
	err := b.Err
	return err == nil || errors.Is(err, dedupe.ErrDone) || errors.Is(err, dedupe.ErrBusy) || errors.Is(err, dedupe.ErrInvalidKey)
}

// verdict maps an attempt to its outcome. It is the one place that chooses
// between Ack, Nak with delay and Term (after the dead letter): settle only
// carries it out.
//
// Every path that would Nak the last delivery (delivered ≥ MaxDeliver)
// dead-letters instead, since JetStream would not deliver it again.
func verdict(a attempt, sc streams.Config) outcome {
	sc = sc.WithDefaults()
	count, unit := a.delivered, " deliveries)"
	if a.runs {
		// An event waiting for its conversation's turn is delivered again
		// whenever the worker holding it dies: its runs, not its
		// deliveries, say how often it failed.
		count, unit = uint64(max(a.fence, 0)), " runs)"
	}
	last := sc.MaxDeliver > 0 && count >= uint64(sc.MaxDeliver)
	retry := func(label string, delay time.Duration, reason string) outcome {
		if last {
			return outcome{action: actDeadLetter, label: outcomeDeadLetter, cause: causeExhausted,
				reason: reason + " (last of " + strconv.FormatUint(count, 10) + unit}
		}
		return outcome{action: actNak, label: label, delay: delay, reason: reason}
	}
	backoff := sc.Delay(a.delivered)
	if a.runs {
		// Deliveries of an event handed back while it waited say nothing
		// about its failures.
		backoff = sc.Delay(max(count, 1))
	}
	switch {
	case a.decodeErr != nil:
		return outcome{action: actDeadLetter, label: outcomeDeadLetter, cause: causeUndecodable,
			reason: "undecodable: " + a.decodeErr.Error()}
	case errors.Is(a.beginErr, dedupe.ErrInvalidKey):
		return outcome{action: actDeadLetter, label: outcomeDeadLetter, cause: causeUndecodable,
			reason: "undecodable: " + a.beginErr.Error()}
	case errors.Is(a.beginErr, dedupe.ErrDone):
		return outcome{action: actAck, label: outcomeDuplicate}
	case errors.Is(a.beginErr, dedupe.ErrBusy):
		// Another run holds the lock: its worker died (JetStream
		// redelivered after AckWait) or the event is in the stream twice.
		// On the last delivery run does not let it get here: it holds the
		// event until the lock goes.
		return retry(outcomeBusy, backoff, "busy: "+a.beginErr.Error())
	case a.beginErr != nil:
		return retry(outcomeStoreError, backoff, "dedupe store: "+a.beginErr.Error())
	case a.exhausted:
		return outcome{action: actDeadLetter, label: outcomeDeadLetter, cause: causeExhausted,
			reason: fmt.Sprintf("%s: %d runs began and none finished (workers died or timed out)", ReasonMaxDeliveries, max(a.fence-1, 0))}
	case a.handlerErr == nil && a.finishErr == nil:
		return outcome{action: actAck, label: outcomeDone}
	case a.handlerErr == nil && errors.Is(a.finishErr, dedupe.ErrLockLost):
		return retry(outcomeLockLost, backoff, "finish: "+a.finishErr.Error())
	case a.handlerErr == nil:
		return retry(outcomeStoreError, backoff, "finish: "+a.finishErr.Error())
	case IsPermanent(a.handlerErr):
		return outcome{action: actDeadLetter, label: outcomeDeadLetter, cause: causePermanent,
			reason: a.handlerErr.Error()}
	case a.interrupted:
		// Not the event's fault: let another worker have it at once.
		return retry(outcomeInterrupted, 0, "shutdown: "+a.handlerErr.Error())
	case a.lockLost:
		return retry(outcomeLockLost, backoff, "lock lost: "+a.handlerErr.Error())
	default:
		return retry(outcomeRetry, backoff, a.handlerErr.Error())
	}
}

// process runs one delivery to its end: decode, begin, handler under the
// lock with heartbeats, finish, then settle. hardCtx ends ShutdownTimeout
// after Run's context; stop is closed when Run's context is.
//
// pre, when not nil, is the answer of the Begin of the batch m was fetched
// in: used when it is for the event's key, and released otherwise.
func (w *Worker) process(hardCtx context.Context, stop <-chan struct{}, m jetstream.Msg, pre *began) {
	meta, err := m.Metadata()
	if err != nil {
		// Not a JetStream delivery: nothing can acknowledge it.
		w.log.Error("worker: message without JetStream metadata", slog.String("subject", m.Subject()), slog.Any("error", err))
		w.dropPre(pre)
		return
	}
	if meta.NumDelivered > 1 {
		w.metrics.redeliveries.Inc()
	}
	a := attempt{delivered: meta.NumDelivered, runs: w.order != nil}
	ev, err := messages.Decode(m.Data())
	key := ev.Key
	if err != nil {
		a.decodeErr = err
		key = m.Headers().Get(nats.MsgIdHdr)
	}
	if a.decodeErr == nil && pre.settled(ev.Key) {
		a.began = pre
	} else {
		w.dropPre(pre)
	}
	log := eventLog(w.log,
		slog.String("key", key),
		slog.String("subject", m.Subject()),
		slog.Uint64("seq", meta.Sequence.Stream),
		slog.Uint64("delivery", meta.NumDelivered),
	)
	if a.decodeErr == nil {
		a = w.run(traceContext(hardCtx, m.Headers()), stop, m, ev, a, log)
	}
	w.settle(m, meta, verdict(a, w.cfg.Streams), logReason(a), log)
}

// run takes the event's lock and runs the handler under it, keeping the lock
// and the message alive, then marks the key done or releases the lock.
func (w *Worker) run(hardCtx context.Context, stop <-chan struct{}, m inProgresser, ev messages.Event, a attempt, log *slog.Logger) attempt {
	var (
		lease dedupe.Lease
		taken time.Time
		err   error
	)
	if a.began != nil {
		lease, taken, err = a.began.Lease, a.began.taken, a.began.Err
	} else {
		lease, taken, err = w.begin(stop, m, ev.Key, a.force, false, log)
	}
	if errors.Is(err, dedupe.ErrBusy) && a.lastDelivery(w.cfg.Streams) {
		// JetStream will not deliver it again: a Nak would dead-letter an
		// event that never failed. Hold it until the holder's lock goes.
		log.Info("worker: event busy on its last delivery; holding it until its lock is released")
		lease, taken, err = w.begin(stop, m, ev.Key, a.force, true, log)
	}
	if err != nil {
		a.beginErr = err
		return a
	}
	a.fence = lease.Fence
	log = log.With(slog.Int64("fence", lease.Fence))
	if limit := w.cfg.Streams.WithDefaults().MaxDeliver; a.runs && limit > 0 && lease.Fence > int64(limit) {
		a.exhausted = true
		w.unlock(lease, log)
		return a
	}
	if err := hardCtx.Err(); err != nil {
		// Shutdown cancelled in-flight work while the lock was being taken:
		// do not start the handler.
		a.handlerErr, a.interrupted = err, true
		w.unlock(lease, log)
		return a
	}

	runCtx, cancelRun := context.WithCancelCause(hardCtx)
	defer cancelRun(nil)
	hctx := runCtx
	if w.cfg.HandlerTimeout > 0 {
		var cancelTimeout context.CancelFunc
		hctx, cancelTimeout = context.WithTimeout(runCtx, w.cfg.HandlerTimeout)
		defer cancelTimeout()
	}
	hctx = WithRun(hctx, Run{Fence: lease.Fence, Delivery: a.delivered})

	hb := w.startHeartbeat(m, lease, taken, cancelRun, log)
	start := time.Now()
	a.handlerErr = w.call(hctx, ev, log)
	w.observeHandler(time.Since(start), a.handlerErr)
	expires := hb.halt()

	a.lockLost = errors.Is(context.Cause(runCtx), dedupe.ErrLockLost)
	a.interrupted = hardCtx.Err() != nil

	if a.handlerErr == nil {
		failpoint.Hit(failpoint.WorkerBeforeFinish)
		a.finishErr = w.finish(hardCtx, m, lease, expires, log)
		failpoint.Hit(failpoint.WorkerAfterFinish)
		return a
	}
	w.unlock(lease, log)
	return a
}

// lastDelivery reports whether JetStream will not deliver the event again:
// deliveries count (no runs) and this one is the MaxDeliver-th.
func (a attempt) lastDelivery(sc streams.Config) bool {
	limit := sc.WithDefaults().MaxDeliver
	return !a.runs && limit > 0 && a.delivered >= uint64(limit)
}

// begin takes the event's lock. While the dedupe store is unreachable it
// holds the message rather than Nak it: it tells JetStream the message is in
// progress and tries again after the BackOff step of each failed attempt
// (at most Heartbeat), so that an outage of the store spends none of the
// event's deliveries (design G5: the event waits) and, with every slot
// holding such a message, the worker stops fetching. It gives up, returning
// the store's error, when stop is closed (shutdown) or the message can no
// longer be kept (InProgress failed). With holdBusy it holds the message the
// same way while another run holds the lock (ErrBusy), until that lock is
// released or expires. taken is when the returned lease's Begin was sent.
func (w *Worker) begin(stop <-chan struct{}, m inProgresser, key string, force, holdBusy bool, log *slog.Logger) (lease dedupe.Lease, taken time.Time, err error) {
	// Each attempt ends well inside AckWait, counted from the last InProgress.
	timeout := min(opTimeout, w.cfg.Heartbeat)
	for failed := uint64(1); ; failed++ {
		taken = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		lease, err = w.store.Begin(ctx, key, dedupe.BeginOptions{TTL: w.cfg.LockTTL, Force: force})
		cancel()
		w.metrics.lockWait.Observe(time.Since(taken).Seconds())
		busy := errors.Is(err, dedupe.ErrBusy)
		if err == nil || errors.Is(err, dedupe.ErrDone) || (busy && !holdBusy) || errors.Is(err, dedupe.ErrInvalidKey) {
			return lease, taken, err
		}
		delay := min(w.cfg.Streams.Delay(failed), w.cfg.Heartbeat)
		if busy {
			log.Debug("worker: lock still held by another run", slog.Uint64("attempt", failed), slog.Duration("retry_in", delay))
		} else {
			w.metrics.processed.WithLabelValues(outcomeStoreError).Inc()
			log.Warn("worker: dedupe store unreachable; holding the event until it answers",
				slog.Uint64("attempt", failed), slog.Duration("retry_in", delay), slog.Any("error", err))
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-stop:
			t.Stop()
			return lease, taken, err
		}
		if ierr := m.InProgress(); ierr != nil {
			w.metrics.heartbeatErrors.WithLabelValues("in_progress").Inc()
			log.Warn("worker: in-progress signal failed while holding the event", slog.Any("error", ierr))
			return lease, taken, err
		}
	}
}

// finishRetryWait is the pause between two attempts of finish.
const finishRetryWait = 100 * time.Millisecond

// finish marks the key done once the handler succeeded. When the store fails
// otherwise than with ErrLockLost (it is unreachable), the lock may still be
// this run's until expires: finish tries again every finishRetryWait, keeping
// the message in progress, until the store answers, the lock comes within
// one Heartbeat of expiring (the margin the heartbeat keeps), or hardCtx
// ends. Without this, a store outage shorter than the lock's life would turn
// a run that completed, and still holds its lock, into a re-run.
func (w *Worker) finish(hardCtx context.Context, m inProgresser, lease dedupe.Lease, expires time.Time, log *slog.Logger) error {
	for tries := 1; ; tries++ {
		err := w.finishOne(lease)
		if err == nil || errors.Is(err, dedupe.ErrLockLost) ||
			time.Until(expires) <= w.cfg.Heartbeat+finishRetryWait || hardCtx.Err() != nil {
			if err == nil && tries > 1 {
				log.Info("worker: marked done after the store came back", slog.Int("tries", tries))
			}
			return err
		}
		if tries == 1 {
			log.Warn("worker: marking done failed; trying again while the lock is held",
				slog.Time("lock_expires", expires), slog.Any("error", err))
		}
		t := time.NewTimer(finishRetryWait)
		select {
		case <-hardCtx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		if err := m.InProgress(); err != nil {
			w.metrics.heartbeatErrors.WithLabelValues("in_progress").Inc()
		}
	}
}

// unlock releases the lock so that the retry need not wait for LockTTL. A
// lost lock has nothing to release; an unreachable store lets it expire.
func (w *Worker) unlock(lease dedupe.Lease, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := w.store.Unlock(ctx, lease); err != nil && !errors.Is(err, dedupe.ErrLockLost) {
		log.Warn("worker: unlock failed; the lock expires after LockTTL",
			slog.Duration("lock_ttl", w.cfg.LockTTL), slog.Any("error", err))
	}
}

// call runs the handler, turning a panic into a retryable error.
func (w *Worker) call(ctx context.Context, ev messages.Event, log *slog.Logger) (err error) {
	ctx, span := startHandlerSpan(ctx, ev)
	defer func() { endHandlerSpan(span, err) }()
	defer func() {
		if r := recover(); r != nil {
			log.Error("worker: handler panicked", slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
			err = fmt.Errorf("worker: handler panicked: %v", r)
		}
	}()
	return w.handler.Handle(ctx, ev)
}

func (w *Worker) observeHandler(d time.Duration, err error) {
	switch {
	case err == nil:
		w.metrics.handlerOK.Observe(d.Seconds())
	case IsPermanent(err):
		w.metrics.handlerDuration.WithLabelValues("permanent").Observe(d.Seconds())
	default:
		w.metrics.handlerDuration.WithLabelValues("error").Observe(d.Seconds())
	}
}

// logReason returns what replaces, in the logs, the text of a's handler
// error inside an outcome's reason: the text without the body of a
// *StatusError, which may echo the event (phone numbers, message text). It
// returns nil when there is nothing to hide.
func logReason(a attempt) func(string) string {
	var se *StatusError
	if a.handlerErr == nil || !errors.As(a.handlerErr, &se) || se.Body == "" {
		return nil
	}
	full := se.Error()
	short := (&StatusError{StatusCode: se.StatusCode}).Error() + " (answer body in the dead letter or at debug level)"
	return func(reason string) string { return strings.ReplaceAll(reason, full, short) }
}

// settle carries out o on m: Ack, NakWithDelay, or dead letter then
// Term. A dead letter that cannot be published is Nak'd with delay instead:
// Term only ever follows the dead letter's PubAck. hide, when not nil,
// rewrites o.reason for the logs (see logReason); the dead letter keeps it
// whole.
func (w *Worker) settle(m jetstream.Msg, meta *jetstream.MsgMetadata, o outcome, hide func(string) string, log *slog.Logger) {
	logged := o.reason
	if hide != nil {
		logged = hide(o.reason)
		if logged != o.reason {
			log.Debug("worker: handler error in full", slog.String("reason", o.reason))
		}
	}
	switch o.action {
	case actAck:
		w.turnSettled(m.Subject(), meta.Sequence.Stream, true)
		// Ack without waiting for JetStream's answer: the key is marked
		// done (outcome done) or was found done (duplicate), and the done
		// mark, not the ack, is what stops a second run. An ack lost on
		// the way only brings a redelivery, which Begin answers ErrDone,
		// and which is acked again.
		if err := m.Ack(); err != nil {
			// JetStream redelivers it; the done mark makes that an Ack.
			w.metrics.ackErrors.WithLabelValues("ack").Inc()
			log.Warn("worker: ack failed", slog.String("outcome", o.label), slog.Any("error", err))
		} else {
			log.Debug("worker: acked", slog.String("outcome", o.label))
		}
	case actNak:
		if o.label == outcomeBusy {
			w.metrics.busyNaks.Inc()
		}
		level := slog.LevelWarn
		if o.label == outcomeBusy || o.label == outcomeInterrupted {
			level = slog.LevelInfo
		}
		log.Log(context.Background(), level, "worker: nak; will retry", slog.String("outcome", o.label),
			slog.Duration("delay", o.delay), slog.String("reason", logged))
		w.turnSettled(m.Subject(), meta.Sequence.Stream, false)
		w.nak(m, o.delay, log)
	case actDeadLetter:
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		err := w.deadLetter(ctx, letter{
			stream:     meta.Stream,
			subject:    m.Subject(),
			seq:        meta.Sequence.Stream,
			header:     m.Headers(),
			data:       m.Data(),
			deliveries: meta.NumDelivered,
			reason:     o.reason,
		}, o.cause)
		cancel()
		if err != nil {
			delay := w.cfg.Streams.Delay(meta.NumDelivered)
			log.Error("worker: dead-letter publish failed; will retry",
				slog.String("reason", logged), slog.Duration("delay", delay), slog.Any("error", err))
			w.turnSettled(m.Subject(), meta.Sequence.Stream, false)
			w.nak(m, delay, log)
			o.label = outcomeDLQError
			break
		}
		log.Error("worker: dead-lettered", slog.String("cause", o.cause), slog.String("reason", logged))
		w.turnSettled(m.Subject(), meta.Sequence.Stream, true)
		if err := m.Term(); err != nil {
			// Redelivered later; the dead letter's Nats-Msg-Id dedupes a second one.
			w.metrics.ackErrors.WithLabelValues("term").Inc()
			log.Warn("worker: term failed", slog.Any("error", err))
		}
	}
	w.metrics.outcome(o.label).Inc()
}

// nak asks JetStream to redeliver m after delay (at once when 0).
func (w *Worker) nak(m jetstream.Msg, delay time.Duration, log *slog.Logger) {
	var err error
	if delay > 0 {
		err = m.NakWithDelay(delay)
	} else {
		err = m.Nak()
	}
	if err != nil {
		// JetStream redelivers it after AckWait.
		w.metrics.ackErrors.WithLabelValues("nak").Inc()
		log.Warn("worker: nak failed", slog.Any("error", err))
	}
}

// dropPre releases the lock a batch Begin took for a delivery that will not
// use it (its payload is not an event, or names another key).
func (w *Worker) dropPre(pre *began) {
	if pre == nil || pre.Err != nil {
		return
	}
	w.unlock(pre.Lease, w.log.With(slog.String("key", pre.key)))
}

// finishOne marks lease's key done through the worker's group commit: the
// done marks of every run finishing at the same moment go to the store in one
// call (dedupe.FinishAll), bounded by opTimeout.
func (w *Worker) finishOne(lease dedupe.Lease) error {
	errs, err := w.finishes.Do([]dedupe.Lease{lease})
	if err != nil {
		return err
	}
	return errs[0]
}

// finishBatch is the commit of the done marks' group commit.
func (w *Worker) finishBatch(leases []dedupe.Lease) ([]error, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return dedupe.FinishAll(ctx, w.store, leases), nil
}

// beginBatch begins the runs of a fetched batch in one round trip
// (dedupe.BeginAll) and returns one answer per message, in order.
func (w *Worker) beginBatch(msgs []jetstream.Msg) []*began {
	keys := make([]string, len(msgs))
	for i, m := range msgs {
		keys[i] = m.Headers().Get(nats.MsgIdHdr)
	}
	taken := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), min(opTimeout, w.cfg.Heartbeat))
	res := dedupe.BeginAll(ctx, w.store, keys, dedupe.BeginOptions{TTL: w.cfg.LockTTL})
	cancel()
	wait := time.Since(taken).Seconds()
	out := make([]*began, len(msgs))
	for i := range msgs {
		w.metrics.lockWait.Observe(wait)
		out[i] = &began{key: keys[i], taken: taken, Began: res[i]}
	}
	return out
}
