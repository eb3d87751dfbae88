package worker

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/connect"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
)

// persistentRedis is a private Redis that keeps every write across a
// restart (AOF, fsync always), so that a lock outlives an outage.
func persistentRedis(t *testing.T) *testenv.Redis {
	return testenv.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
}

// useCommandStore makes e's worker store use a Redis client configured as
// the commands configure theirs (connect.Redis: one dial attempt), so that
// an outage fails a call at once instead of being hidden by dial retries.
func useCommandStore(t *testing.T, e *env, url string) {
	rc, err := connect.Redis(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	e.store = dedupe.NewRedis(rc, dedupe.RedisOptions{})
}

// outage stops rs and starts it again after d, on a goroutine the test
// waits for.
func outage(t *testing.T, rs *testenv.Redis, d time.Duration) {
	rs.Stop()
	var wg sync.WaitGroup
	wg.Go(func() {
		time.Sleep(d) // the length of the outage under test
		rs.Start()
	})
	t.Cleanup(wg.Wait)
}

// A store outage between a handler's success and its done mark, shorter
// than the lock's remaining life, must not turn the completed run into a
// re-run: the done mark is retried while the lock is held (found by the fault
// suite, scripts/chaos, scenario "redis restart").
func TestFinishOutlivesShortStoreOutage(t *testing.T) {
	rs := persistentRedis(t)
	sc := testStreams()
	sc.MaxDeliver = -1 // the outage must not exhaust the deliveries
	sc.BackOff = []time.Duration{100 * time.Millisecond}
	e := newEnv(t, sc, rs.URL())
	useCommandStore(t, e, rs.URL())
	var c calls
	var first atomic.Bool
	r := e.start(Config{LockTTL: 4 * time.Second}, HandlerFunc(func(ctx context.Context, ev messages.Event) error {
		c.add(ctx, ev.Key)
		if first.CompareAndSwap(false, true) {
			// The side effect is done; the store goes away before the done
			// mark and comes back well within LockTTL.
			outage(t, rs, time.Second)
		}
		return nil
	}))
	ev := e.event()
	e.publish(ev)

	testenv.Eventually(t, wait, func() bool { return r.outcomes(outcomeDone) == 1 && e.settled() }, "event not completed")
	runs := c.of(ev.Key)
	if len(runs) != 1 {
		t.Fatalf("handler ran %d times, want once: %+v", len(runs), runs)
	}
	if rec := e.record(ev.Key); rec.State != dedupe.Done || rec.Fence != runs[0].Fence || rec.Locked {
		t.Errorf("record %+v, want done with fence %d and unlocked", rec, runs[0].Fence)
	}
	if got := r.outcomes(outcomeStoreError); got != 0 {
		t.Errorf("store_error outcomes %v, want 0: the done mark was not retried", got)
	}
	if info := e.consumer(); info.NumRedelivered != 0 {
		t.Errorf("redelivered %d messages, want 0", info.NumRedelivered)
	}
}

// When the outage outlasts the lock, the done mark is given up before the
// lock could expire: the message is Nak'd, and the run that follows once the
// store is back carries a higher fencing number.
func TestFinishGivesUpBeforeLockExpiry(t *testing.T) {
	rs := persistentRedis(t)
	sc := testStreams()
	sc.MaxDeliver = -1 // the outage must not exhaust the deliveries
	sc.BackOff = []time.Duration{100 * time.Millisecond}
	e := newEnv(t, sc, rs.URL())
	useCommandStore(t, e, rs.URL())
	var c calls
	var first atomic.Bool
	r := e.start(Config{LockTTL: time.Second}, HandlerFunc(func(ctx context.Context, ev messages.Event) error {
		c.add(ctx, ev.Key)
		if first.CompareAndSwap(false, true) {
			outage(t, rs, 2500*time.Millisecond)
		}
		return nil
	}))
	ev := e.event()
	e.publish(ev)

	testenv.Eventually(t, wait, func() bool { return r.outcomes(outcomeDone) == 1 && e.settled() }, "event not completed")
	runs := c.of(ev.Key)
	if len(runs) != 2 || runs[1].Fence <= runs[0].Fence {
		t.Fatalf("runs %+v, want two with rising fencing numbers", runs)
	}
	if got := r.outcomes(outcomeStoreError); got < 1 {
		t.Errorf("store_error outcomes %v, want the first run's done mark to fail", got)
	}
	if rec := e.record(ev.Key); rec.State != dedupe.Done || rec.Fence != runs[1].Fence {
		t.Errorf("record %+v, want done with fence %d", rec, runs[1].Fence)
	}
}
