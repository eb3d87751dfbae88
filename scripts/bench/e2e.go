package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/messages/streams"
	"github.com/wagate/wagate/worker"
)

// EndToEnd is the latency from the provider's request to the handler's
// start, with the real ingress and an embedded worker running together.
type EndToEnd struct {
	RPS      int     `json:"rps"`
	Seconds  float64 `json:"seconds"`
	Requests int     `json:"requests"`
	OK       int     `json:"ok"`
	Handled  int     `json:"handled"`
	// FromRequest runs from the load generator's making of the request
	// (the time written in the message) to the handler's start, in ms.
	FromRequest Percentiles `json:"from_request_ms"`
	// FromReceipt runs from the ingress's receipt (Event.ReceivedAt) to the
	// handler's start, in ms.
	FromReceipt Percentiles `json:"from_receipt_ms"`
}

// runEndToEnd sends single-event bodies at rps to the ingress at url for
// duration while a worker runs, and times each event from the request to
// its handler's start.
func runEndToEnd(ctx context.Context, js jetstream.JetStream, store dedupe.Store, sc streams.Config, url, secret string, rps, concurrency int, duration time.Duration) (EndToEnd, error) {
	if err := resetConsumer(ctx, js, sc); err != nil {
		return EndToEnd{}, err
	}
	var (
		mu            sync.Mutex
		fromRequest   []time.Duration
		fromReceipt   []time.Duration
		handled       atomic.Int64
		stampedPrefix = []byte(" t=")
	)
	h := worker.HandlerFunc(func(_ context.Context, ev messages.Event) error {
		now := time.Now()
		handled.Add(1)
		rec := now.Sub(ev.ReceivedAt)
		var req time.Duration
		if i := bytes.LastIndex(ev.Item, stampedPrefix); i >= 0 {
			rest := ev.Item[i+len(stampedPrefix):]
			j := 0
			for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
				j++
			}
			if ns, err := strconv.ParseInt(string(rest[:j]), 10, 64); err == nil {
				req = now.Sub(time.Unix(0, ns))
			}
		}
		mu.Lock()
		fromReceipt = append(fromReceipt, rec)
		if req > 0 {
			fromRequest = append(fromRequest, req)
		}
		mu.Unlock()
		return nil
	})
	w, err := worker.New(worker.Config{
		Streams: sc, Concurrency: concurrency,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, js, store, h)
	if err != nil {
		return EndToEnd{}, err
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()

	st := attack{url: url, load: newWorkload(1, 0.1, secret, true), rate: rps, workers: concurrency, duration: duration}.run(ctx)
	s, err := js.Stream(ctx, sc.Events)
	if err == nil {
		var info *jetstream.StreamInfo
		if info, err = s.Info(ctx); err == nil {
			_, err = waitAcked(ctx, js, sc, info.State.LastSeq, time.Minute)
		}
	}
	stop()
	if rerr := <-done; rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return EndToEnd{}, err
	}
	mu.Lock()
	defer mu.Unlock()
	return EndToEnd{
		RPS: rps, Seconds: st.Seconds, Requests: st.Requests, OK: st.OK, Handled: int(handled.Load()),
		FromRequest: percentiles(fromRequest), FromReceipt: percentiles(fromReceipt),
	}, nil
}
