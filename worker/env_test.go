package worker

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/messages/streams"
)

// env is one test's real servers: an in-process NATS server with JetStream
// (private, so stream subjects never clash between tests) and Redis.
type env struct {
	t     *testing.T
	nats  *testenv.NATS
	nc    *nats.Conn
	js    jetstream.JetStream
	rdb   *redis.Client
	store *dedupe.Redis
	sc    streams.Config
}

// testStreams is a fast redelivery schedule for tests.
func testStreams() streams.Config {
	return streams.Config{
		AckWait:    2 * time.Second,
		MaxDeliver: 10,
		BackOff:    []time.Duration{50 * time.Millisecond},
	}
}

// newEnv starts NATS, connects to Redis at redisURL (a fresh one when
// empty), and creates the streams of sc.
func newEnv(t *testing.T, sc streams.Config, redisURL string) *env {
	t.Helper()
	if redisURL == "" {
		redisURL = testenv.RedisURL(t)
	}
	n := testenv.StartNATS(t)
	nc, err := nats.Connect(n.ClientURL())
	if err != nil {
		t.Fatalf("nats connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatalf("redis url: %v", err)
	}
	opts.MaxRetries = 1
	opts.DialTimeout = time.Second
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	e := &env{t: t, nats: n, nc: nc, js: js, rdb: rdb, store: dedupe.NewRedis(rdb, dedupe.RedisOptions{}), sc: sc}
	if err := streams.Ensure(e.ctx(), js, sc); err != nil {
		t.Fatalf("streams: %v", err)
	}
	return e
}

// ctx is a bounded context for one call in a test.
func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

// event returns a new event with a key of its own.
func (e *env) event() messages.Event {
	id := "wamid." + rand.Text()
	item := json.RawMessage(`{"from":"15550000001","id":"` + id + `","timestamp":"1700000000","type":"text","text":{"body":"secret body"}}`)
	identity := messages.Identity(messages.ProviderCloud, string(messages.KindMessage), id)
	return messages.Event{
		Key:        messages.KeyOf(identity),
		Identity:   identity,
		Provider:   messages.ProviderCloud,
		Kind:       messages.KindMessage,
		Account:    "106540352242922",
		ID:         id,
		Type:       "text",
		From:       "15550000001",
		Timestamp:  1700000000,
		ReceivedAt: time.Now().UTC(),
		Item:       item,
	}
}

// publish stores ev as the ingress does and returns the stored payload and
// its stream sequence.
func (e *env) publish(ev messages.Event) ([]byte, uint64) {
	e.t.Helper()
	data, err := ev.Encode()
	if err != nil {
		e.t.Fatalf("encode: %v", err)
	}
	subject, conv := messages.Route(ev)
	msg := nats.NewMsg(subject)
	if conv != "_" {
		msg.Header.Set(messages.HeaderConversation, conv)
	}
	msg.Data = data
	msg.Header.Set(nats.MsgIdHdr, ev.Key)
	msg.Header.Set(messages.HeaderProvider, ev.Provider)
	msg.Header.Set(messages.HeaderKind, string(ev.Kind))
	msg.Header.Set(messages.HeaderReceivedAt, ev.ReceivedAt.Format(time.RFC3339Nano))
	ack, err := e.js.PublishMsg(e.ctx(), msg)
	if err != nil {
		e.t.Fatalf("publish: %v", err)
	}
	return data, ack.Sequence
}

// running is a Worker whose Run goes on in the background.
type running struct {
	w      *Worker
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// start runs a Worker on e with cfg and h until the test ends or stop.
func (e *env) start(cfg Config, h Handler) *running {
	e.t.Helper()
	if cfg.Streams.AckWait == 0 {
		cfg.Streams = e.sc
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(e.t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	w, err := New(cfg, e.js, e.store, h)
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: w, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = w.Run(ctx)
	}()
	e.t.Cleanup(func() { r.stop(e.t) })
	return r
}

// stop cancels Run and waits for it; Run must return nil.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("Run did not return 30s after its context was cancelled")
	}
	if r.err != nil {
		t.Errorf("Run: %v", r.err)
	}
}

// consumer returns the workers' consumer's state.
func (e *env) consumer() *jetstream.ConsumerInfo {
	e.t.Helper()
	c, err := e.js.Consumer(e.ctx(), e.sc.WithDefaults().Events, e.sc.WithDefaults().Consumer)
	if err != nil {
		e.t.Fatalf("consumer: %v", err)
	}
	info, err := c.Info(e.ctx())
	if err != nil {
		e.t.Fatalf("consumer info: %v", err)
	}
	return info
}

// settled reports whether the consumer holds nothing: every message
// delivered and acknowledged or terminated.
func (e *env) settled() bool {
	pending, ackPending, err := streams.Backlog(e.ctx(), e.js, e.sc)
	if err != nil {
		e.t.Fatalf("backlog: %v", err)
	}
	return pending == 0 && ackPending == 0
}

// streamMsgs returns how many messages the stream holds.
func (e *env) streamMsgs(name string) uint64 {
	e.t.Helper()
	s, err := e.js.Stream(e.ctx(), name)
	if err != nil {
		e.t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(e.ctx())
	if err != nil {
		e.t.Fatalf("stream %s info: %v", name, err)
	}
	return info.State.Msgs
}

// dlq returns the dead-letter stream's messages.
func (e *env) dlq() []*jetstream.RawStreamMsg {
	e.t.Helper()
	name := e.sc.WithDefaults().DLQ
	s, err := e.js.Stream(e.ctx(), name)
	if err != nil {
		e.t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(e.ctx())
	if err != nil {
		e.t.Fatalf("stream %s info: %v", name, err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(e.ctx(), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			e.t.Fatalf("dlq get %d: %v", seq, err)
		}
		out = append(out, m)
	}
	return out
}

// record looks key up in the store.
func (e *env) record(key string) dedupe.Record {
	e.t.Helper()
	rec, err := e.store.Lookup(e.ctx(), key)
	if err != nil {
		e.t.Fatalf("lookup %s: %v", key, err)
	}
	return rec
}

// calls records a handler's calls.
type calls struct {
	mu   sync.Mutex
	runs map[string][]Run
}

func (c *calls) add(ctx context.Context, key string) Run {
	run, _ := RunFromContext(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.runs == nil {
		c.runs = map[string][]Run{}
	}
	c.runs[key] = append(c.runs[key], run)
	return run
}

func (c *calls) of(key string) []Run {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Run(nil), c.runs[key]...)
}

// value sums a collector's counter, gauge or histogram sample counts.
func value(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 64)
	c.Collect(ch)
	close(ch)
	var sum float64
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			continue
		}
		switch {
		case d.Counter != nil:
			sum += d.Counter.GetValue()
		case d.Gauge != nil:
			sum += d.Gauge.GetValue()
		case d.Histogram != nil:
			sum += float64(d.Histogram.GetSampleCount())
		}
	}
	return sum
}

// outcomes returns how many deliveries ended with outcome.
func (r *running) outcomes(outcome string) float64 {
	return value(r.w.metrics.processed.WithLabelValues(outcome))
}
