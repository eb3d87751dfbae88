package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/messages"
)

func TestReplayOutcomes(t *testing.T) {
	e := newEnv(t, testStreams(), "")
	var c calls
	failing := errors.New("downstream refused")
	hung := make(chan struct{}, 1)
	// Each store call of a run is bounded by Heartbeat, and a replay's first
	// failed Begin is final: Heartbeat leaves a busy machine's Redis time to
	// answer, and LockTTL leaves the heartbeat as much time to be late.
	w, err := New(Config{Streams: e.sc, LockTTL: 2 * time.Second, Heartbeat: 500 * time.Millisecond}, e.js, e.store,
		HandlerFunc(func(ctx context.Context, ev messages.Event) error {
			c.add(ctx, ev.Key)
			switch ev.Type {
			case "permanent":
				return Permanent(failing)
			case "slow":
				// Outlives LockTTL: the heartbeat must keep the lock.
				select {
				case <-time.After(3 * time.Second):
				case <-ctx.Done():
					return ctx.Err()
				}
			case "hang":
				hung <- struct{}{}
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("done, then skipped, then forced", func(t *testing.T) {
		ev := e.event()
		r, err := w.Replay(e.ctx(), ev, ReplayOptions{})
		if err != nil || r.Outcome != OutcomeDone || r.Fence < 1 {
			t.Fatalf("first replay: %+v, %v", r, err)
		}
		if runs := c.of(ev.Key); len(runs) != 1 || runs[0].Fence != r.Fence || runs[0].Delivery != 0 {
			t.Errorf("handler saw %+v, want one run with fence %d and delivery 0", runs, r.Fence)
		}
		r2, err := w.Replay(e.ctx(), ev, ReplayOptions{})
		if err != nil || r2.Outcome != OutcomeSkipped || r2.Fence != 0 || len(c.of(ev.Key)) != 1 {
			t.Errorf("second replay: %+v, %v, %d runs", r2, err, len(c.of(ev.Key)))
		}
		r3, err := w.Replay(e.ctx(), ev, ReplayOptions{Force: true})
		if err != nil || r3.Outcome != OutcomeDone || r3.Fence <= r.Fence {
			t.Errorf("forced replay: %+v, %v; want done with a fence above %d", r3, err, r.Fence)
		}
	})

	t.Run("busy", func(t *testing.T) {
		ev := e.event()
		l, err := e.store.Begin(e.ctx(), ev.Key, dedupe.BeginOptions{TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		r, err := w.Replay(e.ctx(), ev, ReplayOptions{Force: true})
		if r.Outcome != OutcomeBusy || !errors.Is(err, dedupe.ErrBusy) || len(c.of(ev.Key)) != 0 {
			t.Errorf("replay of a locked key: %+v, %v, %d runs", r, err, len(c.of(ev.Key)))
		}
		if err := e.store.Unlock(e.ctx(), l); err != nil {
			t.Errorf("the holder lost its lock: %v", err)
		}
	})

	t.Run("permanent failure is reported, not dead-lettered", func(t *testing.T) {
		ev := e.event()
		ev.Type = "permanent"
		r, err := w.Replay(e.ctx(), ev, ReplayOptions{})
		if r.Outcome != OutcomePermanent || !IsPermanent(err) || !errors.Is(err, failing) {
			t.Errorf("replay: %+v, %v", r, err)
		}
		if rec := e.record(ev.Key); rec.State == dedupe.Done || rec.Locked {
			t.Errorf("after a permanent failure: %+v, want not done, unlocked", rec)
		}
		if n := len(e.dlq()); n != 0 {
			t.Errorf("%d dead letters, want none", n)
		}
	})

	t.Run("lock kept past LockTTL", func(t *testing.T) {
		ev := e.event()
		ev.Type = "slow"
		r, err := w.Replay(e.ctx(), ev, ReplayOptions{})
		if err != nil || r.Outcome != OutcomeDone {
			t.Errorf("slow replay: %+v, %v", r, err)
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		ev := e.event()
		ev.Type = "hang"
		ctx, cancel := context.WithCancel(e.ctx())
		go func() {
			<-hung // the handler runs
			cancel()
		}()
		r, err := w.Replay(ctx, ev, ReplayOptions{})
		if r.Outcome != OutcomeInterrupted || !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled replay: %+v, %v", r, err)
		}
		if rec := e.record(ev.Key); rec.State == dedupe.Done || rec.Locked {
			t.Errorf("after cancellation: %+v, want not done, unlocked", rec)
		}
	})

	t.Run("no key", func(t *testing.T) {
		if _, err := w.Replay(e.ctx(), messages.Event{}, ReplayOptions{}); !errors.Is(err, dedupe.ErrInvalidKey) {
			t.Errorf("replay without a key: %v", err)
		}
	})
}
