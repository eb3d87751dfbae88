package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
)

// §8: a server with no secret refuses to build unless insecure; invalid
// fields are errors.
func TestNewValidates(t *testing.T) {
	e := newEnv(t, Config{})
	cases := []struct {
		name string
		cfg  Config
		want error
	}{
		{"no secret", Config{}, ErrNoSecret},
		{"empty secret", Config{AppSecrets: []string{"a", ""}}, nil},
		{"negative body limit", Config{AppSecrets: []string{"a"}, BodyLimit: -1}, nil},
		{"unknown policy", Config{AppSecrets: []string{"a"}, RedisPolicy: "fail-sometimes"}, nil},
		{"negative timeout", Config{AppSecrets: []string{"a"}, PublishTimeout: -time.Second}, nil},
	}
	for _, c := range cases {
		c.cfg.Registerer = prometheus.NewRegistry()
		_, err := New(c.cfg, e.store, e.js)
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: New returned %v, want an error (%v)", c.name, err, c.want)
		}
	}
	if _, err := New(Config{AppSecrets: []string{"a"}, Registerer: prometheus.NewRegistry()}, nil, e.js); err == nil {
		t.Error("nil store: no error")
	}
	if _, err := New(Config{AppSecrets: []string{"a"}, Registerer: prometheus.NewRegistry()}, e.store, nil); err == nil {
		t.Error("nil JetStream: no error")
	}
	// Two servers on one registry: the second cannot register its metrics.
	if _, err := New(Config{AppSecrets: []string{"a"}, Registerer: e.reg}, e.store, e.js); err == nil {
		t.Error("metrics registered twice: no error")
	}
	s, err := New(Config{Insecure: true}, e.store, e.js)
	if err != nil {
		t.Fatalf("insecure: %v", err)
	}
	if s.cfg.Addr != DefaultAddr || s.cfg.BodyLimit != DefaultBodyLimit || s.cfg.RedisPolicy != FailOpen ||
		s.cfg.PublishTimeout != DefaultPublishTimeout || s.cfg.Owner == "" || s.cfg.Streams.Events == "" {
		t.Errorf("defaults not applied: %+v", s.cfg)
	}
}

// §8: the verification handshake.
func TestHandshake(t *testing.T) {
	e := newEnv(t, Config{VerifyToken: "the-verify-token"})
	cases := []struct {
		name  string
		query string
		code  int
		body  string
	}{
		{"right token", "hub.mode=subscribe&hub.verify_token=the-verify-token&hub.challenge=1158201444", http.StatusOK, "1158201444"},
		{"wrong token", "hub.mode=subscribe&hub.verify_token=another-token&hub.challenge=1158201444", http.StatusForbidden, ""},
		{"token prefix", "hub.mode=subscribe&hub.verify_token=the-verify&hub.challenge=1", http.StatusForbidden, ""},
		{"missing token", "hub.mode=subscribe&hub.challenge=1158201444", http.StatusForbidden, ""},
		{"wrong mode", "hub.mode=unsubscribe&hub.verify_token=the-verify-token&hub.challenge=1", http.StatusForbidden, ""},
		{"no query", "", http.StatusForbidden, ""},
	}
	for _, c := range cases {
		resp, err := e.http.Client().Get(e.http.URL + pathCloud + "?" + c.query)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("%s: got %d, want %d", c.name, resp.StatusCode, c.code)
			continue
		}
		if c.code == http.StatusOK {
			if b.String() != c.body {
				t.Errorf("%s: body %q, want %q", c.name, b.String(), c.body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("%s: content type %q, want text/plain", c.name, ct)
			}
		}
	}

	// No token configured: every handshake is refused, an empty one too.
	e2 := newEnv(t, Config{})
	if code, _ := e2.get(pathCloud + "?hub.mode=subscribe&hub.verify_token=&hub.challenge=1"); code != http.StatusForbidden {
		t.Errorf("empty token: got %d, want 403", code)
	}
}

// §8: a handshake without a challenge has nothing to answer. A 200 with an
// empty body would tell whoever sent it that verification succeeded (and
// Meta never sends one): it is a bad request. A token with characters that
// need escaping in a query matches once decoded.
func TestHandshakeWithoutChallenge(t *testing.T) {
	e := newEnv(t, Config{VerifyToken: "tok&en=1 +/%"})
	const token = "tok%26en%3D1%20%2B%2F%25"
	if code, body := e.get(pathCloud + "?hub.mode=subscribe&hub.verify_token=" + token + "&hub.challenge=77"); code != http.StatusOK || body != "77" {
		t.Errorf("token with special characters: got %d %q, want 200 \"77\"", code, body)
	}
	for _, q := range []string{
		"hub.mode=subscribe&hub.verify_token=" + token,
		"hub.mode=subscribe&hub.verify_token=" + token + "&hub.challenge=",
	} {
		if code, body := e.get(pathCloud + "?" + q); code != http.StatusBadRequest {
			t.Errorf("%s: got %d %q, want 400", q, code, body)
		}
	}
}

// A body limit the NATS server cannot store (the default 4 MiB against
// NATS's default 1 MB max_payload) turns every large-enough webhook into a
// 503 on every retry. The ingress says so when it starts, and the refusal of
// such an event names the cause, instead of a routine "publish failed".
func TestBodyLimitAboveMaxPayload(t *testing.T) {
	e := newEnv(t, Config{})
	if mp := e.nc.MaxPayload(); mp >= messages.MaxEventSize(DefaultBodyLimit) {
		t.Skipf("server max_payload %d already holds the largest event of the default body limit", mp)
	}
	if !strings.Contains(e.logs.String(), "max_payload") {
		t.Errorf("no start-up warning about max_payload %d below the body limit %d", e.nc.MaxPayload(), DefaultBodyLimit)
	}
	body := []byte(`{"object":"whatsapp_business_account","entry":[{"id":"200000000000001","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"100000000000001"},"messages":[{"from":"15550000001","id":"wamid.BIG2","timestamp":"1750000000","type":"text","text":{"body":"` + strings.Repeat("a", 1500000) + `"}}]}}]}]}`)
	code, _ := e.post(body, Sign(body, testSecret))
	if code != http.StatusServiceUnavailable {
		t.Fatalf("got %d, want 503 (the event cannot be stored)", code)
	}
	var line string
	for l := range strings.Lines(e.logs.String()) {
		if strings.Contains(l, "wa:") && strings.Contains(l, "max_payload") {
			line = l
		}
	}
	if !strings.Contains(line, `"level":"ERROR"`) {
		t.Errorf("no error log naming max_payload for the refused event; logs:\n%s", e.logs.String())
	}
}

// The start-up warning holds max_payload to the largest event of a body at
// the limit (messages.MaxEventSize), not to the body limit: an event carries
// its body's rest in base64 and strings copied out of it, so a max_payload
// just above the body limit still refuses the events of the largest bodies.
func TestMaxPayloadWarningUsesTheLargestEvent(t *testing.T) {
	e := newEnv(t, Config{})
	mp := e.nc.MaxPayload()
	// A body limit max_payload holds, whose largest event it does not.
	below := newEnv(t, Config{BodyLimit: mp / 2})
	if messages.MaxEventSize(mp/2) <= mp {
		t.Fatalf("MaxEventSize(%d) = %d fits max_payload %d", mp/2, messages.MaxEventSize(mp/2), mp)
	}
	if !strings.Contains(below.logs.String(), "max_payload") {
		t.Errorf("body limit %d: no start-up warning about max_payload %d below the largest event %d", mp/2, mp, messages.MaxEventSize(mp/2))
	}
	// A body limit whose largest event max_payload holds: no warning.
	limit := (mp - 64<<10) / 5
	fits := newEnv(t, Config{BodyLimit: limit})
	if messages.MaxEventSize(limit) > mp {
		t.Fatalf("MaxEventSize(%d) = %d above max_payload %d", limit, messages.MaxEventSize(limit), mp)
	}
	if strings.Contains(fits.logs.String(), "max_payload") {
		t.Errorf("body limit %d: warning although max_payload %d holds the largest event %d", limit, mp, messages.MaxEventSize(limit))
	}
}

// §9: /metrics serves the registry; routes and codes are counted, unknown
// paths under one label.
func TestMetricsEndpoint(t *testing.T) {
	e := newEnv(t, Config{})
	e.postSigned(textBody("wamid.metrics", "m"), http.StatusOK)
	if code, _ := e.get("/no/such/path"); code != http.StatusNotFound {
		t.Fatalf("unknown path: got %d, want 404", code)
	}
	// The webhook handler serves no probe but /healthz: /readyz and
	// /metrics are on the admin address only.
	for _, p := range []string{pathReady, pathMetric} {
		if code, _ := e.get(p); code != http.StatusNotFound {
			t.Errorf("webhook handler %s: got %d, want 404", p, code)
		}
	}
	code, body := e.getAdmin(pathMetric)
	if code != http.StatusOK {
		t.Fatalf("metrics: got %d", code)
	}
	for _, want := range []string{
		`wagate_ingest_requests_total{code="200",route="/webhooks/whatsapp"} 1`,
		`wagate_ingest_requests_total{code="404",route="other"} 3`,
		`wagate_ingest_events_total{kind="message",outcome="accepted"} 1`,
		`wagate_ingest_events_total{kind="status",outcome="bypassed"} 0`,
		`wagate_ingest_fallback_identities_total{kind="message"} 0`,
		`wagate_ingest_claim_duration_seconds_count 1`,
		`wagate_ingest_publish_duration_seconds_count 1`,
		`wagate_ingest_ack_duration_seconds_count{code="200"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// Serve: on cancel, /readyz answers 503, no new connection is accepted, the
// request in flight finishes with 200, and Serve returns nil.
func TestServeFinishesInFlight(t *testing.T) {
	entered := make(chan struct{}, 1)
	proceed := make(chan struct{})
	e := newEnv(t, Config{}, WithPublisher(func(next PublishFunc) PublishFunc {
		return func(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
			entered <- struct{}{}
			<-proceed
			return next(ctx, msg)
		}
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(ctx, ln) }()

	body := textBody("wamid.inflight", "in flight")
	answered := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+pathCloud, bytes.NewReader(body))
		req.Header.Set(HeaderSignature, Sign(body, testSecret))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	<-entered
	cancel()

	testenv.Eventually(t, wait, func() bool {
		rec := httptest.NewRecorder()
		e.srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, pathReady, nil))
		return rec.Code == http.StatusServiceUnavailable
	}, "readyz 503 while draining")
	testenv.Eventually(t, wait, func() bool {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	}, "listener closed while draining")

	close(proceed)
	if code := <-answered; code != http.StatusOK {
		t.Fatalf("in-flight request: got %d, want 200", code)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Serve did not return")
	}
	if n := len(e.stored()); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}
}

// Serve: a request still in flight at ShutdownTimeout is cut, and Serve
// says so.
func TestServeShutdownTimeout(t *testing.T) {
	entered := make(chan struct{}, 1)
	proceed := make(chan struct{})
	defer close(proceed)
	e := newEnv(t, Config{ShutdownTimeout: 50 * time.Millisecond}, WithPublisher(func(next PublishFunc) PublishFunc {
		return func(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
			entered <- struct{}{}
			select {
			case <-proceed:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return next(ctx, msg)
		}
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(ctx, ln) }()
	body := textBody("wamid.cut", "cut")
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+pathCloud, bytes.NewReader(body))
		req.Header.Set(HeaderSignature, Sign(body, testSecret))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	cancel()
	select {
	case err := <-served:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Serve returned %v, want a deadline error", err)
		}
	case <-time.After(wait):
		t.Fatal("Serve did not return")
	}
}

// Run ensures the streams, listens on Config.Addr (webhooks and /healthz)
// and Config.AdminAddr (/healthz, /readyz, /metrics), and stops on cancel.
func TestRun(t *testing.T) {
	e := newEnv(t, Config{})
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	s, err := New(Config{Addr: addr, AdminAddr: admin, AppSecrets: []string{testSecret}, Registerer: prometheus.NewRegistry(),
		Logger: e.srv.log}, e.store, e.js)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	get := func(url string) int {
		resp, err := http.Get(url)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	testenv.Eventually(t, wait, func() bool { return get("http://"+admin+pathReady) == http.StatusOK }, "Run serves /readyz on the admin address")
	for path, want := range map[string]int{pathHealth: http.StatusOK, pathReady: http.StatusNotFound, pathMetric: http.StatusNotFound} {
		if code := get("http://" + addr + path); code != want {
			t.Errorf("webhook address %s: %d, want %d", path, code, want)
		}
	}
	if code := get("http://" + admin + pathMetric); code != http.StatusOK {
		t.Errorf("admin address /metrics: %d, want 200", code)
	}
	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return")
	}
}

// The store is used through the Store interface, and ClaimAccepter.
var (
	_ dedupe.Store         = (*countingStore)(nil)
	_ dedupe.ClaimAccepter = (*countingStore)(nil)
)

// G1/G4 on shutdown: the accepted marks written after the answers are not
// abandoned; Serve returns only once they have landed.
func TestServeWaitsForAcceptedMarks(t *testing.T) {
	e := newEnv(t, Config{})
	gate := make(chan struct{})
	e.store.acceptGate = gate
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(ctx, ln) }()

	body := textBody("wamid.MARK_ON_SHUTDOWN", "hi")
	ev := parse(t, body)[0]
	req, _ := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+pathCloud, bytes.NewReader(body))
	req.Header.Set(HeaderSignature, Sign(body, testSecret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST: %d, want 200", resp.StatusCode)
	}
	cancel()
	time.AfterFunc(200*time.Millisecond, func() { close(gate) })
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	// No waiting here: Serve must have waited for the mark itself.
	lctx, lcancel := context.WithTimeout(context.Background(), wait)
	defer lcancel()
	if r, err := e.store.Lookup(lctx, ev.Key); err != nil || r.State != dedupe.Accepted {
		t.Fatalf("after Serve returned: state %v err %v, want accepted", r.State, err)
	}
}
