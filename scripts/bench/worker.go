package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/group"
	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/messages/streams"
	"github.com/wagate/wagate/worker"
)

// Consume is the outcome of draining a filled stream.
type Consume struct {
	Concurrency int     `json:"concurrency"`
	Events      int     `json:"events"`
	Seconds     float64 `json:"seconds"`
	EventsPerS  float64 `json:"events_per_s"`
	// CPU is the processors' use while draining.
	CPU *CPU `json:"cpu,omitempty"`
}

// fillStream stores n single-event messages in the events stream as the
// ingress would (claimed, published, accepted), and returns the stream
// sequence of the last.
func fillStream(ctx context.Context, js jetstream.JetStream, store dedupe.Store, sc streams.Config, n int) (uint64, error) {
	load := newWorkload(1, 0, "fill", false)
	const chunk = 500
	var last uint64
	for done := 0; done < n; {
		m := min(chunk, n-done)
		ops, err := prepareFloor(load, m, sc.Events)
		if err != nil {
			return 0, err
		}
		keys := make([]string, 0, m)
		for _, op := range ops {
			keys = append(keys, op.keys...)
		}
		claims, err := store.Claim(ctx, "bench-fill", keys)
		if err != nil {
			return 0, err
		}
		futures := make([]jetstream.PubAckFuture, 0, m)
		for _, op := range ops {
			for _, msg := range op.msgs {
				f, err := js.PublishMsgAsync(msg)
				if err != nil {
					return 0, err
				}
				futures = append(futures, f)
			}
		}
		for _, f := range futures {
			select {
			case ack := <-f.Ok():
				last = max(last, ack.Sequence)
			case err := <-f.Err():
				return 0, err
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		if err := store.Accept(ctx, claims); err != nil {
			return 0, err
		}
		done += m
	}
	return last, nil
}

// waitAcked waits until the consumer's ack floor reaches seq and returns
// when it saw it.
func waitAcked(ctx context.Context, js jetstream.JetStream, sc streams.Config, seq uint64, timeout time.Duration) (time.Time, error) {
	var (
		cons jetstream.Consumer
		at   time.Time
		last error
	)
	err := pollEvery(ctx, timeout, 20*time.Millisecond, func() bool {
		if cons == nil {
			// The worker creates its consumer when it starts.
			if cons, last = js.Consumer(ctx, sc.Events, sc.Consumer); last != nil {
				return false
			}
		}
		info, err := cons.Info(ctx)
		if err != nil {
			last = err
			return false
		}
		if info.AckFloor.Stream >= seq {
			at = time.Now()
			return true
		}
		return false
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("ack floor did not reach %d: %w (%v)", seq, err, last)
	}
	return at, nil
}

// runWorker drains n events from the stream through worker.Worker with a
// handler that does nothing: lock, done mark and Ack per event.
func runWorker(ctx context.Context, js jetstream.JetStream, store dedupe.Store, sc streams.Config, n, concurrency, prefetch int, pids map[string]int) (Consume, error) {
	if err := resetConsumer(ctx, js, sc); err != nil {
		return Consume{}, err
	}
	last, err := fillStream(ctx, js, store, sc, n)
	if err != nil {
		return Consume{}, fmt.Errorf("fill: %w", err)
	}
	var first atomic.Int64
	h := worker.HandlerFunc(func(context.Context, messages.Event) error {
		first.CompareAndSwap(0, time.Now().UnixNano())
		return nil
	})
	w, err := worker.New(worker.Config{
		Streams: sc, Concurrency: concurrency, Prefetch: prefetch,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, js, store, h)
	if err != nil {
		return Consume{}, err
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	m := startCPU(pids)
	go pprof.Do(wctx, pprof.Labels("run", "worker"), func(ctx context.Context) { done <- w.Run(ctx) })
	end, err := waitAcked(ctx, js, sc, last, 5*time.Minute)
	cpu := m.stop()
	stop()
	if rerr := <-done; rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return Consume{}, err
	}
	c := consumeResult(concurrency, n, first.Load(), end)
	c.CPU = cpu
	return c, nil
}

// runBareConsumer drains n events from the stream with the same durable
// consumer and the same number of messages in flight as the worker, doing
// nothing but Ack on each: the acknowledgement the worker sends after a done
// mark (no wait for JetStream's answer), so that the two differ only by what
// the worker adds.
func runBareConsumer(ctx context.Context, js jetstream.JetStream, store dedupe.Store, sc streams.Config, n, concurrency, prefetch int, pids map[string]int) (Consume, error) {
	return drain(ctx, js, store, nil, sc, n, concurrency, prefetch, pids)
}

// runStoreLoop drains n events as runBareConsumer does (without prefetch),
// and also begins each group of messages that arrive together in one store
// call (dedupe.BeginAll, on the messages' Nats-Msg-Id) and marks them done
// in one more (dedupe.FinishAll) before their Acks. That is the least a worker
// keeping the design's lock and done mark does per event, with none of the
// worker's own work (decoding, dispatch, heartbeats, metrics, the handler's
// context). It fails unless every event was begun and marked done once.
func runStoreLoop(ctx context.Context, js jetstream.JetStream, store dedupe.Store, sc streams.Config, n, concurrency int, pids map[string]int) (Consume, error) {
	return drain(ctx, js, store, store, sc, n, concurrency, 0, pids)
}

// drain fills the stream with n events (through fill's claims) and drains
// it with bareConsume, begun and finished in lock when lock is not nil.
func drain(ctx context.Context, js jetstream.JetStream, fill, lock dedupe.Store, sc streams.Config, n, concurrency, prefetch int, pids map[string]int) (Consume, error) {
	if err := resetConsumer(ctx, js, sc); err != nil {
		return Consume{}, err
	}
	last, err := fillStream(ctx, js, fill, sc, n)
	if err != nil {
		return Consume{}, fmt.Errorf("fill: %w", err)
	}
	cons, err := streams.EnsureConsumer(ctx, js, sc)
	if err != nil {
		return Consume{}, err
	}
	var first atomic.Int64
	var (
		mu     sync.Mutex
		failed error
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if failed == nil {
			failed = err
		}
	}
	cctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	m := startCPU(pids)
	var done atomic.Int64 // events the store loop marked done
	wg.Go(func() {
		bareConsume(cctx, cons, concurrency, prefetch, &first, lock, &done, fail)
	})
	end, err := waitAcked(ctx, js, sc, last, 5*time.Minute)
	cpu := m.stop()
	stop()
	wg.Wait()
	if err == nil {
		mu.Lock()
		err = failed
		mu.Unlock()
	}
	if err == nil && lock != nil && done.Load() != int64(n) {
		err = fmt.Errorf("store loop: %d of %d events marked done", done.Load(), n)
	}
	if err != nil {
		return Consume{}, err
	}
	c := consumeResult(concurrency, n, first.Load(), end)
	c.CPU = cpu
	return c, nil
}

// bareConsume pulls as the worker does with the same Concurrency and
// Prefetch (it holds up to concurrency + prefetch messages and asks for at
// least prefetch, or one, at a time; see worker.Worker's consume) and Acks
// each on its own goroutine, as the worker does. With a lock store, each
// group of messages that arrived together is first begun and marked done in
// it, one call each, on a goroutine of its own, and counted in done; a
// failure goes to fail and its messages are still acked.
func bareConsume(ctx context.Context, cons jetstream.Consumer, concurrency, prefetch int, first *atomic.Int64, lock dedupe.Store, done *atomic.Int64, fail func(error)) {
	limit, least := concurrency+prefetch, max(1, prefetch)
	held := make(chan struct{}, limit)
	var inflight sync.WaitGroup
	defer inflight.Wait()
	for ctx.Err() == nil {
		n := 0
		for n < least {
			select {
			case held <- struct{}{}:
				n++
			case <-ctx.Done():
				return
			}
		}
	more:
		for n < limit {
			select {
			case held <- struct{}{}:
				n++
			default:
				break more
			}
		}
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		batch, err := cons.Fetch(n, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			for range n {
				<-held
			}
			continue
		}
		if lock == nil {
			for m := range batch.Messages() {
				n--
				first.CompareAndSwap(0, time.Now().UnixNano())
				inflight.Go(func() {
					defer func() { <-held }()
					_ = m.Ack()
				})
			}
		} else {
			for got := range group.Arrived(batch.Messages()) {
				n -= len(got)
				first.CompareAndSwap(0, time.Now().UnixNano())
				inflight.Go(func() {
					defer func() {
						for range got {
							<-held
						}
					}()
					if err := lockAndFinish(ctx, lock, got); err != nil {
						fail(err)
					} else {
						done.Add(int64(len(got)))
					}
					for _, m := range got {
						_ = m.Ack()
					}
				})
			}
		}
		cancel()
		for range n {
			<-held
		}
	}
}

// lockAndFinish begins the runs of msgs in one store call and marks them
// done in another.
func lockAndFinish(ctx context.Context, store dedupe.Store, msgs []jetstream.Msg) error {
	keys := make([]string, len(msgs))
	for i, m := range msgs {
		keys[i] = m.Headers().Get(jetstream.MsgIDHeader)
	}
	began := dedupe.BeginAll(ctx, store, keys, dedupe.BeginOptions{TTL: worker.DefaultLockTTL})
	leases := make([]dedupe.Lease, 0, len(began))
	for i, b := range began {
		if b.Err != nil {
			return fmt.Errorf("store loop: begin %s: %w", keys[i], b.Err)
		}
		leases = append(leases, b.Lease)
	}
	for i, err := range dedupe.FinishAll(ctx, store, leases) {
		if err != nil {
			return fmt.Errorf("store loop: finish %s: %w", keys[i], err)
		}
	}
	return nil
}

// consumeResult computes the rate from the first delivery to the ack floor.
func consumeResult(concurrency, n int, firstNs int64, end time.Time) Consume {
	c := Consume{Concurrency: concurrency, Events: n}
	if firstNs > 0 {
		c.Seconds = end.Sub(time.Unix(0, firstNs)).Seconds()
	}
	if c.Seconds > 0 {
		c.EventsPerS = float64(n) / c.Seconds
	}
	return c
}

// resetConsumer empties the events stream and deletes the workers' durable
// consumer and their partition consumers, so that the next run starts from
// an empty stream and new consumers.
func resetConsumer(ctx context.Context, js jetstream.JetStream, sc streams.Config) error {
	if err := purge(ctx, js, sc); err != nil {
		return err
	}
	for _, name := range sc.WorkerConsumers() {
		if err := js.DeleteConsumer(ctx, sc.Events, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return err
		}
	}
	return nil
}

// purge empties the events stream.
func purge(ctx context.Context, js jetstream.JetStream, sc streams.Config) error {
	s, err := js.Stream(ctx, sc.Events)
	if err != nil {
		return err
	}
	return s.Purge(ctx)
}

// pollEvery calls cond every interval until it returns true, timeout passes
// or ctx ends.
func pollEvery(ctx context.Context, timeout, interval time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// benchWorker drains a filled stream through the worker and through a bare
// consumer, then times events end to end at e2eRate requests/s (skipped when
// 0 or without the ingress).
func benchWorker(ctx context.Context, e *env, o options, e2eRate int, logf func(string, ...any)) (Worker, error) {
	var wk Worker
	var err error
	if err = e.reset(ctx); err != nil {
		return wk, err
	}
	for _, run := range []struct {
		prefetch     int
		worker, bare *Consume
	}{{0, &wk.Worker, &wk.Bare}, {o.concurrency, &wk.Prefetched, &wk.BarePrefetched}} {
		logf("worker: draining %d events with a no-op handler, prefetch %d", o.workerEvents, run.prefetch)
		if *run.worker, err = runWorker(ctx, e.js, e.store, e.sc, o.workerEvents, o.concurrency, run.prefetch, e.pids()); err != nil {
			return wk, err
		}
		logf("worker: %.0f events/s", run.worker.EventsPerS)
		if err = e.reset(ctx); err != nil {
			return wk, err
		}
		if *run.bare, err = runBareConsumer(ctx, e.js, e.store, e.sc, o.workerEvents, o.concurrency, run.prefetch, e.pids()); err != nil {
			return wk, err
		}
		logf("worker: bare consumer %.0f events/s", run.bare.EventsPerS)
		if err = e.reset(ctx); err != nil {
			return wk, err
		}
	}
	logf("worker: store loop (lock and done mark, no worker) draining %d events", o.workerEvents)
	if wk.StoreLoop, err = runStoreLoop(ctx, e.js, e.store, e.sc, o.workerEvents, o.concurrency, e.pids()); err != nil {
		return wk, err
	}
	logf("worker: store loop %.0f events/s", wk.StoreLoop.EventsPerS)
	if err = e.reset(ctx); err != nil {
		return wk, err
	}
	if wk.Bare.EventsPerS > 0 {
		wk.Ratio = wk.Worker.EventsPerS / wk.Bare.EventsPerS
		wk.StoreLoopOverBare = wk.StoreLoop.EventsPerS / wk.Bare.EventsPerS
	}
	if wk.StoreLoop.EventsPerS > 0 {
		wk.StoreLoopRatio = wk.Worker.EventsPerS / wk.StoreLoop.EventsPerS
	}
	if wk.BarePrefetched.EventsPerS > 0 {
		wk.PrefetchedRatio = wk.Prefetched.EventsPerS / wk.BarePrefetched.EventsPerS
	}
	if e2eRate <= 0 || e.ingress == nil {
		return wk, nil
	}
	// The pipeline runs at the pace of its slower half.
	e2eRate = max(1, min(e2eRate, int(wk.Worker.EventsPerS/2)))
	if err = e.reset(ctx); err != nil {
		return wk, err
	}
	logf("end to end: %d req/s for %v", e2eRate, o.duration)
	wk.EndToEnd, err = runEndToEnd(ctx, e.js, e.store, e.sc, e.ingressURL+"/webhooks/whatsapp", benchSecret, e2eRate, o.concurrency, o.duration)
	if err != nil {
		return wk, fmt.Errorf("end to end: %w", err)
	}
	logf("end to end: p50 %.2f ms, p99 %.2f ms from the request to the handler", wk.EndToEnd.FromRequest.P50, wk.EndToEnd.FromRequest.P99)
	return wk, e.reset(ctx)
}
