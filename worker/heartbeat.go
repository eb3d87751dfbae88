package worker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/wagate/wagate/dedupe"
)

// inProgresser is the part of a JetStream message the heartbeat touches.
type inProgresser interface {
	InProgress() error
}

// heartbeat keeps one run's lock and message alive while its handler runs:
// every Config.Heartbeat it extends the lock by LockTTL and tells JetStream
// the message is in progress (resetting AckWait).
//
// When the store answers dedupe.ErrLockLost, or extensions keep failing until
// the next one could come too late, the heartbeat cancels the run's context
// with a cause wrapping dedupe.ErrLockLost, and stops extending; it goes on
// sending InProgress until halted, so the message is not redelivered while
// the handler winds down.
//
// A handler that returns within one Heartbeat costs its heartbeat one timer
// and nothing else: no goroutine, no store call, no InProgress.
type heartbeat struct {
	stop  chan struct{}
	done  chan struct{}
	timer *time.Timer // starts beat one Heartbeat after the lock was taken
	// expires is the earliest the lock may expire after the last extension
	// that succeeded (or after it was taken); set before done is closed.
	expires time.Time
}

// startHeartbeat starts the heartbeat of lease l, taken at (or just after)
// taken, for message m. cancel cancels the handler's context.
func (w *Worker) startHeartbeat(m inProgresser, l dedupe.Lease, taken time.Time, cancel context.CancelCauseFunc, log *slog.Logger) *heartbeat {
	hb := &heartbeat{stop: make(chan struct{}), done: make(chan struct{}), expires: taken.Add(w.cfg.LockTTL)}
	// The first beat is due one Heartbeat after the lock was taken (a lock
	// begun with its fetched batch was taken before its handler started).
	hb.timer = time.AfterFunc(max(0, time.Until(taken.Add(w.cfg.Heartbeat))), func() {
		defer close(hb.done)
		hb.expires = w.beat(hb.stop, m, l, taken, cancel, log)
	})
	return hb
}

// halt stops the heartbeat, waits for it, and returns the earliest time the
// lock may expire (in the past once the heartbeat gave the lock up).
func (hb *heartbeat) halt() time.Time {
	close(hb.stop)
	if hb.timer.Stop() {
		return hb.expires // never beat: the lock lives LockTTL from taken
	}
	<-hb.done
	return hb.expires
}

// beat runs the heartbeat until stop is closed, and returns the earliest
// time the lock may expire.
func (w *Worker) beat(stop <-chan struct{}, m inProgresser, l dedupe.Lease, taken time.Time, cancel context.CancelCauseFunc, log *slog.Logger) time.Time {
	t := time.NewTicker(w.cfg.Heartbeat)
	defer t.Stop()
	// expires is the earliest the lock may expire: a TTL counted from before
	// the command that set it was sent.
	expires := taken.Add(w.cfg.LockTTL)
	held := true
	// The first beat is due now: beat starts one Heartbeat after taken.
	first := make(chan time.Time, 1)
	first <- time.Now()
	for {
		select {
		case <-stop:
			if !held {
				return time.Time{}
			}
			return expires
		case <-first:
		case <-t.C:
		}
		if err := m.InProgress(); err != nil {
			w.metrics.heartbeatErrors.WithLabelValues("in_progress").Inc()
			log.Warn("worker: in-progress signal failed", slog.Any("error", err))
		}
		if !held {
			continue
		}
		sent := time.Now()
		ctx, cancelExtend := context.WithTimeout(context.Background(), w.cfg.Heartbeat)
		err := w.store.Extend(ctx, l, w.cfg.LockTTL)
		cancelExtend()
		switch {
		case err == nil:
			expires = sent.Add(w.cfg.LockTTL)
		case errors.Is(err, dedupe.ErrLockLost):
			held = false
			w.metrics.heartbeatErrors.WithLabelValues("lock_lost").Inc()
			log.Warn("worker: lock lost while the handler ran; cancelling it")
			cancel(errLockLost)
		default:
			w.metrics.heartbeatErrors.WithLabelValues("extend").Inc()
			if time.Until(expires) > w.cfg.Heartbeat {
				log.Warn("worker: lock extension failed; will try again", slog.Time("lock_expires", expires), slog.Any("error", err))
				continue
			}
			held = false
			log.Warn("worker: lock extension failed and the lock is about to expire; cancelling the handler", slog.Any("error", err))
			cancel(errLockExpiring)
		}
	}
}
