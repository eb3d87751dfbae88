package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/messages"
)

// Floor is the bare loop's outcome: the Redis claim and the JetStream
// publishes of each body, with no HTTP, no signature and no parsing.
type Floor struct {
	Workers    int     `json:"workers"`
	Bodies     int     `json:"bodies"`
	Events     int     `json:"events"`
	Published  int     `json:"published"`
	Seconds    float64 `json:"seconds"`
	BodiesPerS float64 `json:"bodies_per_s"`
	EventsPerS float64 `json:"events_per_s"`
	// Latency of one body's claim, publishes and accept, in milliseconds.
	Latency Percentiles `json:"latency_ms"`
	// CPU is the processors' use during the run.
	CPU *CPU `json:"cpu,omitempty"`
}

// floorOp is one body's work, prepared before the clock starts.
type floorOp struct {
	keys []string
	msgs []*nats.Msg
}

// prepareFloor parses n bodies of load into their keys and stream messages,
// exactly as the ingress would publish them.
func prepareFloor(load *workload, n int, stream string) ([]floorOp, error) {
	ops := make([]floorOp, n)
	for i := range ops {
		evs, err := messages.Parse(load.next().data, time.Now().UTC())
		if err != nil {
			return nil, err
		}
		op := floorOp{keys: make([]string, len(evs)), msgs: make([]*nats.Msg, len(evs))}
		for j := range evs {
			op.keys[j] = evs[j].Key
			if op.msgs[j], err = streamMessage(&evs[j], stream); err != nil {
				return nil, err
			}
		}
		ops[i] = op
	}
	return ops, nil
}

// streamMessage is the ingress's stream message for ev (ingest publishes
// the same subject, payload and headers).
func streamMessage(ev *messages.Event, stream string) (*nats.Msg, error) {
	data, err := ev.Encode()
	if err != nil {
		return nil, err
	}
	subject, conv := messages.Route(*ev)
	msg := nats.NewMsg(subject)
	msg.Data = data
	if conv != "_" {
		msg.Header.Set(messages.HeaderConversation, conv)
	}
	msg.Header.Set(jetstream.MsgIDHeader, ev.Key)
	msg.Header.Set(jetstream.ExpectedStreamHeader, stream)
	msg.Header.Set(messages.HeaderProvider, ev.Provider)
	msg.Header.Set(messages.HeaderKind, string(ev.Kind))
	msg.Header.Set(messages.HeaderReceivedAt, ev.ReceivedAt.UTC().Format(time.RFC3339Nano))
	return msg, nil
}

// runFloor runs ops on workers goroutines, each claiming a body's keys in
// one call, publishing the events the claim says to publish concurrently,
// waiting for every PubAck and accepting the claims: the ingress's work
// without HTTP. It stops when ops run out or duration passes.
func runFloor(ctx context.Context, store dedupe.Store, js jetstream.JetStream, ops []floorOp, workers int, duration time.Duration) (Floor, error) {
	owner := "bench-floor-" + strconv.Itoa(os.Getpid())
	var (
		next      atomic.Int64
		published atomic.Int64
		events    atomic.Int64
		bodies    atomic.Int64
		mu        sync.Mutex
		lat       []time.Duration
		firstErr  error
		wg        sync.WaitGroup
	)
	deadline := time.Now().Add(duration)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			var mine []time.Duration
			defer func() {
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				i := int(next.Add(1)) - 1
				if i >= len(ops) {
					return
				}
				t0 := time.Now()
				n, err := floorBody(ctx, store, js, owner, ops[i])
				if err != nil {
					mu.Lock()
					firstErr = errors.Join(firstErr, err)
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t0))
				published.Add(int64(n))
				events.Add(int64(len(ops[i].keys)))
				bodies.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	f := Floor{
		Workers: workers, Bodies: int(bodies.Load()), Events: int(events.Load()),
		Published: int(published.Load()), Seconds: elapsed, Latency: percentiles(lat),
	}
	if elapsed > 0 {
		f.BodiesPerS = float64(f.Bodies) / elapsed
		f.EventsPerS = float64(f.Events) / elapsed
	}
	return f, firstErr
}

// floorBody claims, publishes and accepts one body's events, and returns how
// many it published.
func floorBody(ctx context.Context, store dedupe.Store, js jetstream.JetStream, owner string, op floorOp) (int, error) {
	claims, err := store.Claim(ctx, owner, op.keys)
	if err != nil {
		return 0, err
	}
	var pub []int
	for i, cl := range claims {
		if cl.Prior == dedupe.Absent || cl.Prior == dedupe.Pending {
			pub = append(pub, i)
		}
	}
	errs := make([]error, len(pub))
	if len(pub) == 1 {
		_, errs[0] = js.PublishMsg(ctx, copyMsg(op.msgs[pub[0]]))
	} else {
		var wg sync.WaitGroup
		for j, i := range pub {
			wg.Go(func() { _, errs[j] = js.PublishMsg(ctx, copyMsg(op.msgs[i])) })
		}
		wg.Wait()
	}
	if err := errors.Join(errs...); err != nil {
		return 0, fmt.Errorf("floor publish: %w", err)
	}
	stored := make([]dedupe.Claim, len(pub))
	for j, i := range pub {
		stored[j] = claims[i]
	}
	if err := store.Accept(ctx, stored); err != nil {
		return 0, err
	}
	return len(pub), nil
}

// copyMsg returns a shallow copy of m, so that a body sent twice can be
// published from two goroutines at once.
func copyMsg(m *nats.Msg) *nats.Msg {
	return &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data}
}

// echoAddrEnv, when set, makes this program serve the echo floor on that
// address instead of benchmarking.
const echoAddrEnv = "WAGATE_BENCH_ECHO_ADDR"

// serveEchoFromEnv serves the echo floor and exits when echoAddrEnv is set:
// an echo v4 server whose webhook route reads the body and answers 200 with
// no other work. It returns at once otherwise.
func serveEchoFromEnv() {
	addr := os.Getenv(echoAddrEnv)
	if addr == "" {
		return
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	answer := []byte(`{"events":0,"accepted":0,"duplicates":0}`)
	e.POST("/webhooks/whatsapp", func(c echo.Context) error {
		if _, err := io.Copy(io.Discard, c.Request().Body); err != nil {
			return err
		}
		return c.JSONBlob(http.StatusOK, answer)
	})
	e.GET("/healthz", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	srv := &http.Server{Addr: addr, Handler: e, ReadHeaderTimeout: 10 * time.Second}
	err := srv.ListenAndServe()
	fmt.Fprintln(os.Stderr, "echo:", err)
	os.Exit(1)
}
