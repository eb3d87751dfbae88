package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/messages/streams"
	"github.com/wagate/wagate/worker"
)

// OrderRun is one drain of a filled events stream by two workers, with
// WAGATE_ORDER none or conversation.
type OrderRun struct {
	Workload      string  `json:"workload"` // "many conversations" or "hot conversations"
	Order         string  `json:"order"`
	Conversations int     `json:"conversations"`
	Events        int     `json:"events"`
	Workers       int     `json:"workers"`
	Concurrency   int     `json:"concurrency"` // per worker
	HandlerMS     float64 `json:"handler_ms"`
	Seconds       float64 `json:"seconds"`
	EventsPerS    float64 `json:"events_per_s"`
}

// orderBench's shape: two workers of 16 handlers, each handler taking 2 ms
// (business logic that waits on something: a downstream's answer).
const (
	orderWorkers     = 2
	orderConcurrency = 16
	orderHandler     = 2 * time.Millisecond
)

// benchOrder drains the same traffic with order none and conversation: many
// conversations (events spread over 1000, far more than workers × handlers)
// and a few hot ones (4 conversations).
func benchOrder(ctx context.Context, e *env, events int, logf func(string, ...any)) ([]OrderRun, error) {
	var out []OrderRun
	for _, wl := range []struct {
		name  string
		convs int
	}{{"many conversations", 1000}, {"hot conversations", 4}} {
		for _, order := range []worker.Order{worker.OrderNone, worker.OrderConversation} {
			if err := e.reset(ctx); err != nil {
				return out, err
			}
			r, err := runOrder(ctx, e, wl.name, order, wl.convs, events)
			if err != nil {
				return out, fmt.Errorf("%s, order %s: %w", wl.name, order, err)
			}
			logf("order: %s, %s: %.0f events/s (%d events, %d conversations, %d workers × %d handlers of %v)",
				wl.name, order, r.EventsPerS, r.Events, r.Conversations, r.Workers, r.Concurrency, orderHandler)
			out = append(out, r)
		}
	}
	return out, nil
}

// waitPartitionsAcked waits until every partition consumer exists and holds
// nothing pending or unacknowledged (the stream is filled before the
// workers start), and returns when it saw that. It polls every 50 ms: one
// consumer info per partition each time.
func waitPartitionsAcked(ctx context.Context, js jetstream.JetStream, sc streams.Config, timeout time.Duration) (time.Time, error) {
	var (
		at   time.Time
		last error
	)
	err := pollEvery(ctx, timeout, 50*time.Millisecond, func() bool {
		for p := range streams.Partitions {
			c, err := js.Consumer(ctx, sc.Events, sc.PartitionConsumer(p))
			if err != nil {
				last = err
				return false
			}
			if info := c.CachedInfo(); info.NumPending != 0 || info.NumAckPending != 0 {
				return false
			}
		}
		at = time.Now()
		return true
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("partition consumers not drained: %w (%v)", err, last)
	}
	return at, nil
}

// runOrder fills the stream with events spread at random over convs
// conversations, then drains it with the workers and times the drain.
func runOrder(ctx context.Context, e *env, name string, order worker.Order, convs, n int) (OrderRun, error) {
	if err := resetConsumer(ctx, e.js, e.sc); err != nil {
		return OrderRun{}, err
	}
	tag := fmt.Sprintf("%x", rand.Uint64())
	var last uint64
	var futures []jetstream.PubAckFuture
	for i := range n {
		id := fmt.Sprintf("wamid.ORDER-%s-%06d", tag, i)
		identity := messages.Identity(messages.ProviderCloud, string(messages.KindMessage), "106540352242922", "messages", id)
		from := fmt.Sprintf("1555%07d", rand.IntN(convs))
		ev := messages.Event{
			Key: messages.KeyOf(identity), Identity: identity, Provider: messages.ProviderCloud,
			Kind: messages.KindMessage, Account: "106540352242922", ID: id, Type: "text", From: from,
			Conversation: "cloud|106540352242922|user:" + from, ReceivedAt: time.Now(),
			Item: fmt.Appendf(nil, `{"from":%q,"id":%q,"timestamp":"1700000000","type":"text","text":{"body":"order %d"}}`, from, id, i),
		}
		msg, err := streamMessage(&ev, e.sc.Events)
		if err != nil {
			return OrderRun{}, err
		}
		f, err := e.js.PublishMsgAsync(msg)
		if err != nil {
			return OrderRun{}, err
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case ack := <-f.Ok():
			last = max(last, ack.Sequence)
		case err := <-f.Err():
			return OrderRun{}, err
		case <-ctx.Done():
			return OrderRun{}, ctx.Err()
		}
	}
	// The drain is timed from the first run, so that neither order pays for
	// the workers' start (creating consumers, sharing partitions).
	var first sync.Once
	var start time.Time
	h := worker.HandlerFunc(func(ctx context.Context, _ messages.Event) error {
		first.Do(func() { start = time.Now() })
		t := time.NewTimer(orderHandler)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		return nil
	})
	wctx, stop := context.WithCancel(ctx)
	var running sync.WaitGroup
	errs := make(chan error, orderWorkers)
	for range orderWorkers {
		w, err := worker.New(worker.Config{
			Streams: e.sc, Concurrency: orderConcurrency, Order: order,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}, e.js, e.store, h)
		if err != nil {
			stop()
			return OrderRun{}, err
		}
		running.Go(func() { errs <- w.Run(wctx) })
	}
	var end time.Time
	var err error
	if order == worker.OrderConversation {
		end, err = waitPartitionsAcked(ctx, e.js, e.sc, 10*time.Minute)
	} else {
		end, err = waitAcked(ctx, e.js, e.sc, last, 10*time.Minute)
	}
	stop()
	running.Wait()
	close(errs)
	for rerr := range errs {
		if rerr != nil && err == nil {
			err = rerr
		}
	}
	if err != nil {
		return OrderRun{}, err
	}
	secs := end.Sub(start).Seconds()
	return OrderRun{Workload: name, Order: string(order), Conversations: convs, Events: n,
		Workers: orderWorkers, Concurrency: orderConcurrency, HandlerMS: float64(orderHandler) / float64(time.Millisecond),
		Seconds: secs, EventsPerS: float64(n) / secs}, nil
}
