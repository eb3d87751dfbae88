package worker

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/messages/streams"
)

const wait = 20 * time.Second

// A: a handler that fails twice then succeeds completes once, on the third
// delivery, with rising fencing numbers; the event is redelivered by Nak,
// never published again.
func TestRetryThenSucceed(t *testing.T) {
	e := newEnv(t, testStreams(), "")
	var c calls
	var done atomic.Int32
	r := e.start(Config{}, HandlerFunc(func(ctx context.Context, ev messages.Event) error {
		run := c.add(ctx, ev.Key)
		if run.Delivery < 3 {
			return errors.New("downstream unavailable")
		}
		done.Add(1)
		return nil
	}))
	ev := e.event()
	e.publish(ev)

	testenv.Eventually(t, wait, func() bool { return done.Load() == 1 && e.settled() }, "event not completed")
	runs := c.of(ev.Key)
	if len(runs) != 3 {
		t.Fatalf("handler ran %d times, want 3: %+v", len(runs), runs)
	}
	for i, run := range runs {
		if run.Delivery != uint64(i+1) {
			t.Errorf("run %d: delivery %d, want %d", i, run.Delivery, i+1)
		}
		if i > 0 && run.Fence <= runs[i-1].Fence {
			t.Errorf("run %d: fence %d not above %d", i, run.Fence, runs[i-1].Fence)
		}
	}
	if got := e.streamMsgs(e.sc.WithDefaults().Events); got != 1 {
		t.Errorf("events stream holds %d messages, want 1 (never re-published)", got)
	}
	if rec := e.record(ev.Key); rec.State != dedupe.Done || rec.Locked {
		t.Errorf("record %+v, want done and unlocked", rec)
	}
	if got := r.outcomes(outcomeRetry); got != 2 {
		t.Errorf("retry outcomes %v, want 2", got)
	}
	if got := r.outcomes(outcomeDone); got != 1 {
		t.Errorf("done outcomes %v, want 1", got)
	}
	if got := value(r.w.metrics.redeliveries); got != 2 {
		t.Errorf("redeliveries %v, want 2", got)
	}
	if len(e.dlq()) != 0 {
		t.Errorf("dead letters present")
	}
}

// B: an event already marked done is acked without running the handler.
func TestDoneIsAckedWithoutRunning(t *testing.T) {
	e := newEnv(t, testStreams(), "")
	ev := e.event()
	lease, err := e.store.Begin(e.ctx(), ev.Key, dedupe.BeginOptions{TTL: time.Minute})
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	if err := e.store.Finish(e.ctx(), lease); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	var ran atomic.Int32
	r := e.start(Config{}, HandlerFunc(func(context.Context, messages.Event) error {
		ran.Add(1)
		return nil
	}))
	e.publish(ev)

	testenv.Eventually(t, wait, func() bool { return r.outcomes(outcomeDuplicate) == 1 && e.settled() },
		"duplicate not acked")
	if n := ran.Load(); n != 0 {
		t.Fatalf("handler ran %d times for a done key", n)
	}
	info := e.consumer()
	if info.NumAckPending != 0 || info.NumPending != 0 || info.NumRedelivered != 0 {
		t.Errorf("consumer: ack pending %d, pending %d, redelivered %d; want 0, 0, 0",
			info.NumAckPending, info.NumPending, info.NumRedelivered)
	}
}

// E: a handler that outlives LockTTL and AckWait keeps its lock and its
// message by heartbeats: it runs once and is not redelivered. The lock and
// AckWait leave the heartbeat (every 667 ms) 1.3 s of lateness before they
// lapse: a busy machine delays an extension by a few hundred milliseconds.
func TestHeartbeatKeepsLongRun(t *testing.T) {
	sc := testStreams()
	sc.AckWait = 2 * time.Second
	e := newEnv(t, sc, "")
	var c calls
	var lockedLate atomic.Bool
	r := e.start(Config{LockTTL: 2 * time.Second}, HandlerFunc(func(ctx context.Context, ev messages.Event) error {
		c.add(ctx, ev.Key)
		select {
		case <-time.After(5 * time.Second): // the work: longer than LockTTL and AckWait
		case <-ctx.Done():
			return ctx.Err()
		}
		rec, err := e.store.Lookup(context.Background(), ev.Key)
		lockedLate.Store(err == nil && rec.Locked)
		return nil
	}))
	ev := e.event()
	e.publish(ev)

	testenv.Eventually(t, wait, func() bool { return r.outcomes(outcomeDone) == 1 && e.settled() }, "long run not completed")
	if runs := c.of(ev.Key); len(runs) != 1 || runs[0].Delivery != 1 {
		t.Fatalf("runs %+v, want one run on delivery 1", runs)
	}
	if !lockedLate.Load() {
		t.Errorf("lock not held after 5s with LockTTL 2s")
	}
	if info := e.consumer(); info.NumRedelivered != 0 {
		t.Errorf("redelivered %d messages, want 0", info.NumRedelivered)
	}
	if got := value(r.w.metrics.heartbeatErrors); got != 0 {
		t.Errorf("heartbeat errors %v, want 0", got)
	}
}

// F: a lock lost mid-run cancels the handler's context; the key is not
// marked done and a later run gets a higher fencing number.
func TestLockLostCancelsHandler(t *testing.T) {
	e := newEnv(t, testStreams(), "")
	var c calls
	var cause atomic.Value
	stateAfterFirst := make(chan dedupe.Record, 1)
	r := e.start(Config{LockTTL: time.Second}, HandlerFunc(func(ctx context.Context, ev messages.Event) error {
		run := c.add(ctx, ev.Key)
		if run.Delivery > 1 {
			rec, err := e.store.Lookup(context.Background(), ev.Key)
			if err == nil {
				stateAfterFirst <- rec
			}
			return nil
		}
		// Another holder steals the lock (as after an expiry); the
		// heartbeat's next extension finds it lost.
		lock := "{" + ev.Key + "}:l"
		if err := e.rdb.Set(context.Background(), lock, "thief", 300*time.Millisecond).Err(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			cause.Store(context.Cause(ctx))
			return ctx.Err()
		case <-time.After(wait):
			return errors.New("context not cancelled after the lock was lost")
		}
	}))
	ev := e.event()
	e.publish(ev)

	testenv.Eventually(t, wait, func() bool { return r.outcomes(outcomeDone) == 1 && e.settled() }, "event not completed")
	if err, _ := cause.Load().(error); !errors.Is(err, dedupe.ErrLockLost) {
		t.Fatalf("handler context cause %v, want ErrLockLost", err)
	}
	rec := <-stateAfterFirst
	if rec.State == dedupe.Done {
		t.Errorf("key marked done by the run that lost its lock")
	}
	runs := c.of(ev.Key)
	if len(runs) != 2 || runs[1].Fence <= runs[0].Fence {
		t.Fatalf("runs %+v, want two with rising fences", runs)
	}
	if got := r.outcomes(outcomeLockLost); got != 1 {
		t.Errorf("lock_lost outcomes %v, want 1", got)
	}
	if got := value(r.w.metrics.heartbeatErrors.WithLabelValues("lock_lost")); got != 1 {
		t.Errorf("lock_lost heartbeats %v, want 1", got)
	}
}

// G: with Redis down the handler never runs; the message is Nak'd and
// processed once Redis is back.
func TestRedisDownDelays(t *testing.T) {
	rs := testenv.StartRedis(t)
	sc := testStreams()
	sc.MaxDeliver = -1 // the outage must not exhaust the deliveries
	sc.BackOff = []time.Duration{100 * time.Millisecond}
	e := newEnv(t, sc, rs.URL())
	var ran atomic.Int32
	r := e.start(Config{}, HandlerFunc(func(context.Context, messages.Event) error {
		ran.Add(1)
		return nil
	}))
	rs.Stop()
	ev := e.event()
	e.publish(ev)

	testenv.Eventually(t, wait, func() bool { return r.outcomes(outcomeStoreError) >= 2 }, "no Nak while Redis is down")
	if n := ran.Load(); n != 0 {
		t.Fatalf("handler ran %d times without the lock", n)
	}
	rs.Start()
	testenv.Eventually(t, wait, func() bool { return r.outcomes(outcomeDone) == 1 && e.settled() }, "event not processed after Redis came back")
	if n := ran.Load(); n != 1 {
		t.Errorf("handler ran %d times, want 1", n)
	}
	if rec := e.record(ev.Key); rec.State != dedupe.Done {
		t.Errorf("state %v, want done", rec.State)
	}
	if len(e.dlq()) != 0 {
		t.Errorf("dead letters present")
	}
}

// G5 with the delivery budget of a real deployment: a dedupe store outage
// longer than the whole BackOff schedule is not the event's fault. The event
// waits for the store (README: "Redis down at the worker: the event waits")
// instead of spending its deliveries on Naks and landing in the dead-letter
// stream without ever having run.
func TestRedisOutageDoesNotSpendDeliveries(t *testing.T) {
	rs := testenv.StartRedis(t)
	sc := testStreams()
	sc.MaxDeliver = 3
	sc.BackOff = []time.Duration{50 * time.Millisecond}
	e := newEnv(t, sc, rs.URL())
	var ran atomic.Int32
	r := e.start(Config{}, HandlerFunc(func(context.Context, messages.Event) error {
		ran.Add(1)
		return nil
	}))
	rs.Stop()
	ev := e.event()
	e.publish(ev)

	// Wait until the store has failed more often than the delivery budget
	// could pay for, were each failure a Nak (then the event would be a
	// dead letter by now), or until a dead letter shows up.
	budget := float64(2*sc.MaxDeliver + 1)
	testenv.Eventually(t, wait, func() bool {
		return r.outcomes(outcomeStoreError) >= budget || len(e.dlq()) > 0
	}, "the worker never tried the dedupe store")
	if n := len(e.dlq()); n != 0 {
		t.Fatalf("%d dead letters while the store was down: the outage spent the event's deliveries", n)
	}
	if n := ran.Load(); n != 0 {
		t.Fatalf("handler ran %d times without the lock", n)
	}
	rs.Start()
	testenv.Eventually(t, wait, func() bool { return ran.Load() == 1 && e.settled() }, "event not processed after Redis came back")
	if n := len(e.dlq()); n != 0 {
		t.Errorf("%d dead letters for an event that never failed (outcomes: dead_letter %v)", n, r.outcomes(outcomeDeadLetter))
	}
	if rec := e.record(ev.Key); rec.State != dedupe.Done {
		t.Errorf("state %v, want done", rec.State)
	}
}

// A lock left by a worker that died (or a second copy of the event) makes
// Begin answer busy. Busy deliveries are Nak'd, but the last one holds the
// event until the lock goes: an event that never failed is run once, not
// dead-lettered for having found its lock taken.
func TestBusyNeverDeadLettersAHealthyEvent(t *testing.T) {
	// The dead holder's lock: it outlives the first delivery's Nak and the
	// second, last delivery's arrival.
	const holderTTL = 1500 * time.Millisecond
	b := startBusy(t, holderTTL)
	e, ev, held, c, r := b.e, b.ev, b.held, b.c, b.r
	start := time.Now()
	e.publish(ev)

	testenv.Eventually(t, wait, func() bool {
		return (len(c.of(ev.Key)) == 1 && e.settled()) || len(e.dlq()) > 0
	}, "event neither processed nor dead-lettered after the holder's lock expired")
	if n := len(e.dlq()); n != 0 {
		t.Fatalf("%d dead letters for an event that only found its lock taken", n)
	}
	runs := c.of(ev.Key)
	if runs[0].Fence != held.Fence+1 || runs[0].Delivery != 2 {
		t.Errorf("run %+v, want fence %d on delivery 2 (the last)", runs[0], held.Fence+1)
	}
	if took := time.Since(start); took < holderTTL {
		t.Errorf("handler ran %v after the publish, before the holder's lock (%v) could expire", took, holderTTL)
	}
	if got := r.outcomes(outcomeBusy); got != 1 {
		t.Errorf("busy outcomes %v, want 1: one Nak, then the last delivery holds", got)
	}
	if rec := e.record(ev.Key); rec.State != dedupe.Done || rec.Locked {
		t.Errorf("record %+v, want done and unlocked", rec)
	}
}

// busy is the scene of the busy tests: an event (not yet published) whose
// lock another run holds, and a worker whose handler records its runs, on
// a consumer that delivers each event twice at most.
type busy struct {
	e    *env
	ev   messages.Event
	held dedupe.Lease // the other run's lease
	c    *calls
	r    *running
}

// startBusy sets up busy with the other run's lock living holderTTL.
func startBusy(t *testing.T, holderTTL time.Duration) busy {
	t.Helper()
	sc := testStreams()
	sc.MaxDeliver = 2
	b := busy{e: newEnv(t, sc, ""), c: &calls{}}
	b.ev = b.e.event()
	var err error
	if b.held, err = b.e.store.Begin(b.e.ctx(), b.ev.Key, dedupe.BeginOptions{TTL: holderTTL}); err != nil {
		t.Fatalf("Begin of the holder: %v", err)
	}
	b.r = b.e.start(Config{Heartbeat: 100 * time.Millisecond}, HandlerFunc(func(ctx context.Context, ev messages.Event) error {
		b.c.add(ctx, ev.Key)
		return nil
	}))
	return b
}

// A busy event held on its last delivery whose holder is alive and finishes
// is acknowledged as a duplicate: the handler does not run again, nothing is
// dead-lettered.
func TestBusyOnLastDeliveryAckedWhenHolderFinishes(t *testing.T) {
	b := startBusy(t, time.Minute)
	e, ev, held, c, r := b.e, b.ev, b.held, b.c, b.r
	e.publish(ev)

	// The first delivery is Nak'd busy; the second, the last, is held.
	testenv.Eventually(t, wait, func() bool {
		return r.outcomes(outcomeBusy) == 1 && e.consumer().Delivered.Consumer >= 2
	}, "the last delivery never came")
	if n := len(e.dlq()); n != 0 {
		t.Fatalf("%d dead letters while the holder runs", n)
	}
	if err := e.store.Finish(e.ctx(), held); err != nil {
		t.Fatalf("Finish of the holder: %v", err)
	}
	testenv.Eventually(t, wait, func() bool {
		return r.outcomes(outcomeDuplicate) == 1 && e.settled()
	}, "held event not acknowledged after its holder finished")
	if n := len(c.of(ev.Key)); n != 0 {
		t.Errorf("handler ran %d times for an event its holder finished", n)
	}
	if n := len(e.dlq()); n != 0 {
		t.Errorf("%d dead letters for an event its holder finished", n)
	}
}

// H: shutdown lets in-flight handlers finish within ShutdownTimeout.
func TestShutdownFinishesInFlight(t *testing.T) {
	e := newEnv(t, testStreams(), "")
	release := make(chan struct{})
	var started, finished atomic.Int32
	r := e.start(Config{Concurrency: 3}, HandlerFunc(func(ctx context.Context, ev messages.Event) error {
		started.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		finished.Add(1)
		return nil
	}))
	var keys []string
	for range 3 {
		ev := e.event()
		keys = append(keys, ev.Key)
		e.publish(ev)
	}
	testenv.Eventually(t, wait, func() bool { return started.Load() == 3 }, "handlers not started")

	r.cancel()
	select {
	case <-r.done:
		t.Fatalf("Run returned with handlers in flight")
	default:
	}
	close(release)
	r.stop(t)

	if n := finished.Load(); n != 3 {
		t.Fatalf("%d handlers finished, want 3", n)
	}
	for _, k := range keys {
		if rec := e.record(k); rec.State != dedupe.Done || rec.Locked {
			t.Errorf("%s: %+v, want done and unlocked", k, rec)
		}
	}
	if !e.settled() {
		t.Errorf("consumer not settled: %+v", e.consumer())
	}
}

// H: shutdown past ShutdownTimeout cancels handlers, releases their locks
// and Naks their messages; another worker then processes everything, each
// event once.
func TestShutdownCancelsAndReleases(t *testing.T) {
	e := newEnv(t, testStreams(), "")
	var started atomic.Int32
	first := e.start(Config{Concurrency: 3, ShutdownTimeout: 200 * time.Millisecond}, HandlerFunc(func(ctx context.Context, ev messages.Event) error {
		started.Add(1)
		<-ctx.Done() // stuck until cancelled
		return ctx.Err()
	}))
	const n = 5
	var keys []string
	for range n {
		ev := e.event()
		keys = append(keys, ev.Key)
		e.publish(ev)
	}
	testenv.Eventually(t, wait, func() bool { return started.Load() == 3 }, "handlers not started")
	first.stop(t)

	if got := first.outcomes(outcomeInterrupted); got != 3 {
		t.Errorf("interrupted outcomes %v, want 3", got)
	}
	for _, k := range keys {
		if rec := e.record(k); rec.Locked || rec.State == dedupe.Done {
			t.Errorf("%s after shutdown: %+v, want unlocked and not done", k, rec)
		}
	}

	var mu sync.Mutex
	count := map[string]int{}
	second := e.start(Config{}, HandlerFunc(func(ctx context.Context, ev messages.Event) error {
		mu.Lock()
		count[ev.Key]++
		mu.Unlock()
		return nil
	}))
	testenv.Eventually(t, wait, func() bool { return second.outcomes(outcomeDone) == n && e.settled() }, "events lost after shutdown")
	mu.Lock()
	defer mu.Unlock()
	for _, k := range keys {
		if count[k] != 1 {
			t.Errorf("%s completed %d times, want 1", k, count[k])
		}
	}
	if got := e.streamMsgs(e.sc.WithDefaults().Events); got != n {
		t.Errorf("events stream holds %d, want %d", got, n)
	}
}

// Many events, several concurrent workers, duplicates published past the
// duplicate window's reach (same key, new message): each event completes
// once.
func TestConcurrentWorkersOnce(t *testing.T) {
	e := newEnv(t, testStreams(), "")
	var mu sync.Mutex
	count := map[string]int{}
	h := HandlerFunc(func(ctx context.Context, ev messages.Event) error {
		mu.Lock()
		count[ev.Key]++
		mu.Unlock()
		return nil
	})
	workers := []*running{e.start(Config{Concurrency: 4}, h)}
	// One worker at a time creates the streams: the in-process server's
	// concurrent stream updates trip the race detector.
	testenv.Eventually(t, wait, func() bool {
		_, err := e.js.Consumer(e.ctx(), e.sc.WithDefaults().Events, e.sc.WithDefaults().Consumer)
		return err == nil
	}, "consumer not created")
	workers = append(workers, e.start(Config{Concurrency: 4}, h))
	const n = 40
	var keys []string
	for range n {
		ev := e.event()
		keys = append(keys, ev.Key)
		e.publish(ev)
		// A second copy of the same event under another Nats-Msg-Id, as
		// after a republish outside the duplicate window.
		data, err := ev.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.js.Publish(e.ctx(), messages.Subject(ev), data); err != nil {
			t.Fatal(err)
		}
	}
	total := func() float64 {
		var s float64
		for _, w := range workers {
			s += w.outcomes(outcomeDone) + w.outcomes(outcomeDuplicate)
		}
		return s
	}
	testenv.Eventually(t, wait, func() bool { return total() == 2*n && e.settled() }, "not all copies settled")
	mu.Lock()
	defer mu.Unlock()
	for _, k := range keys {
		if count[k] != 1 {
			t.Errorf("%s completed %d times, want 1", k, count[k])
		}
	}
}

func TestNewValidates(t *testing.T) {
	h := HandlerFunc(func(context.Context, messages.Event) error { return nil })
	e := newEnv(t, testStreams(), "")
	if _, err := New(Config{}, nil, e.store, h); err == nil {
		t.Error("New with nil JetStream: no error")
	}
	if _, err := New(Config{}, e.js, nil, h); err == nil {
		t.Error("New with nil store: no error")
	}
	if _, err := New(Config{}, e.js, e.store, nil); err == nil {
		t.Error("New with nil handler: no error")
	}
	for name, cfg := range map[string]Config{
		"heartbeat over LockTTL": {LockTTL: time.Second, Heartbeat: 2 * time.Second},
		"heartbeat over AckWait": {Heartbeat: 40 * time.Second, LockTTL: time.Minute},
		"negative concurrency":   {Concurrency: -1},
		"negative prefetch":      {Prefetch: -1},
		"concurrency over max":   {Concurrency: MaxHeld + 1},
		"held over max":          {Concurrency: MaxHeld, Prefetch: 1},
		"held overflowing int":   {Concurrency: math.MaxInt, Prefetch: math.MaxInt},
		"negative LockTTL":       {LockTTL: -time.Second},
		"bad backoff":            {Streams: streams.Config{BackOff: []time.Duration{0}}},
	} {
		if _, err := New(cfg, e.js, e.store, h); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	w, err := New(Config{}, e.js, e.store, h)
	if err != nil {
		t.Fatalf("New(zero Config): %v", err)
	}
	c := w.cfg
	if c.Concurrency != 8 || c.LockTTL != 30*time.Second || c.Heartbeat != 10*time.Second ||
		c.ShutdownTimeout != 25*time.Second || c.HandlerTimeout != 5*time.Minute || c.Logger == nil {
		t.Errorf("defaults: %+v", c)
	}
}

func TestRunEndsWhenConnectionCloses(t *testing.T) {
	for _, order := range []Order{OrderNone, OrderConversation} {
		t.Run(string(order), func(t *testing.T) {
			e := newEnv(t, testStreams(), "")
			w, err := New(Config{Streams: e.sc, Order: order}, e.js, e.store, HandlerFunc(func(context.Context, messages.Event) error { return nil }))
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- w.Run(context.Background()) }()
			consumer := e.sc.WithDefaults().Consumer
			if order == OrderConversation {
				consumer = e.sc.PartitionConsumer(streams.Partitions - 1)
			}
			testenv.Eventually(t, wait, func() bool {
				_, err := e.js.Consumer(e.ctx(), e.sc.WithDefaults().Events, consumer)
				return err == nil
			}, "consumer not created")
			if err := w.Run(context.Background()); err == nil {
				t.Errorf("second concurrent Run: no error")
			}
			if order == OrderConversation {
				testenv.Eventually(t, wait, func() bool { return value(w.metrics.orderPartitions) == streams.Partitions },
					"partitions not taken")
			}
			e.nc.Close()
			select {
			case err := <-done:
				if !errors.Is(err, nats.ErrConnectionClosed) {
					t.Errorf("Run: %v, want ErrConnectionClosed", err)
				}
			case <-time.After(wait):
				t.Fatal("Run did not return after the connection closed")
			}
		})
	}
}

// With order, partition consumers deleted under a running worker are
// created again and their events run.
func TestOrderPartitionConsumerDeleted(t *testing.T) {
	e := newEnv(t, testStreams(), "")
	var ran atomic.Int32
	r := e.start(Config{Order: OrderConversation}, HandlerFunc(func(context.Context, messages.Event) error {
		ran.Add(1)
		return nil
	}))
	ev := e.event()
	ev.Conversation = "cloud|106540352242922|user:15550000001"
	e.publish(ev)
	testenv.Eventually(t, wait, func() bool { return ran.Load() == 1 }, "first event not run")
	p := messages.Slot(ev)
	if err := e.js.DeleteConsumer(e.ctx(), e.sc.WithDefaults().Events, e.sc.PartitionConsumer(p)); err != nil {
		t.Fatal(err)
	}
	next := e.event()
	next.Conversation = ev.Conversation
	e.publish(next)
	testenv.Eventually(t, 2*wait, func() bool { return ran.Load() == 2 }, "event after the consumer's deletion not run")
	if n := value(r.w.metrics.fetchErrors); n < 1 {
		t.Errorf("fetch errors %v, want the deletion seen", n)
	}
}

func TestMetricsShared(t *testing.T) {
	e := newEnv(t, testStreams(), "")
	reg := prometheus.NewRegistry()
	h := HandlerFunc(func(context.Context, messages.Event) error { return nil })
	a, err := New(Config{Registerer: reg}, e.js, e.store, h)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Registerer: reg}, e.js, e.store, h)
	if err != nil {
		t.Fatalf("second Worker on the same Registerer: %v", err)
	}
	a.metrics.busyNaks.Inc()
	if got := value(b.metrics.busyNaks); got != 1 {
		t.Errorf("shared counter %v, want 1", got)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "wagate_worker_") {
			t.Errorf("metric %s lacks the wagate_worker_ prefix", f.GetName())
		}
	}
}
