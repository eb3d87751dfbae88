package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
)

// slowSink is a forward endpoint whose every answer takes delay, so that a
// worker stopped under load has handlers in flight. Its side effect (counting
// the key) happens only when an answer completes: a request the worker
// cancels first is counted as aborted instead, as a downstream that rolls
// back an interrupted request would.
type slowSink struct {
	mu       sync.Mutex
	delay    time.Duration
	got      map[string]int
	aborted  int
	inFlight int
}

func (s *slowSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ev, err := messages.Decode(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.inFlight++
	delay := s.delay
	s.mu.Unlock()
	timer := time.NewTimer(delay) // the downstream's work, not synchronisation
	defer timer.Stop()
	select {
	case <-timer.C:
		s.mu.Lock()
		s.inFlight--
		s.got[ev.Key]++
		s.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	case <-r.Context().Done():
		s.mu.Lock()
		s.inFlight--
		s.aborted++
		s.mu.Unlock()
	}
}

func (s *slowSink) state() (inFlight, keys int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight, len(s.got)
}

// shutdownLoad posts Cloud API webhooks of 4 new messages each, at a bounded
// rate, from several clients, each retrying a body until it is answered 200
// (as Meta retries), until stopped. It remembers the keys of every body sent.
type shutdownLoad struct {
	url     string
	limiter *rate.Limiter

	mu       sync.Mutex
	keys     map[string]bool // every event of every body, all answered 200 in the end
	answered int             // 200 answers
	failures int             // refused connections, resets, non-200 answers
	n        int
}

// body returns a new webhook and its events' keys.
func (l *shutdownLoad) body(t *testing.T) ([]byte, []string) {
	l.mu.Lock()
	l.n++
	n := l.n
	l.mu.Unlock()
	var items []string
	for i := range 4 {
		items = append(items, fmt.Sprintf(`{"from":"15550000001","id":"wamid.shutdown.%d.%d","timestamp":"1700000000","type":"text","text":{"body":"load %d"}}`, n, i, n))
	}
	body := []byte(`{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550000000","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Load"},"wa_id":"15550000001"}],"messages":[` + strings.Join(items, ",") + `]}}]}]}`)
	evs, err := messages.Parse(body, time.Now())
	if err != nil || len(evs) != 4 {
		t.Errorf("load body: %d events, %v", len(evs), err)
	}
	keys := make([]string, len(evs))
	for i, ev := range evs {
		keys[i] = ev.Key
	}
	return body, keys
}

// run posts until stop is closed, then finishes the body in hand.
func (l *shutdownLoad) run(t *testing.T, stop <-chan struct{}) {
	ctx := context.Background()
	for {
		select {
		case <-stop:
			return
		default:
		}
		if err := l.limiter.Wait(ctx); err != nil {
			t.Errorf("load: %v", err)
			return
		}
		body, keys := l.body(t)
		l.mu.Lock()
		for _, k := range keys {
			l.keys[k] = true
		}
		l.mu.Unlock()
		deadline := time.Now().Add(60 * time.Second)
		for {
			code, err := postCloud(l.url, body)
			l.mu.Lock()
			if err == nil && code == http.StatusOK {
				l.answered++
				l.mu.Unlock()
				break
			}
			l.failures++
			l.mu.Unlock()
			if time.Now().After(deadline) {
				t.Errorf("load: body not answered 200 within 60s: code %d, %v", code, err)
				return
			}
			if err := l.limiter.Wait(ctx); err != nil { // a provider's retry, paced by the same limit
				return
			}
		}
	}
}

// shutdownSecret is the App Secret of the ingress under test.
const shutdownSecret = "shutdown-app-secret"

// postCloud posts body to url signed as the Cloud API signs it
// (X-Hub-Signature-256) and returns the status code.
func postCloud(url string, body []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	mac := hmac.New(sha256.New, []byte(shutdownSecret))
	mac.Write(body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// metricValue returns the value of one sample (name and labels as
// exposed) of the Prometheus text at url, or -1 when it is absent.
func metricValue(t *testing.T, url, sample string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", url, l, err)
			}
			return f
		}
	}
	return -1
}

// lockKeys returns the lock keys left in Redis (layout: dedupe/redis_layout.go).
func lockKeys(t *testing.T, rdb *redis.Client) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []string
	iter := rdb.Scan(ctx, 0, "{wa:*}:l", 1000).Iterator()
	for iter.Next(ctx) {
		out = append(out, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("scan: %v", err)
	}
	return out
}

// terminate sends SIGTERM to p and waits for it to exit, at most limit; it
// returns the time taken. The process must exit with status 0.
func terminate(t *testing.T, p *process, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("%s exited with %v after SIGTERM, want status 0", p.name, err)
		}
	case <-time.After(limit):
		t.Fatalf("%s still running %v after SIGTERM", p.name, limit)
	}
	return time.Since(start)
}

// TestGracefulShutdown sends SIGTERM to the worker and then to the ingress
// while webhooks flow, restarts each, and checks design §6 and G1/G2: every
// event answered 200 is forwarded exactly once, each process exits 0 within
// its shutdown time, and no lock is left in Redis.
func TestGracefulShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped in -short mode")
	}
	dir := binaries(t)
	rds := testenv.StartRedis(t) // private: every lock key in it is the test's
	natsURL := testenv.StartNATS(t).ClientURL()
	rdb := redis.NewClient(&redis.Options{Addr: rds.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })

	sk := &slowSink{delay: 15 * time.Millisecond, got: map[string]int{}}
	srv := httptest.NewServer(sk)
	t.Cleanup(srv.Close)
	sinkSrv := srv.URL

	common := []string{
		"WAGATE_REDIS_URL=" + rds.URL(),
		"WAGATE_NATS_URL=" + natsURL,
		"WAGATE_META_APP_SECRET=" + shutdownSecret,
		"WAGATE_LOG_LEVEL=info",
		"WAGATE_ACK_WAIT=5s",
		// A lock left behind would outlive the test and fail the scans.
		"WAGATE_LOCK_TTL=10m",
		"WAGATE_SHUTDOWN_TIMEOUT=20s",
	}
	ingressPort, adminPort := testenv.FreePort(t), testenv.FreePort(t)
	ingressEnv := append(common, fmt.Sprintf("WAGATE_HTTP_ADDR=127.0.0.1:%d", ingressPort), fmt.Sprintf("WAGATE_ADMIN_ADDR=127.0.0.1:%d", adminPort))
	base := fmt.Sprintf("http://127.0.0.1:%d", ingressPort)
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	startIngress := func(name string) *process {
		p := start(t, filepath.Join(dir, "ingress"), name, ingressEnv...)
		waitReady(t, admin+"/readyz")
		return p
	}
	var workerBase string // the running worker's probes
	startWorker := func(name string) *process {
		port := testenv.FreePort(t)
		p := start(t, filepath.Join(dir, "worker"), name, append(common,
			"WAGATE_HANDLER=forward",
			"WAGATE_FORWARD_URL="+sinkSrv,
			"WAGATE_WORKER_CONCURRENCY=8",
			fmt.Sprintf("WAGATE_WORKER_HTTP_ADDR=127.0.0.1:%d", port))...)
		workerBase = fmt.Sprintf("http://127.0.0.1:%d", port)
		waitReady(t, workerBase+"/readyz")
		return p
	}

	ingress := startIngress("ingress-1")
	worker := startWorker("worker-1")

	load := &shutdownLoad{url: base + "/webhooks/whatsapp", limiter: rate.NewLimiter(150, 1), keys: map[string]bool{}}
	stop := make(chan struct{})
	var clients sync.WaitGroup
	for range 4 {
		clients.Go(func() { load.run(t, stop) })
	}
	stopLoad := sync.OnceFunc(func() { close(stop); clients.Wait() })
	t.Cleanup(stopLoad)

	// 1. SIGTERM the only worker while its handlers run.
	testenv.Eventually(t, 30*time.Second, func() bool {
		inFlight, keys := sk.state()
		return inFlight > 0 && keys >= 100
	}, "the worker never had handlers in flight")
	took := terminate(t, worker, 30*time.Second)
	if !strings.Contains(worker.cmd.Stdout.(*syncWriter).String(), "worker stopped") {
		t.Errorf("worker-1 did not log its stop")
	}
	if locks := lockKeys(t, rdb); len(locks) != 0 {
		t.Errorf("locks left after the worker's SIGTERM: %v", locks)
	}
	if inFlight, _ := sk.state(); inFlight != 0 {
		t.Errorf("%d forwards still in flight after the worker exited", inFlight)
	}
	_, before := sk.state()
	t.Logf("worker-1 stopped %v after SIGTERM; %d keys forwarded", took.Round(time.Millisecond), before)

	// 2. Restart it, then SIGTERM the ingress mid-traffic and restart it.
	worker = startWorker("worker-2")
	testenv.Eventually(t, 30*time.Second, func() bool { _, keys := sk.state(); return keys > before+100 },
		"worker-2 forwards nothing")
	load.mu.Lock()
	answeredBefore := load.answered
	load.mu.Unlock()
	took = terminate(t, ingress, 30*time.Second)
	t.Logf("ingress-1 stopped %v after SIGTERM", took.Round(time.Millisecond))
	startIngress("ingress-2")
	testenv.Eventually(t, 30*time.Second, func() bool {
		load.mu.Lock()
		defer load.mu.Unlock()
		return load.answered > answeredBefore+50
	}, "no webhook answered after the ingress restart")
	stopLoad()

	// 3. Everything answered 200 is forwarded exactly once.
	load.mu.Lock()
	want := len(load.keys)
	load.mu.Unlock()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	testenv.Eventually(t, 60*time.Second, func() bool {
		if _, keys := sk.state(); keys < want {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cons, err := js.Consumer(ctx, "WAGATE_EVENTS", "wagate-workers")
		if err != nil {
			return false
		}
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, "not every event forwarded (%d keys sent)", want)
	// Both processes serve their metrics (design §9).
	for _, m := range []struct{ url, sample string }{
		{admin + "/metrics", `wagate_ingest_events_total{kind="message",outcome="accepted"}`},
		{admin + "/metrics", `wagate_ingest_requests_total{code="200",route="/webhooks/whatsapp"}`},
		{workerBase + "/metrics", `wagate_worker_processed_total{outcome="done"}`},
		{workerBase + "/metrics", `wagate_worker_handler_duration_seconds_count{result="ok"}`},
	} {
		if v := metricValue(t, m.url, m.sample); v < 1 {
			t.Errorf("%s: %s = %v, want ≥ 1", m.url, m.sample, v)
		}
	}
	took = terminate(t, worker, 30*time.Second)
	if locks := lockKeys(t, rdb); len(locks) != 0 {
		t.Errorf("locks left after the last worker's SIGTERM: %v", locks)
	}

	sk.mu.Lock()
	defer sk.mu.Unlock()
	if sk.aborted != 0 {
		t.Errorf("%d forwards were cancelled: a graceful stop lets in-flight handlers finish", sk.aborted)
	}
	load.mu.Lock()
	defer load.mu.Unlock()
	for k := range load.keys {
		if n := sk.got[k]; n != 1 {
			t.Errorf("event %s forwarded %d times, want exactly 1", k, n)
		}
	}
	for k := range sk.got {
		if !load.keys[k] {
			t.Errorf("forward of a key never sent: %s", k)
		}
	}
	t.Logf("%d webhooks answered 200 (%d failed attempts retried), %d events, each forwarded once; worker-2 stopped %v after SIGTERM",
		load.answered, load.failures, len(load.keys), took.Round(time.Millisecond))
}

// TestShutdownTimeout sends SIGTERM to a worker whose handlers outlive
// WAGATE_SHUTDOWN_TIMEOUT: it cancels them, releases their locks, Naks their
// messages and exits 0 shortly after the timeout; a new worker then runs each
// event once to completion.
func TestShutdownTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped in -short mode")
	}
	dir := binaries(t)
	rds := testenv.StartRedis(t)
	natsURL := testenv.StartNATS(t).ClientURL()
	rdb := redis.NewClient(&redis.Options{Addr: rds.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	sk := &slowSink{delay: time.Hour, got: map[string]int{}} // hangs until cancelled
	srv := httptest.NewServer(sk)
	t.Cleanup(srv.Close)

	common := []string{
		"WAGATE_REDIS_URL=" + rds.URL(),
		"WAGATE_NATS_URL=" + natsURL,
		"WAGATE_META_APP_SECRET=" + shutdownSecret,
		"WAGATE_LOCK_TTL=10m",
		"WAGATE_SHUTDOWN_TIMEOUT=1s",
		"WAGATE_HANDLER=forward",
		"WAGATE_FORWARD_URL=" + srv.URL,
		"WAGATE_FORWARD_TIMEOUT=1h",
	}
	port, adminPort := testenv.FreePort(t), testenv.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	start(t, filepath.Join(dir, "ingress"), "ingress", append(common, fmt.Sprintf("WAGATE_HTTP_ADDR=127.0.0.1:%d", port),
		fmt.Sprintf("WAGATE_ADMIN_ADDR=127.0.0.1:%d", adminPort))...)
	waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort))
	startWorker := func(name string) *process {
		wport := testenv.FreePort(t)
		p := start(t, filepath.Join(dir, "worker"), name, append(common, fmt.Sprintf("WAGATE_WORKER_HTTP_ADDR=127.0.0.1:%d", wport))...)
		waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", wport))
		return p
	}
	w1 := startWorker("worker-1")

	load := &shutdownLoad{}
	body, keys := load.body(t)
	if code, err := postCloud(base+"/webhooks/whatsapp", body); err != nil || code != http.StatusOK {
		t.Fatalf("POST: %d %v", code, err)
	}
	testenv.Eventually(t, 20*time.Second, func() bool { inFlight, _ := sk.state(); return inFlight == len(keys) },
		"the worker never ran all %d handlers", len(keys))
	if locks := lockKeys(t, rdb); len(locks) != len(keys) {
		t.Fatalf("%d locks held while the handlers run, want %d", len(locks), len(keys))
	}
	took := terminate(t, w1, 15*time.Second)
	if took < time.Second {
		t.Errorf("worker-1 exited %v after SIGTERM, before its 1s shutdown timeout: the handlers were not given it", took)
	}
	if locks := lockKeys(t, rdb); len(locks) != 0 {
		t.Errorf("locks left after the shutdown timeout: %v", locks)
	}
	if !strings.Contains(w1.cmd.Stdout.(*syncWriter).String(), "shutdown timeout passed") {
		t.Errorf("worker-1 did not log the cancellation")
	}

	sk.mu.Lock()
	sk.delay = 0
	sk.mu.Unlock()
	startWorker("worker-2")
	testenv.Eventually(t, 30*time.Second, func() bool { _, n := sk.state(); return n == len(keys) },
		"worker-2 did not run the interrupted events")
	sk.mu.Lock()
	defer sk.mu.Unlock()
	for _, k := range keys {
		if sk.got[k] != 1 {
			t.Errorf("%s completed %d times, want 1", k, sk.got[k])
		}
	}
	if sk.aborted != len(keys) {
		t.Errorf("%d forwards cancelled by the shutdown, want %d", sk.aborted, len(keys))
	}
	t.Logf("worker-1 exited %v after SIGTERM (shutdown timeout 1s), cancelling %d handlers", took.Round(time.Millisecond), sk.aborted)
}
