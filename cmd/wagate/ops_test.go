package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/messages/streams"
	"github.com/wagate/wagate/worker"
)

// testAccount is the phone_number_id of the test events.
const testAccount = "106540352242922"

// opsEnv is one test's real servers for the operator commands: a private
// in-process NATS server with JetStream, Redis, and a forward endpoint that
// records every run. The WAGATE_* variables point the commands at them.
type opsEnv struct {
	t     *testing.T
	js    jetstream.JetStream
	store *dedupe.Redis
	sc    streams.Config
	sink  *runSink
}

// newOpsEnv starts the servers and sets the environment of the commands.
// ensure creates the streams and the consumer.
func newOpsEnv(t *testing.T, ensure bool) *opsEnv {
	t.Helper()
	natsURL := testenv.StartNATS(t).ClientURL()
	redisURL := testenv.RedisURL(t)
	sink := &runSink{t: t, reject: map[string]int{}}
	srv := httptest.NewServer(sink)
	t.Cleanup(srv.Close)
	sink.srvURL = srv.URL
	for k, v := range map[string]string{
		"WAGATE_NATS_URL":       natsURL,
		"WAGATE_REDIS_URL":      redisURL,
		"WAGATE_DEDUPE_BACKEND": "redis",
		"WAGATE_HANDLER":        "forward",
		"WAGATE_FORWARD_URL":    srv.URL,
		"WAGATE_ACK_WAIT":       "5s",
		"WAGATE_MAX_DELIVER":    "3",
		"WAGATE_LOCK_TTL":       "30s",
		"WAGATE_LOG_LEVEL":      "warn",
		"WAGATE_OTEL":           "off",
	} {
		t.Setenv(k, v)
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatalf("nats: %v", err)
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
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	e := &opsEnv{t: t, js: js, store: dedupe.NewRedis(rdb, dedupe.RedisOptions{}), sink: sink,
		sc: streams.Config{AckWait: 5 * time.Second, MaxDeliver: 3, BackOff: []time.Duration{50 * time.Millisecond}}}
	if ensure {
		if err := streams.Ensure(e.ctx(), js, e.sc); err != nil {
			t.Fatalf("streams: %v", err)
		}
		if _, err := streams.EnsureConsumer(e.ctx(), js, e.sc); err != nil {
			t.Fatalf("consumer: %v", err)
		}
	}
	return e
}

// ctx is a bounded context for one call.
func (e *opsEnv) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

// wagate runs the command line in process with args and returns what it
// wrote to stdout and its error.
func (e *opsEnv) wagate(args ...string) (string, error) {
	e.t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(e.ctx())
	if errOut.Len() > 0 {
		e.t.Logf("wagate %v: stderr:\n%s", args, errOut.String())
	}
	return out.String(), err
}

// mustWagate is wagate that fails the test on an error.
func (e *opsEnv) mustWagate(args ...string) string {
	e.t.Helper()
	out, err := e.wagate(args...)
	if err != nil {
		e.t.Fatalf("wagate %v: %v\n%s", args, err, out)
	}
	return out
}

// event returns a new Cloud API event of kind (message or status) on
// testAccount, with the identity Parse would give it.
func (e *opsEnv) event(kind messages.Kind) messages.Event {
	id := "wamid." + rand.Text()
	ev := messages.Event{
		Provider:   messages.ProviderCloud,
		Kind:       kind,
		Account:    testAccount,
		ID:         id,
		From:       "15550000001",
		Timestamp:  1700000000,
		ReceivedAt: time.Now().UTC(),
		Context:    messages.Context{Object: "whatsapp_business_account", Field: "messages"},
	}
	switch kind {
	case messages.KindStatus:
		ev.Status = "read"
		ev.Identity = messages.Identity(messages.ProviderCloud, string(kind), testAccount, "messages", id, "read")
		ev.Item = json.RawMessage(`{"id":"` + id + `","status":"read","timestamp":"1700000000","recipient_id":"15550000001"}`)
	default:
		ev.Type = "text"
		ev.Identity = messages.Identity(messages.ProviderCloud, string(kind), testAccount, "messages", id)
		ev.Item = json.RawMessage(`{"from":"15550000001","id":"` + id + `","timestamp":"1700000000","type":"text","text":{"body":"hi"}}`)
	}
	ev.Key = messages.KeyOf(ev.Identity)
	return ev
}

// publish stores ev as the ingress does and returns its stream sequence.
func (e *opsEnv) publish(ev messages.Event) uint64 {
	e.t.Helper()
	data, err := ev.Encode()
	if err != nil {
		e.t.Fatalf("encode: %v", err)
	}
	msg := nats.NewMsg(messages.Subject(ev))
	msg.Data = data
	msg.Header.Set(nats.MsgIdHdr, ev.Key)
	msg.Header.Set(messages.HeaderProvider, ev.Provider)
	msg.Header.Set(messages.HeaderKind, string(ev.Kind))
	msg.Header.Set(messages.HeaderReceivedAt, ev.ReceivedAt.Format(time.RFC3339Nano))
	ack, err := e.js.PublishMsg(e.ctx(), msg)
	if err != nil {
		e.t.Fatalf("publish: %v", err)
	}
	return ack.Sequence
}

// record looks key up in the store.
func (e *opsEnv) record(key string) dedupe.Record {
	e.t.Helper()
	rec, err := e.store.Lookup(e.ctx(), key)
	if err != nil {
		e.t.Fatalf("lookup %s: %v", key, err)
	}
	return rec
}

// done marks key done as a worker run would, and returns the run's fence.
func (e *opsEnv) done(key string) int64 {
	e.t.Helper()
	l, err := e.store.Begin(e.ctx(), key, dedupe.BeginOptions{TTL: time.Minute})
	if err != nil {
		e.t.Fatalf("begin %s: %v", key, err)
	}
	if err := e.store.Finish(e.ctx(), l); err != nil {
		e.t.Fatalf("finish %s: %v", key, err)
	}
	return l.Fence
}

// startWorker runs a worker in process, with the forward handler to the
// sink, until the test ends.
func (e *opsEnv) startWorker() {
	e.t.Helper()
	w, err := worker.New(worker.Config{
		Streams:     e.sc,
		Concurrency: 4,
		Logger:      slog.New(slog.NewTextHandler(e.t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}, e.js, e.store, worker.NewForward(e.sink.srvURL, nil))
	if err != nil {
		e.t.Fatalf("worker: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("worker Run: %v", err)
		}
	})
}

// streamMsgs returns how many messages the named stream holds.
func (e *opsEnv) streamMsgs(name string) uint64 {
	e.t.Helper()
	st, err := e.js.Stream(e.ctx(), name)
	if err != nil {
		e.t.Fatalf("stream %s: %v", name, err)
	}
	info, err := st.Info(e.ctx())
	if err != nil {
		e.t.Fatalf("stream %s: %v", name, err)
	}
	return info.State.Msgs
}

// run is one request the sink received.
type run struct {
	key      string
	fence    int64
	delivery string
	code     int
}

// runSink is the forward endpoint: it records each run, answers the status
// set for its key (200 by default), and fails the test when two runs of one
// key overlap.
type runSink struct {
	t      *testing.T
	srvURL string
	delay  time.Duration

	mu       sync.Mutex
	runs     []run
	reject   map[string]int // key → status to answer
	inFlight map[string]int
}

func (s *runSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ev, err := messages.Decode(body)
	if err != nil {
		s.t.Errorf("sink: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	key := r.Header.Get(worker.HeaderIdempotencyKey)
	if key != ev.Key {
		s.t.Errorf("sink: Idempotency-Key %q for event %s", key, ev.Key)
	}
	fence, _ := strconv.ParseInt(r.Header.Get(worker.HeaderFencingToken), 10, 64)
	s.mu.Lock()
	if s.inFlight == nil {
		s.inFlight = map[string]int{}
	}
	s.inFlight[key]++
	if s.inFlight[key] > 1 {
		s.t.Errorf("sink: two runs of %s at once", key)
	}
	code := http.StatusOK
	if c, ok := s.reject[key]; ok {
		code = c
	}
	s.runs = append(s.runs, run{key: key, fence: fence, delivery: r.Header.Get(worker.HeaderDelivery), code: code})
	delay := s.delay
	s.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay) // the handler's work, not synchronisation
	}
	s.mu.Lock()
	s.inFlight[key]--
	s.mu.Unlock()
	w.WriteHeader(code)
}

// of returns the runs of key, in the order received.
func (s *runSink) of(key string) []run {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []run
	for _, r := range s.runs {
		if r.key == key {
			out = append(out, r)
		}
	}
	return out
}

// count returns how many runs were received.
func (s *runSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.runs)
}

// setStatus makes the sink answer code for key (0: 200 again).
func (s *runSink) setStatus(key string, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code == 0 {
		delete(s.reject, key)
		return
	}
	s.reject[key] = code
}

// errorContains reports whether err is non-nil and its text holds s.
func errorContains(err error, s string) bool {
	return err != nil && bytes.Contains([]byte(err.Error()), []byte(s))
}
