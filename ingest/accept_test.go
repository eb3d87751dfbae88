package ingest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/testenv"
)

// G5: Redis down under fail-open: the event is published without a claim,
// answered 200 and counted as bypassed. When Redis is back empty, the retry
// is deduplicated by JetStream's duplicate window.
func TestRedisDownFailOpen(t *testing.T) {
	e := newEnv(t, Config{})
	body := textBody("wamid.failopen", "redis is down")
	ev := parse(t, body)[0]
	e.redis.Stop()

	e.postSigned(body, http.StatusOK)
	if keys := e.storedKeys(); len(keys) != 1 || keys[ev.Key] != 1 {
		t.Fatalf("stream holds %v, want %s once", keys, ev.Key)
	}
	if n := e.metric("wagate_ingest_events_total", "kind", "message", "outcome", "bypassed"); n != 1 {
		t.Fatalf("bypassed = %v, want 1", n)
	}

	e.redis.Start() // no persistence: every key is gone
	e.postSigned(body, http.StatusOK)
	if keys := e.storedKeys(); len(keys) != 1 || keys[ev.Key] != 1 {
		t.Fatalf("after the retry the stream holds %v, want %s once", keys, ev.Key)
	}
	if s := e.state(ev.Key); s != dedupe.Accepted {
		t.Fatalf("state %v, want accepted", s)
	}
}

// G5: Redis down under fail-closed: 503, nothing stored.
func TestRedisDownFailClosed(t *testing.T) {
	e := newEnv(t, Config{RedisPolicy: FailClosed})
	body := textBody("wamid.failclosed", "redis is down")
	e.redis.Stop()

	e.postSigned(body, http.StatusServiceUnavailable)
	if n := len(e.stored()); n != 0 {
		t.Fatalf("stream holds %d messages, want 0", n)
	}
	if n := e.metric("wagate_ingest_events_total", "kind", "message", "outcome", "rejected"); n != 1 {
		t.Fatalf("rejected = %v, want 1", n)
	}

	e.redis.Start()
	e.postSigned(body, http.StatusOK)
	if n := len(e.stored()); n != 1 {
		t.Fatalf("after the retry the stream holds %d messages, want 1", n)
	}
}

// G5, G1: NATS down: 503 and the claims are released, so that the retry,
// once NATS is back, is processed in full.
func TestNATSDown(t *testing.T) {
	e := newEnv(t, Config{})
	body := batchBody("natsdown", 3)
	evs := parse(t, body)
	e.nats.Shutdown()
	testenv.Eventually(t, wait, func() bool { return !e.nc.IsConnected() }, "NATS connection down")

	e.postSigned(body, http.StatusServiceUnavailable)
	for _, ev := range evs {
		if s := e.state(ev.Key); s != dedupe.Absent {
			t.Errorf("%s: state %v, want absent (claim released)", ev.Key, s)
		}
	}
	if n := e.metric("wagate_ingest_events_total", "outcome", "rejected"); n != 3 {
		t.Errorf("rejected = %v, want 3", n)
	}

	e.nats.Start()
	testenv.Eventually(t, wait, func() bool {
		code, _ := e.post(body, Sign(body, testSecret))
		return code == http.StatusOK
	}, "retry answered 200 once NATS is back")
	keys := e.storedKeys()
	for _, ev := range evs {
		if keys[ev.Key] != 1 {
			t.Errorf("%s stored %d times, want once", ev.Key, keys[ev.Key])
		}
		if s := e.state(ev.Key); s != dedupe.Accepted {
			t.Errorf("%s: state %v, want accepted", ev.Key, s)
		}
	}
}

// /readyz under FailClosed: 200 while Redis and JetStream answer; 503 naming
// Redis when it is stopped, then naming JetStream when NATS is down too.
func TestReadiness(t *testing.T) {
	e := newEnv(t, Config{RedisPolicy: FailClosed})
	ready := func(wantCode int) readiness {
		t.Helper()
		code, body := e.getAdmin(pathReady)
		var r readiness
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("readyz body %q: %v", body, err)
		}
		if code != wantCode {
			t.Fatalf("readyz: got %d %s, want %d", code, body, wantCode)
		}
		// It names the dependency, never its address or error text.
		for _, leak := range []string{"127.0.0.1", "localhost", "redis://", "nats://", "dial", "refused", e.redis.Addr()} {
			if strings.Contains(body, leak) {
				t.Errorf("readyz body %s holds %q", body, leak)
			}
		}
		return r
	}
	if r := ready(http.StatusOK); r.Store != "ok" || r.JetStream != "ok" {
		t.Fatalf("readyz %+v", r)
	}
	if code, _ := e.get(pathHealth); code != http.StatusOK {
		t.Fatalf("healthz: got %d", code)
	}

	e.redis.Stop()
	if r := ready(http.StatusServiceUnavailable); r.Store != stateUnavailable || r.JetStream != "ok" {
		t.Fatalf("readyz with Redis stopped: %+v, want the store failing only", r)
	}
	if code, _ := e.get(pathHealth); code != http.StatusOK {
		t.Fatalf("healthz with Redis stopped: got %d, want 200", code)
	}

	e.nats.Shutdown()
	testenv.Eventually(t, wait, func() bool { return !e.nc.IsConnected() }, "NATS connection down")
	if r := ready(http.StatusServiceUnavailable); r.Store != stateUnavailable || r.JetStream != stateUnavailable {
		t.Fatalf("readyz with both down: %+v", r)
	}
}

// /readyz under FailOpen (the default): a stopped Redis is reported but the
// ingress stays ready, since it still stores every event (G5); a webhook is
// answered 200. NATS down makes it unready.
func TestReadinessFailOpen(t *testing.T) {
	e := newEnv(t, Config{})
	e.redis.Stop()
	code, body := e.getAdmin(pathReady)
	var r readiness
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("readyz body %q: %v", body, err)
	}
	if code != http.StatusOK || r.Store == "ok" || r.JetStream != "ok" {
		t.Fatalf("readyz with Redis stopped under fail-open: %d %+v, want 200 naming the store", code, r)
	}
	e.postSigned(textBody("wamid.READY_FAILOPEN", "hi"), http.StatusOK)

	e.nats.Shutdown()
	testenv.Eventually(t, wait, func() bool { return !e.nc.IsConnected() }, "NATS connection down")
	if code, body := e.getAdmin(pathReady); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz with NATS down: %d %s, want 503", code, body)
	}
}

// The answer is written as encoding/json's Encoder writes it.
func TestAnswerJSON(t *testing.T) {
	for _, a := range []Answer{
		{},
		{Events: 1, Accepted: 1},
		{Events: 50, Accepted: 20, Duplicates: 30},
		{Events: 3, Accepted: 1, Error: "2 of 3 events not stored"},
		{Error: "body is not a <Cloud API> webhook & \"more\" \\ \u2028 \x01 é"},
	} {
		var want strings.Builder
		if err := json.NewEncoder(&want).Encode(a); err != nil {
			t.Fatal(err)
		}
		if got := string(a.appendJSON(nil)); got != want.String() {
			t.Errorf("%+v:\n got  %s\n want %s", a, got, want.String())
		}
	}
}
