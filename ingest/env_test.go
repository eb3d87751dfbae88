package ingest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
)

// testSecret signs the test bodies.
const testSecret = "test-app-secret-9f2c"

// wait bounds every poll of the tests.
const wait = 10 * time.Second

// env is one ingress under test with its own real Redis (a private
// redis-server that can be stopped) and its own in-process JetStream server,
// so that tests share no key and no stream.
type env struct {
	t     testing.TB
	redis *testenv.Redis
	rdb   *redis.Client
	nats  *testenv.NATS
	nc    *nats.Conn
	js    jetstream.JetStream
	store *countingStore
	reg   *prometheus.Registry
	srv   *Server
	http  *httptest.Server // Handler: the webhook routes
	admin *httptest.Server // AdminHandler: /healthz, /readyz, /metrics
	logs  *syncBuffer
}

// newEnv starts Redis, NATS and an ingress configured by cfg (AppSecrets
// defaults to testSecret, PublishTimeout to 3 s, Logger to JSON lines at
// debug level in e.logs) with opts, and ensures the streams.
func newEnv(t testing.TB, cfg Config, opts ...Option) *env {
	t.Helper()
	e := &env{t: t, logs: &syncBuffer{}}
	e.redis = testenv.StartRedis(t)
	e.rdb = redis.NewClient(&redis.Options{Addr: e.redis.Addr(), MaxRetries: 1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = e.rdb.Close() })
	e.store = &countingStore{Store: dedupe.NewRedis(e.rdb, dedupe.RedisOptions{})}

	e.nats = testenv.StartNATS(t)
	nc, err := nats.Connect(e.nats.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	e.nc = nc
	if e.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}

	if cfg.AppSecrets == nil && !cfg.Insecure {
		cfg.AppSecrets = []string{testSecret}
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = 3 * time.Second
	}
	e.reg = prometheus.NewRegistry()
	cfg.Registerer = e.reg
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ingress logs:\n%s", e.logs.String())
		}
	})
	if e.srv, err = New(cfg, e.store, e.js, opts...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := e.srv.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	e.http = httptest.NewServer(e.srv.Handler())
	t.Cleanup(e.http.Close)
	e.admin = httptest.NewServer(e.srv.AdminHandler())
	t.Cleanup(e.admin.Close)
	return e
}

// post sends body to the Cloud API route with signature sig (none when
// empty) and returns the status code and the answer's body.
func (e *env) post(body []byte, sig string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.http.URL+pathCloud, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set(HeaderSignature, sig)
	}
	return e.do(req)
}

// get sends a GET to path on the webhook handler and returns the status
// code and the answer's body.
func (e *env) get(path string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.http.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(req)
}

// getAdmin is get on the admin handler.
func (e *env) getAdmin(path string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.admin.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(req)
}

// waitMarks waits until no accepted mark is being written.
func (e *env) waitMarks() {
	e.t.Helper()
	// A mark takes one store round trip: poll finely, so that benchmarks
	// measure the request, not the polling.
	deadline := time.Now().Add(wait)
	for e.srv.marking.Load() != 0 {
		if time.Now().After(deadline) {
			e.t.Fatalf("accepted marks still being written after %v", wait)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// do sends req and returns the status code and the answer's body, once the
// accepted marks the request started have landed: tests deliver one after
// another, as a provider's retry does, seconds later.
func (e *env) do(req *http.Request) (int, string) {
	e.t.Helper()
	defer e.waitMarks()
	resp, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// postSigned posts body signed with testSecret and fails the test unless
// the answer is want.
func (e *env) postSigned(body []byte, want int) {
	e.t.Helper()
	if code, text := e.post(body, Sign(body, testSecret)); code != want {
		e.t.Fatalf("POST: got %d %q, want %d", code, text, want)
	}
}

// storedMsg is one message of the events stream.
type storedMsg struct {
	ev  messages.Event
	raw *jetstream.RawStreamMsg
}

// stored returns every message of the events stream, in order.
func (e *env) stored() []storedMsg {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	st, err := e.js.Stream(ctx, e.srv.cfg.Streams.Events)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []storedMsg
	if info.State.Msgs == 0 {
		return nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			e.t.Fatalf("get message %d: %v", seq, err)
		}
		ev, err := messages.Decode(m.Data)
		if err != nil {
			e.t.Fatalf("message %d: %v", seq, err)
		}
		out = append(out, storedMsg{ev: ev, raw: m})
	}
	return out
}

// storedKeys counts the stream's messages by key.
func (e *env) storedKeys() map[string]int {
	e.t.Helper()
	n := map[string]int{}
	for _, m := range e.stored() {
		n[m.ev.Key]++
	}
	return n
}

// state returns the dedupe state of key.
func (e *env) state(key string) dedupe.State {
	e.t.Helper()
	e.waitMarks() // accepted marks are written after the answer
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	r, err := e.store.Lookup(ctx, key)
	if err != nil {
		e.t.Fatalf("lookup %s: %v", key, err)
	}
	return r.State
}

// metric returns the value of the counter (or the sample count of the
// histogram) name whose labels include labels ("k", "v", …); 0 when absent.
func (e *env) metric(name string, labels ...string) float64 {
	e.t.Helper()
	fams, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	total := 0.0
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				total += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				total += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return total
}

// parse parses body as the ingress does.
func parse(t testing.TB, body []byte) []messages.Event {
	t.Helper()
	evs, err := messages.Parse(body, time.Now())
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return evs
}

// readTestdata returns a file of testdata/.
func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// countingStore counts the calls to Claim and the keys claimed.
type countingStore struct {
	dedupe.Store
	claims atomic.Int64
	// calls counts the calls of Claim, Accept and ClaimAccept: the store
	// round trips of the claims and the accepted marks.
	calls atomic.Int64
	keys  atomic.Int64
	// acceptGate, when set, holds every Accept until it is closed.
	acceptGate chan struct{}
	// onClaim, when set, is called with the keys of every Claim before it
	// is sent.
	onClaim func(keys []string)
	// claimDelay, when set, makes every Claim wait that long (or until its
	// context is done) before it runs: a slow but healthy store.
	claimDelay time.Duration
	// acceptErr, when set, fails every Accept.
	acceptErr error
	// rides counts the ClaimAccept calls that carried both claims and
	// accepted marks.
	rides atomic.Int64
}

func (s *countingStore) Accept(ctx context.Context, claims []dedupe.Claim) error {
	s.calls.Add(1)
	if err := s.beforeAccept(ctx); err != nil {
		return err
	}
	return s.Store.Accept(ctx, claims)
}

func (s *countingStore) Claim(ctx context.Context, owner string, keys []string) ([]dedupe.Claim, error) {
	s.calls.Add(1)
	if err := s.beforeClaim(ctx, keys); err != nil {
		return nil, err
	}
	return s.Store.Claim(ctx, owner, keys)
}

// ClaimAccept is Claim and Accept at once, each part counted, gated and
// delayed as alone, in one round trip when the store allows.
func (s *countingStore) ClaimAccept(ctx context.Context, owner string, keys []string, accept []dedupe.Claim) dedupe.ClaimAccepted {
	s.calls.Add(1)
	var out dedupe.ClaimAccepted
	if len(keys) > 0 && len(accept) > 0 {
		s.rides.Add(1)
	}
	if len(accept) > 0 {
		if out.AcceptErr = s.beforeAccept(ctx); out.AcceptErr != nil {
			accept = nil
		}
	}
	if len(keys) > 0 {
		if out.ClaimErr = s.beforeClaim(ctx, keys); out.ClaimErr != nil {
			keys = nil
		}
	}
	got := dedupe.ClaimAndAccept(ctx, s.Store, owner, keys, accept)
	if len(accept) > 0 {
		out.AcceptErr = got.AcceptErr
	}
	if len(keys) > 0 {
		out.Claims, out.ClaimErr = got.Claims, got.ClaimErr
	}
	return out
}

// beforeAccept holds an Accept at acceptGate, and fails it with acceptErr.
func (s *countingStore) beforeAccept(ctx context.Context) error {
	if s.acceptErr != nil {
		return s.acceptErr
	}
	if s.acceptGate != nil {
		select {
		case <-s.acceptGate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// beforeClaim counts a Claim of keys, calls onClaim and waits claimDelay.
func (s *countingStore) beforeClaim(ctx context.Context, keys []string) error {
	s.claims.Add(1)
	s.keys.Add(int64(len(keys)))
	if s.onClaim != nil {
		s.onClaim(keys)
	}
	if s.claimDelay > 0 {
		select {
		case <-time.After(s.claimDelay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Bodies built in code.

const (
	testWABA          = "102290129340398"
	testPhoneNumberID = "106540352242922"
	testUser          = "15550000001"
)

// cloudBody returns a Cloud API body with one "messages" change holding the
// given message and status items (JSON objects).
func cloudBody(msgs, statuses []string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"object":"whatsapp_business_account","entry":[{"id":%q,"changes":[{"value":{"messaging_product":"whatsapp",`+
		`"metadata":{"display_phone_number":"15550000000","phone_number_id":%q},"contacts":[{"profile":{"name":"Test User"},"wa_id":%q}]`,
		testWABA, testPhoneNumberID, testUser)
	if len(msgs) > 0 {
		b.WriteString(`,"messages":[` + strings.Join(msgs, ",") + `]`)
	}
	if len(statuses) > 0 {
		b.WriteString(`,"statuses":[` + strings.Join(statuses, ",") + `]`)
	}
	b.WriteString(`},"field":"messages"}]}]}`)
	return []byte(b.String())
}

// textItem is a text message item.
func textItem(wamid, text string) string {
	return fmt.Sprintf(`{"from":%q,"id":%q,"timestamp":"1750030073","type":"text","text":{"body":%q}}`, testUser, wamid, text)
}

// textBody is a body holding one text message.
func textBody(wamid, text string) []byte { return cloudBody([]string{textItem(wamid, text)}, nil) }

// batchBody is a body holding n text messages with distinct wamids.
func batchBody(prefix string, n int) []byte {
	items := make([]string, n)
	for i := range items {
		items[i] = textItem(fmt.Sprintf("wamid.%s.%d", prefix, i), fmt.Sprintf("message %d", i))
	}
	return cloudBody(items, nil)
}
