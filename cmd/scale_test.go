package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
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
// three-master Redis Cluster (one replica each) and fails a master over to
// its replica (CLUSTER FAILOVER) while webhooks flow: G1 and G2 across the
// failover.
func TestEndToEndRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped in -short mode")
	}
	cluster := testenv.StartRedisCluster(t)
	failoverUnderTraffic(t, cluster.URL(), func() { cluster.Failover() })
}

// TestEndToEndRedisSentinel runs an ingress and a worker against a Redis
// master and replica watched by three Sentinels, and fails the master over
// (SENTINEL FAILOVER) while webhooks flow: G1 and G2 across the failover.
func TestEndToEndRedisSentinel(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped in -short mode")
	}
	sentinel := testenv.StartRedisSentinel(t)
	failoverUnderTraffic(t, sentinel.URL(), sentinel.Failover)
}

// failoverUnderTraffic starts an ingress and a worker with WAGATE_REDIS_URL
// set to redisURL, posts Cloud API webhooks from four clients (each body
// until it is answered 200, as Meta retries, then once more as a duplicate
// delivery), runs failover once traffic flows, keeps posting for a while
// after it, and checks that every event of every body is forwarded exactly
// once with its key, and that every duplicate was answered 200.
func failoverUnderTraffic(t *testing.T, redisURL string, failover func()) {
	dir := binaries(t)
	natsURL := testenv.NATSURL(t)
	var sk sink
	sinkSrv := httptest.NewServer(&sk)
	t.Cleanup(sinkSrv.Close)

	common := []string{
		"WAGATE_REDIS_URL=" + redisURL,
		"WAGATE_NATS_URL=" + natsURL,
		"WAGATE_META_APP_SECRET=" + shutdownSecret,
		"WAGATE_LOG_LEVEL=debug",
	}
	port := testenv.FreePort(t)
	start(t, filepath.Join(dir, "ingress"), "ingress", append(common, fmt.Sprintf("WAGATE_HTTP_ADDR=127.0.0.1:%d", port))...)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitReady(t, base+"/readyz")
	wport := testenv.FreePort(t)
	start(t, filepath.Join(dir, "worker"), "worker", append(common,
		"WAGATE_HANDLER=forward",
		"WAGATE_FORWARD_URL="+sinkSrv.URL,
		"WAGATE_WORKER_CONCURRENCY=4",
		"WAGATE_BACKOFF=100ms,250ms,500ms",
		fmt.Sprintf("WAGATE_WORKER_HTTP_ADDR=127.0.0.1:%d", wport))...)
	waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", wport))

	load := &shutdownLoad{url: base + ingest.Route(messages.ProviderCloud), limiter: rate.NewLimiter(100, 1), keys: map[string]bool{}}
	var (
		mu         sync.Mutex
		duplicates int
	)
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
				mu.Lock()
				duplicates++
				mu.Unlock()
			}
		}()
	}
	forwarded := func() int { return len(sk.snapshot()) }
	testenv.Eventually(t, 30*time.Second, func() bool { return forwarded() >= 100 }, "no traffic before the failover: %d forwards", forwarded())
	before := forwarded()
	failover()
	after := forwarded()
	testenv.Eventually(t, 60*time.Second, func() bool { return forwarded() >= after+200 }, "traffic did not resume after the failover: %d forwards", forwarded())
	close(stop)
	wg.Wait()

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
		for _, f := range sk.snapshot() {
			got[f.Event.Key] = true
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
	}, "forwarded %d events, want %d distinct keys", len(sk.snapshot()), want)

	seen := map[string]int{}
	for _, f := range sk.snapshot() {
		seen[f.Event.Key]++
		if f.IdempotencyKey != f.Event.Key {
			t.Errorf("forward of %s: Idempotency-Key %q, want the event key", f.Event.Key, f.IdempotencyKey)
		}
	}
	load.mu.Lock()
	for k := range load.keys {
		if seen[k] != 1 {
			t.Errorf("key %s: forwarded %d times, want exactly 1", k, seen[k])
		}
	}
	load.mu.Unlock()
	for k, n := range seen {
		if !load.keys[k] {
			t.Errorf("forward of key %s that no body held (%d times)", k, n)
		}
	}
	t.Logf("%d events forwarded once each (%d before the failover, %d during it); %d duplicate deliveries answered 200; %d attempts not answered 200 and retried",
		want, before, after-before, duplicates, failures)
}
