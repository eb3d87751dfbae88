package worker

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/messages/streams"
)

// lostAck is a delivery whose Ack never reaches JetStream.
type lostAck struct {
	jetstream.Msg
	acks int
}

func (m *lostAck) Ack() error { m.acks++; return nil }

// The worker acks a done event without waiting for JetStream's answer,
// because the done mark, not the ack, stops a second run: an ack lost after
// the done mark only brings a redelivery, which Begin answers ErrDone and
// the worker acks, without running the handler again.
func TestLostAckAfterDoneIsRedeliveredAsDone(t *testing.T) {
	e := newEnv(t, testStreams(), "")
	var c calls
	h := HandlerFunc(func(ctx context.Context, ev messages.Event) error {
		c.add(ctx, ev.Key)
		return nil
	})
	w, err := New(Config{Streams: e.sc, Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), Registerer: prometheus.NewRegistry()}, e.js, e.store, h)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := streams.EnsureConsumer(e.ctx(), e.js, e.sc)
	if err != nil {
		t.Fatal(err)
	}
	ev := e.event()
	e.publish(ev)
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	m, ok := <-batch.Messages()
	if !ok {
		t.Fatalf("no delivery: %v", batch.Error())
	}
	lost := &lostAck{Msg: m}
	w.process(context.Background(), make(chan struct{}), lost, nil)
	if lost.acks != 1 || len(c.of(ev.Key)) != 1 {
		t.Fatalf("first delivery: %d acks, %d runs; want 1 and 1", lost.acks, len(c.of(ev.Key)))
	}
	if rec := e.record(ev.Key); rec.State != dedupe.Done {
		t.Fatalf("after the run: state %v, want done", rec.State)
	}

	// AckWait passes without the ack: JetStream delivers the event again.
	r := e.start(Config{}, h)
	testenv.Eventually(t, 20*time.Second, func() bool { return r.outcomes(outcomeDuplicate) == 1 && e.settled() },
		"the redelivery after the lost ack was not acked as done")
	if runs := c.of(ev.Key); len(runs) != 1 {
		t.Fatalf("handler ran %d times, want once: %+v", len(runs), runs)
	}
	if got := value(r.w.metrics.redeliveries); got != 1 {
		t.Fatalf("redeliveries %v, want 1", got)
	}
}

// countingBatch counts the batch calls of a store.
type countingBatch struct {
	*dedupe.Redis
	mu       sync.Mutex
	begins   []int
	finishes []int
}

func (s *countingBatch) BeginBatch(ctx context.Context, keys []string, opts dedupe.BeginOptions) []dedupe.Began {
	s.mu.Lock()
	s.begins = append(s.begins, len(keys))
	s.mu.Unlock()
	return s.Redis.BeginBatch(ctx, keys, opts)
}

func (s *countingBatch) FinishBatch(ctx context.Context, leases []dedupe.Lease) []error {
	s.mu.Lock()
	s.finishes = append(s.finishes, len(leases))
	s.mu.Unlock()
	return s.Redis.FinishBatch(ctx, leases)
}

// The worker begins the runs of the messages it fetched together in one
// store call, and marks done together the runs that finish together: with a
// backlog, there are fewer calls than events, and every event runs once.
func TestBatchesBeginsAndDoneMarks(t *testing.T) {
	e := newEnv(t, testStreams(), "")
	const n = 60
	keys := make([]string, n)
	for i := range keys {
		ev := e.event()
		keys[i] = ev.Key
		e.publish(ev)
	}
	store := &countingBatch{Redis: e.store}
	var c calls
	w, err := New(Config{Streams: e.sc, Concurrency: 16, Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), Registerer: prometheus.NewRegistry()},
		e.js, store, HandlerFunc(func(ctx context.Context, ev messages.Event) error {
			c.add(ctx, ev.Key)
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	testenv.Eventually(t, 20*time.Second, func() bool { return value(w.metrics.processed.WithLabelValues(outcomeDone)) == n && e.settled() },
		"backlog not processed")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, k := range keys {
		if runs := c.of(k); len(runs) != 1 || runs[0].Fence != 1 {
			t.Fatalf("key %s: runs %+v, want one with fence 1", k, runs)
		}
		if rec := e.record(k); rec.State != dedupe.Done || rec.Locked {
			t.Fatalf("key %s: %+v, want done and unlocked", k, rec)
		}
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	sum := func(xs []int) (s int) {
		for _, x := range xs {
			s += x
		}
		return s
	}
	if sum(store.begins) != n || sum(store.finishes) != n {
		t.Fatalf("batch calls began %d and finished %d keys, want %d each", sum(store.begins), sum(store.finishes), n)
	}
	if len(store.begins) >= n {
		t.Fatalf("%d Begin calls for %d events: no batching (%v)", len(store.begins), n, store.begins)
	}
	t.Logf("keys per Begin call %v; per Finish call %v", store.begins, store.finishes)
}
