package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/wagate/wagate/ingest"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
)

// TestEndToEndRedisCluster runs an ingress and a worker against a
// three-master Redis Cluster (one replica each) while webhooks flow, fails a
// master over to its replica (CLUSTER FAILOVER, planned), then kills a master
// (SIGKILL, unplanned): G1 and G2 across both.
func TestEndToEndRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped in -short mode")
	}
	began := time.Now()
	cluster := testenv.StartRedisCluster(t)
	t.Logf("Cluster ready in %v", time.Since(began).Round(time.Millisecond))
	failoverUnderTraffic(t, []string{"WAGATE_REDIS_URL=" + cluster.URL()},
		failover{name: "CLUSTER FAILOVER", run: func() { cluster.Failover() }},
		failover{name: "kill a master", run: func() { cluster.KillMaster() }, lossy: true})
}

// TestEndToEndRedisClusterTLS runs an ingress and a worker against a
// three-master Redis Cluster that speaks only TLS with client certificates
// (clients and cluster bus), configured as the deployments configure them
// (a rediss:// URL and WAGATE_REDIS_TLS_*) while webhooks flow: G1 and G2.
func TestEndToEndRedisClusterTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped in -short mode")
	}
	began := time.Now()
	f := testenv.MakeTLSFiles(t)
	cluster := testenv.StartRedisClusterTLS(t, f)
	t.Logf("Cluster ready in %v", time.Since(began).Round(time.Millisecond))
	failoverUnderTraffic(t, []string{
		"WAGATE_REDIS_URL=" + cluster.URL(),
		"WAGATE_REDIS_TLS_CA=" + f.CA,
		"WAGATE_REDIS_TLS_CERT=" + f.ClientCert,
		"WAGATE_REDIS_TLS_KEY=" + f.ClientKey,
	})
}

// TestEndToEndRedisSentinel runs an ingress and a worker against a Redis
// master and two replicas watched by three Sentinels while webhooks flow,
// fails the master over (SENTINEL FAILOVER), then kills the new master
// (SIGKILL): G1 and G2 across both.
func TestEndToEndRedisSentinel(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped in -short mode")
	}
	began := time.Now()
	sentinel := testenv.StartRedisSentinel(t)
	t.Logf("Sentinel setup ready in %v", time.Since(began).Round(time.Millisecond))
	failoverUnderTraffic(t, []string{"WAGATE_REDIS_URL=" + sentinel.URL()},
		failover{name: "SENTINEL FAILOVER", run: func() { sentinel.Failover() }, lossy: true},
		failover{name: "kill the master", run: func() { sentinel.KillMaster() }, lossy: true})
}

// startIngress starts the ingress with env on free loopback ports for its
// webhooks and its admin endpoints, waits until it is ready and returns its
// webhook base URL.
func startIngress(t *testing.T, dir string, env []string) string {
	t.Helper()
	port, adminPort := testenv.FreePort(t), testenv.FreePort(t)
	start(t, filepath.Join(dir, "ingress"), "ingress", append(env,
		fmt.Sprintf("WAGATE_HTTP_ADDR=127.0.0.1:%d", port),
		fmt.Sprintf("WAGATE_ADMIN_ADDR=127.0.0.1:%d", adminPort))...)
	waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort))
	return fmt.Sprintf("http://127.0.0.1:%d", port)
}

// failover is one change of Redis master run while traffic flows.
type failover struct {
	name string
	run  func() // returns once the new master takes writes
	// lossy: the old master may have acknowledged writes that no replica
	// received (Redis replicates asynchronously): it died, or SENTINEL
	// FAILOVER promoted a replica without waiting for it to catch up. A
	// handler running then may run a second time, after its side effect and
	// before a done mark that survived (design §1 G2, the Scale section of
	// deployments/README.md). CLUSTER FAILOVER is not lossy.
	lossy bool
}

// forwardLog records every forward the worker makes, with its time.
type forwardLog struct {
	mu       sync.Mutex
	forwards []timedForward
}

type timedForward struct {
	key, idempotencyKey string
	at                  time.Time
}

func (l *forwardLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
	l.mu.Lock()
	l.forwards = append(l.forwards, timedForward{key: ev.Key, idempotencyKey: r.Header.Get("Idempotency-Key"), at: time.Now()})
	l.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (l *forwardLog) snapshot() []timedForward {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]timedForward(nil), l.forwards...)
}

// workerConcurrency is the handlers in flight in the worker under test: the
// most one lossy failover can make run twice.
const workerConcurrency = 4

// failoverUnderTraffic starts an ingress and a worker with redisEnv
// (WAGATE_REDIS_URL and maybe WAGATE_REDIS_TLS_*), posts Cloud API webhooks from four clients (each body
// until it is answered 200, as Meta retries, then once more as a duplicate
// delivery), runs each failover in turn once traffic flows and again after
// it, then checks G1 and G2: every event of every body is forwarded, with
// its key, exactly once; except that once a lossy failover began, at most
// workerConcurrency events per lossy failover (those being handled as the
// master changed) may run a second time.
func failoverUnderTraffic(t *testing.T, redisEnv []string, failovers ...failover) {
	dir := binaries(t)
	natsURL := testenv.NATSURL(t)
	var fl forwardLog
	sinkSrv := httptest.NewServer(&fl)
	t.Cleanup(sinkSrv.Close)

	common := append([]string{
		"WAGATE_NATS_URL=" + natsURL,
		"WAGATE_META_APP_SECRET=" + shutdownSecret,
		"WAGATE_LOG_LEVEL=debug",
	}, redisEnv...)
	base := startIngress(t, dir, common)
	wport := testenv.FreePort(t)
	start(t, filepath.Join(dir, "worker"), "worker", append(common,
		"WAGATE_HANDLER=forward",
		"WAGATE_FORWARD_URL="+sinkSrv.URL,
		"WAGATE_WORKER_CONCURRENCY="+strconv.Itoa(workerConcurrency),
		"WAGATE_BACKOFF=100ms,250ms,500ms",
		fmt.Sprintf("WAGATE_WORKER_HTTP_ADDR=127.0.0.1:%d", wport))...)
	waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", wport))

	load := &shutdownLoad{url: base + ingest.Route(messages.ProviderCloud), limiter: rate.NewLimiter(100, 1), keys: map[string]bool{}}
	var duplicates atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				body, keys := load.body(t)
				load.mu.Lock()
				for _, k := range keys {
					load.keys[k] = true
				}
				load.mu.Unlock()
				// Until 200, as a provider retries; then the same body once
				// more, which must be answered 200 and forward nothing.
				for attempt := 0; ; attempt++ {
					if err := load.limiter.Wait(context.Background()); err != nil {
						t.Errorf("load: %v", err)
						return
					}
					code, err := postCloud(load.url, body)
					if err == nil && code == http.StatusOK {
						break
					}
					load.mu.Lock()
					load.failures++
					load.mu.Unlock()
					if attempt > 600 {
						t.Errorf("load: body never answered 200: %d %v", code, err)
						return
					}
				}
				code, err := postCloud(load.url, body)
				if err != nil || code != http.StatusOK {
					t.Errorf("duplicate delivery: code %d err %v, want 200", code, err)
				}
				duplicates.Add(1)
			}
		}()
	}
	forwarded := func() int { return len(fl.snapshot()) }
	testenv.Eventually(t, 30*time.Second, func() bool { return forwarded() >= 100 }, "no traffic before the first failover: %d forwards", forwarded())
	var (
		lossySince time.Time // when the first lossy failover began
		lossy      int
	)
	for _, f := range failovers {
		before, began := forwarded(), time.Now()
		if f.lossy {
			lossy++
			if lossySince.IsZero() {
				lossySince = began
			}
		}
		f.run()
		during := forwarded() - before
		testenv.Eventually(t, 60*time.Second, func() bool { return forwarded() >= before+during+200 },
			"traffic did not resume after %s: %d forwards", f.name, forwarded())
		t.Logf("%s: took %v, %d forwards meanwhile", f.name, time.Since(began).Round(time.Millisecond), during)
	}
	close(stop)
	wg.Wait()
	settle := time.Now()

	load.mu.Lock()
	want := len(load.keys)
	failures := load.failures
	load.mu.Unlock()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	testenv.Eventually(t, 90*time.Second, func() bool {
		got := map[string]bool{}
		for _, f := range fl.snapshot() {
			got[f.key] = true
		}
		if len(got) < want {
			return false
		}
		cons, err := js.Consumer(ctx, "WAGATE_EVENTS", "wagate-workers")
		if err != nil {
			return false
		}
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, "forwarded %d events, want %d distinct keys", forwarded(), want)
	t.Logf("every event forwarded and the consumer idle %v after the load stopped", time.Since(settle).Round(time.Millisecond))

	forwards := map[string][]timedForward{}
	for _, f := range fl.snapshot() {
		forwards[f.key] = append(forwards[f.key], f)
		if f.idempotencyKey != f.key {
			t.Errorf("forward of %s: Idempotency-Key %q, want the event key", f.key, f.idempotencyKey)
		}
	}
	load.mu.Lock()
	defer load.mu.Unlock()
	reruns := 0
	for k := range load.keys {
		fs := forwards[k]
		switch {
		case len(fs) == 0:
			t.Errorf("key %s: never forwarded (G1)", k)
		case len(fs) == 2 && !lossySince.IsZero() && fs[1].at.After(lossySince):
			reruns++ // allowed, bounded below
		case len(fs) > 1:
			t.Errorf("key %s: forwarded %d times, want exactly 1 (G2)", k, len(fs))
		}
	}
	if reruns > lossy*workerConcurrency {
		t.Errorf("%d events ran twice after %d lossy failovers, want at most %d (the handlers in flight at each)", reruns, lossy, lossy*workerConcurrency)
	}
	for k, fs := range forwards {
		if !load.keys[k] {
			t.Errorf("forward of key %s that no body held (%d times)", k, len(fs))
		}
	}
	t.Logf("%d events forwarded, %d of them a second time after a lossy failover; %d duplicate deliveries answered 200; %d attempts not answered 200 and retried",
		want, reruns, duplicates.Load(), failures)
}
