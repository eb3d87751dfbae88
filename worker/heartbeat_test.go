package worker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/testenv"
)

// extendStore is a dedupe.Store whose Extend answers what the test says;
// the heartbeat uses no other method.
type extendStore struct {
	dedupe.Store // nil: any other call panics
	mu           sync.Mutex
	err          error
	calls        int
}

func (s *extendStore) Extend(context.Context, dedupe.Lease, time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return s.err
}

func (s *extendStore) set(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *extendStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

type progress struct{ n atomic.Int32 }

func (p *progress) InProgress() error { p.n.Add(1); return nil }

func heartbeatWorker(t *testing.T, s dedupe.Store) *Worker {
	t.Helper()
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Worker{
		cfg:     Config{LockTTL: 300 * time.Millisecond, Heartbeat: 50 * time.Millisecond},
		store:   s,
		metrics: m,
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func TestHeartbeatExtends(t *testing.T) {
	// Time is simulated: the beats come without waiting for them.
	synctest.Test(t, func(t *testing.T) {
		s := &extendStore{}
		w := heartbeatWorker(t, s)
		var p progress
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		hb := w.startHeartbeat(&p, dedupe.Lease{Key: "k", Token: "t", Fence: 1}, time.Now(), cancel, w.log)
		testenv.Eventually(t, 5*time.Second, func() bool { return s.count() >= 3 && p.n.Load() >= 3 }, "no heartbeats")
		hb.halt()
		if ctx.Err() != nil {
			t.Fatalf("run cancelled while the lock was held: %v", context.Cause(ctx))
		}
	})
}

func TestHeartbeatLockLost(t *testing.T) {
	// Time is simulated: the beats come without waiting for them.
	synctest.Test(t, func(t *testing.T) {
		s := &extendStore{err: dedupe.ErrLockLost}
		w := heartbeatWorker(t, s)
		var p progress
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		hb := w.startHeartbeat(&p, dedupe.Lease{Key: "k", Token: "t", Fence: 1}, time.Now(), cancel, w.log)
		defer hb.halt()
		testenv.Eventually(t, 5*time.Second, func() bool { return ctx.Err() != nil }, "run not cancelled")
		if cause := context.Cause(ctx); !errors.Is(cause, dedupe.ErrLockLost) {
			t.Fatalf("cause %v, want ErrLockLost", cause)
		}
		// It stops extending but keeps the message in progress.
		calls, sent := s.count(), p.n.Load()
		testenv.Eventually(t, 5*time.Second, func() bool { return p.n.Load() >= sent+2 }, "InProgress stopped")
		if s.count() != calls {
			t.Errorf("Extend called %d more times after the lock was lost", s.count()-calls)
		}
	})
}

func TestHeartbeatStoreDownUntilExpiry(t *testing.T) {
	// Time is simulated: the beats come without waiting for them.
	synctest.Test(t, func(t *testing.T) {
		s := &extendStore{err: errors.New("connection refused")}
		w := heartbeatWorker(t, s)
		var p progress
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		taken := time.Now()
		hb := w.startHeartbeat(&p, dedupe.Lease{Key: "k", Token: "t", Fence: 1}, taken, cancel, w.log)
		defer hb.halt()
		testenv.Eventually(t, 5*time.Second, func() bool { return ctx.Err() != nil }, "run not cancelled")
		if cause := context.Cause(ctx); !errors.Is(cause, errLockExpiring) {
			t.Fatalf("cause %v, want errLockExpiring", cause)
		}
		// It tried more than once before giving up, and gave up before expiry.
		if n := s.count(); n < 2 {
			t.Errorf("Extend tried %d times, want several", n)
		}
		if got := value(w.metrics.heartbeatErrors.WithLabelValues("extend")); got < 2 {
			t.Errorf("extend errors %v", got)
		}
	})
}

func TestHeartbeatRecovers(t *testing.T) {
	// Time is simulated: the beats come without waiting for them.
	synctest.Test(t, func(t *testing.T) {
		s := &extendStore{err: errors.New("timeout")}
		w := heartbeatWorker(t, s)
		w.cfg.LockTTL = time.Hour // far from expiry: failures are only retried
		var p progress
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		hb := w.startHeartbeat(&p, dedupe.Lease{Key: "k", Token: "t", Fence: 1}, time.Now(), cancel, w.log)
		testenv.Eventually(t, 5*time.Second, func() bool { return s.count() >= 2 }, "no retries")
		s.set(nil)
		n := s.count()
		testenv.Eventually(t, 5*time.Second, func() bool { return s.count() >= n+2 }, "no extension after recovery")
		hb.halt()
		if ctx.Err() != nil {
			t.Fatalf("run cancelled: %v", context.Cause(ctx))
		}
	})
}

// A handler that returns within one Heartbeat costs its heartbeat nothing:
// no Extend, no InProgress, and no goroutine left behind; halt then reports
// the lock's expiry counted from when it was taken. Time is simulated.
func TestHeartbeatQuickHandlerCostsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &extendStore{}
		w := heartbeatWorker(t, s)
		var p progress
		_, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		taken := time.Now()
		hb := w.startHeartbeat(&p, dedupe.Lease{Key: "k", Token: "t", Fence: 1}, taken, cancel, w.log)
		time.Sleep(w.cfg.Heartbeat - time.Millisecond) // the handler runs
		synctest.Wait()
		expires := hb.halt()
		synctest.Wait() // every goroutine of the bubble is blocked or gone
		if s.count() != 0 || p.n.Load() != 0 {
			t.Fatalf("quick handler: %d extensions, %d InProgress; want none", s.count(), p.n.Load())
		}
		if want := taken.Add(w.cfg.LockTTL); !expires.Equal(want) {
			t.Fatalf("halt: lock expires %v, want %v", expires, want)
		}

		// One that runs longer gets its beats, the first one Heartbeat in.
		hb = w.startHeartbeat(&p, dedupe.Lease{Key: "k", Token: "t", Fence: 1}, time.Now(), cancel, w.log)
		time.Sleep(w.cfg.Heartbeat + time.Millisecond)
		synctest.Wait()
		if s.count() != 1 || p.n.Load() != 1 {
			t.Fatalf("after one Heartbeat: %d extensions, %d InProgress; want 1 and 1", s.count(), p.n.Load())
		}
		time.Sleep(w.cfg.Heartbeat)
		synctest.Wait()
		if s.count() != 2 {
			t.Fatalf("after two Heartbeats: %d extensions, want 2", s.count())
		}
		hb.halt()
	})
}
