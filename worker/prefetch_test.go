package worker

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
)

// With Prefetch, a message fetched ahead, waiting for a runner while the
// only one runs a handler longer than AckWait, is kept in progress:
// JetStream never redelivers it, and it runs once, on its first delivery.
func TestWaitingKeptInProgress(t *testing.T) {
	sc := testStreams()
	sc.AckWait = time.Second
	e := newEnv(t, sc, "")
	first, second := e.event(), e.event()
	e.publish(first)
	e.publish(second)

	var (
		mu         sync.Mutex
		deliveries = map[string][]uint64{}
	)
	running := make(chan struct{})
	r := e.start(Config{Concurrency: 1, Prefetch: 1, Heartbeat: 200 * time.Millisecond}, HandlerFunc(func(ctx context.Context, ev messages.Event) error {
		run, _ := RunFromContext(ctx)
		mu.Lock()
		deliveries[ev.Key] = append(deliveries[ev.Key], run.Delivery)
		n := len(deliveries)
		mu.Unlock()
		if n == 1 {
			close(running)
			time.Sleep(3 * sc.AckWait) // the heartbeat keeps this one alive
		}
		return nil
	}))
	<-running
	// Both were fetched: one runs, the other waits for the runner.
	if info := e.consumer(); info.NumAckPending != 2 {
		t.Fatalf("ack pending %d while the first handler runs, want 2 (one running, one fetched ahead)", info.NumAckPending)
	}
	// The one waiting is not begun (G2): a lock taken before its run
	// could lapse while it waits, and another worker run it beside it.
	if a, b := e.record(first.Key), e.record(second.Key); a.Locked == b.Locked {
		t.Fatalf("while one handler runs: records %+v and %+v, want exactly one locked", a, b)
	}
	testenv.Eventually(t, wait, func() bool { return r.outcomes(outcomeDone) == 2 && e.settled() }, "events not done")

	mu.Lock()
	defer mu.Unlock()
	for _, k := range []string{first.Key, second.Key} {
		if got := deliveries[k]; len(got) != 1 || got[0] != 1 {
			t.Errorf("%s ran on deliveries %v, want once, on delivery 1", k, got)
		}
	}
	if n := value(r.w.metrics.redeliveries); n != 0 {
		t.Errorf("%v redeliveries, want 0: a message waiting for a runner was not kept in progress", n)
	}
}

// When Run stops, a message fetched ahead (Prefetch) and never begun is
// Nak'd at once, not left to AckWait: another worker runs it without
// waiting.
func TestStopHandsBackWaiting(t *testing.T) {
	sc := testStreams()
	sc.AckWait = time.Minute // far longer than this test waits
	e := newEnv(t, sc, "")
	stuck, waiting := e.event(), e.event()
	e.publish(stuck)
	e.publish(waiting)

	started := make(chan struct{})
	first := e.start(Config{Concurrency: 1, Prefetch: 1, ShutdownTimeout: 100 * time.Millisecond}, HandlerFunc(func(ctx context.Context, ev messages.Event) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}))
	<-started
	if info := e.consumer(); info.NumAckPending != 2 {
		t.Fatalf("ack pending %d while the first handler runs, want 2", info.NumAckPending)
	}
	first.stop(t)
	if rec := e.record(waiting.Key); rec.Locked || rec.State == dedupe.Done {
		t.Fatalf("waiting event after stop: %+v, want neither locked nor done (never begun)", rec)
	}

	// Left unanswered, the waiting message would come back after AckWait, a
	// minute: well after this limit.
	second := e.start(Config{}, HandlerFunc(func(context.Context, messages.Event) error { return nil }))
	testenv.Eventually(t, 15*time.Second, func() bool { return second.outcomes(outcomeDone) == 2 && e.settled() }, "handed-back events not done well within AckWait")
}

// Without Prefetch (the default) a worker holds only the messages its
// handlers run: an event it has not begun is not held back by it, so a
// worker that dies spends no delivery of it.
func TestNoPrefetchHoldsOnlyRunning(t *testing.T) {
	e := newEnv(t, testStreams(), "")
	for range 3 {
		e.publish(e.event())
	}
	release := make(chan struct{})
	var started atomic.Int32
	r := e.start(Config{Concurrency: 2}, HandlerFunc(func(ctx context.Context, ev messages.Event) error {
		started.Add(1)
		<-release
		return nil
	}))
	testenv.Eventually(t, wait, func() bool { return started.Load() == 2 }, "handlers not started")
	// Pulls that would take the third message would have been sent by now;
	// give a wrong one time to land.
	time.Sleep(200 * time.Millisecond)
	if info := e.consumer(); info.NumAckPending != 2 || info.NumPending != 1 {
		t.Errorf("with 2 handlers running: ack pending %d, pending %d; want 2 and 1", info.NumAckPending, info.NumPending)
	}
	close(release)
	testenv.Eventually(t, wait, func() bool { return r.outcomes(outcomeDone) == 3 && e.settled() }, "events not done")
}
