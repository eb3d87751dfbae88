package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/ingest"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
)

// TestEndToEndTLSAndCredentials runs an ingress and a worker against a NATS
// that takes only TLS with client certificates from users of an
// operator-signed account, and a Redis that takes only TLS with client
// certificates, configured by the WAGATE_NATS_* and WAGATE_REDIS_TLS_*
// variables alone: every event of every body, each delivered twice, is
// forwarded exactly once.
func TestEndToEndTLSAndCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped in -short mode")
	}
	dir := binaries(t)
	f := testenv.MakeTLSFiles(t)
	srv := testenv.StartNATSSecure(t, f)
	natsURL := "tls://" + strings.TrimPrefix(srv.ClientURL(), "nats://")
	_, redisURL := testenv.StartRedisTLS(t, f)
	var sk sink
	sinkSrv := httptest.NewServer(&sk)
	t.Cleanup(sinkSrv.Close)

	common := []string{
		"WAGATE_REDIS_URL=" + redisURL,
		"WAGATE_REDIS_TLS_CA=" + f.CA,
		"WAGATE_REDIS_TLS_CERT=" + f.ClientCert,
		"WAGATE_REDIS_TLS_KEY=" + f.ClientKey,
		"WAGATE_NATS_URL=" + natsURL,
		"WAGATE_NATS_CREDS=" + srv.Creds,
		"WAGATE_NATS_TLS_CA=" + f.CA,
		"WAGATE_NATS_TLS_CERT=" + f.ClientCert,
		"WAGATE_NATS_TLS_KEY=" + f.ClientKey,
		"WAGATE_META_APP_SECRET=" + shutdownSecret,
	}
	base := startIngress(t, dir, common)
	wport := testenv.FreePort(t)
	start(t, filepath.Join(dir, "worker"), "worker", append(common,
		"WAGATE_HANDLER=forward",
		"WAGATE_FORWARD_URL="+sinkSrv.URL,
		fmt.Sprintf("WAGATE_WORKER_HTTP_ADDR=127.0.0.1:%d", wport))...)
	waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", wport))

	load := &shutdownLoad{}
	want := map[string]bool{}
	for range 10 {
		body, keys := load.body(t)
		for _, k := range keys {
			want[k] = true
		}
		for range 2 {
			if code, err := postCloud(base+ingest.Route(messages.ProviderCloud), body); err != nil || code != http.StatusOK {
				t.Fatalf("POST: code %d err %v, want 200", code, err)
			}
		}
	}
	nc, err := nats.Connect(natsURL, nats.UserCredentials(srv.Creds), nats.RootCAs(f.CA), nats.ClientCert(f.ClientCert, f.ClientKey))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	testenv.Eventually(t, 30*time.Second, func() bool {
		if len(sk.snapshot()) < len(want) {
			return false
		}
		cons, err := js.Consumer(ctx, "WAGATE_EVENTS", "wagate-workers")
		if err != nil {
			return false
		}
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, "forwarded %d events, want %d, and the consumer idle", len(sk.snapshot()), len(want))
	seen := map[string]int{}
	for _, fw := range sk.snapshot() {
		seen[fw.Event.Key]++
	}
	for k := range want {
		if seen[k] != 1 {
			t.Errorf("key %s: forwarded %d times, want 1", k, seen[k])
		}
	}
	if len(seen) != len(want) {
		t.Errorf("%d distinct keys forwarded, want %d", len(seen), len(want))
	}
}
