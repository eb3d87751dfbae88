package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wagate/wagate/messages"
)

// readCounter is a request body that counts the reads made of it.
type readCounter struct{ reads atomic.Int64 }

func (r *readCounter) Read(p []byte) (int, error) {
	r.reads.Add(1)
	return copy(p, `{"object":"whatsapp_business_account","entry":[]}`), nil
}

func (r *readCounter) Close() error { return nil }

// Every provider's Verifier tells from the headers alone that a request
// cannot be authentic (§8): a provider added later must too.
func TestEveryVerifierChecksHeaders(t *testing.T) {
	for _, p := range providers {
		v := p.verifier([][]byte{[]byte("some-secret")})
		hc, ok := v.(HeaderChecker)
		if !ok {
			t.Errorf("%s: its Verifier (%T) does not implement HeaderChecker", p.name, v)
			continue
		}
		if hc.CheckHeader(http.Header{}) {
			t.Errorf("%s: a request without any header passes CheckHeader", p.name)
		}
		signed := http.Header{}
		p.sign(signed, []byte(`{}`), "some-secret")
		if !hc.CheckHeader(signed) {
			t.Errorf("%s: a request signed as the provider signs fails CheckHeader", p.name)
		}
	}
}

// A request whose signature header is missing or malformed is answered 401
// before any byte of its body is read and before it reserves body memory:
// with every byte of BodyMemory held by bodies in flight it is still
// answered 401 at once, not 503 after waiting (G6, §8).
func TestRefusedBeforeBody(t *testing.T) {
	e := newEnv(t, gatewayConfig())
	if err := e.srv.bodies.Acquire(context.Background(), e.srv.cfg.BodyMemory); err != nil {
		t.Fatal(err)
	}
	defer e.srv.bodies.Release(e.srv.cfg.BodyMemory)

	garbage := strings.Repeat("z", 2*maxToken) // too long for a token, not hex
	for _, p := range e.srv.served {
		signed := http.Header{}
		p.sign(signed, []byte(`{}`), testSecretOf(p.name))
		malformed := http.Header{}
		for name := range signed {
			malformed.Set(name, garbage)
		}
		for name, h := range map[string]http.Header{"no header": {}, "malformed header": malformed} {
			body := &readCounter{}
			req := httptest.NewRequest(http.MethodPost, p.path, body)
			req.ContentLength = 3 << 20
			for k, vs := range h {
				req.Header[k] = vs
			}
			rec := httptest.NewRecorder()
			start := time.Now()
			e.srv.Handler().ServeHTTP(rec, req)
			if rec.Code != http.StatusUnauthorized {
				t.Errorf("%s, %s: got %d %s after %v, want 401", p.name, name, rec.Code, rec.Body, time.Since(start))
			}
			if n := body.reads.Load(); n != 0 {
				t.Errorf("%s, %s: body read %d times before the refusal, want 0", p.name, name, n)
			}
		}
	}
	if n := e.metric("wagate_ingest_body_memory_refusals_total"); n != 0 {
		t.Errorf("body memory refusals = %v, want 0: unsigned requests waited for body memory", n)
	}
}

// A body holding more events than MaxEvents is answered 413 naming the
// limit, before anything is claimed or stored; one at the limit is stored.
func TestMaxEvents(t *testing.T) {
	e := newEnv(t, Config{MaxEvents: 10})
	code, body := e.post(batchBody("over", 11), Sign(batchBody("over", 11), testSecret))
	var ans Answer
	_ = json.Unmarshal([]byte(body), &ans)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(ans.Error, "more than 10 events") || !strings.Contains(ans.Error, "limit of 10 events") {
		t.Fatalf("11 events over a limit of 10: got %d %s, want 413 naming the limit", code, body)
	}
	if n := e.store.claims.Load(); n != 0 {
		t.Errorf("%d claims for a refused body, want 0", n)
	}
	if got := e.stored(); len(got) != 0 {
		t.Errorf("%d events stored for a refused body, want 0", len(got))
	}
	e.postSigned(batchBody("at", 10), http.StatusOK)
	if got := e.stored(); len(got) != 10 {
		t.Errorf("%d events stored at the limit, want 10", len(got))
	}
}

// The default bound is well above every provider's documented maximum
// (Meta: 1,000 updates per notification).
func TestMaxEventsDefault(t *testing.T) {
	cfg, err := Config{AppSecrets: []string{"s"}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxEvents != DefaultMaxEvents || DefaultMaxEvents < 2*1000 {
		t.Errorf("MaxEvents default %d (DefaultMaxEvents %d), want at least twice Meta's 1,000", cfg.MaxEvents, DefaultMaxEvents)
	}
}

// A large batch is claimed in chunks of claimChunk keys, each a store call
// of its own, and stored in full.
func TestLargeBatchClaimedInChunks(t *testing.T) {
	e := newEnv(t, Config{})
	n := 2*claimChunk + 37
	e.postSigned(batchBody("chunks", n), http.StatusOK)
	if got, want := e.store.claims.Load(), int64(3); got != want {
		t.Errorf("%d claim calls for %d events, want %d (chunks of %d)", got, n, want, claimChunk)
	}
	if got := len(e.storedKeys()); got != n {
		t.Errorf("%d events stored, want %d", got, n)
	}
}

// A store that answers a ping but not a claim within StoreTimeout is slow,
// not down: the request is answered 503 (the provider retries), never
// published without dedupe under fail-open; nothing is stored or bypassed.
func TestSlowStoreIsNotBypassed(t *testing.T) {
	e := newEnv(t, Config{StoreTimeout: 200 * time.Millisecond})
	e.store.claimDelay = time.Second
	code, body := e.post(batchBody("slow", 3), Sign(batchBody("slow", 3), testSecret))
	if code != http.StatusServiceUnavailable {
		t.Fatalf("slow store: got %d %s, want 503", code, body)
	}
	if n := e.metric("wagate_ingest_events_total", "outcome", "bypassed"); n != 0 {
		t.Errorf("bypassed = %v under a slow healthy store, want 0", n)
	}
	if got := e.stored(); len(got) != 0 {
		t.Errorf("%d events stored, want 0", len(got))
	}
	// When it answers in time again, the retry is stored in full.
	e.store.claimDelay = 0
	e.postSigned(batchBody("slow", 3), http.StatusOK)
	if got := len(e.storedKeys()); got != 3 {
		t.Errorf("%d events stored after the retry, want 3", got)
	}
}

// Lines about refused requests and duplicates are sampled (at most
// LogSampleRate a second, with a burst as large); the metrics count every
// one (§8).
func TestRefusalAndDuplicateLinesSampled(t *testing.T) {
	const rate, refusals, dupes = 5, 400, 40
	e := newEnv(t, Config{LogSampleRate: rate})
	start := time.Now()
	for range refusals {
		rec := httptest.NewRecorder()
		e.srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, pathCloud, strings.NewReader("{}")))
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("unsigned POST: got %d, want 401", rec.Code)
		}
	}
	body := textBody("wamid.DUPES", "again")
	for range dupes + 1 {
		e.postSigned(body, http.StatusOK)
	}
	elapsed := time.Since(start)
	// What the limiter can let through in elapsed, for each kind.
	allowed := rate + int(elapsed.Seconds()*rate) + 1
	logs := e.logs.String()
	if n := strings.Count(logs, "signature header missing"); n > allowed || n == 0 {
		t.Errorf("%d refusal lines for %d refusals in %v, want 1..%d", n, refusals, elapsed, allowed)
	}
	if n := strings.Count(logs, `"msg":"ingest: duplicate"`); n > allowed || n == 0 {
		t.Errorf("%d duplicate lines for %d duplicates in %v, want 1..%d", n, dupes, elapsed, allowed)
	}
	if n := e.metric("wagate_ingest_requests_total", "route", pathCloud, "code", "401"); n != refusals {
		t.Errorf("401s counted %v, want %d", n, refusals)
	}
	if n := e.metric("wagate_ingest_events_total", "outcome", "duplicate"); n != dupes {
		t.Errorf("duplicates counted %v, want %d", n, dupes)
	}
}

// A claim that ran out of time is told apart from a store that failed,
// whichever way the deadline shows: the context's, or a socket deadline.
func TestTimedOut(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{context.DeadlineExceeded, true},
		{fmt.Errorf("claim: %w", context.DeadlineExceeded), true},
		{&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, true},
		{&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, false},
		{errors.New("ERR something"), false},
	} {
		if got := timedOut(c.err); got != c.want {
			t.Errorf("timedOut(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// The events of one body share its parts (Cloud API metadata and contacts, a
// gateway item's frame): a body whose shared part is large and whose items
// are many would make the product of the two in stored bytes. Such a body is
// answered 413 naming the limit, with nothing claimed or stored; a batch of
// ordinary items as large is stored.
func TestSharedPartsFanOut(t *testing.T) {
	const limit, maxEvents, n = 64 << 10, 500, 400
	e := newEnv(t, Config{BodyLimit: limit, MaxEvents: maxEvents, WASenderSecrets: []string{testWASenderSecret}})
	pad := strings.Repeat("p", 20<<10)
	items := func(item string) string {
		s := make([]string, n)
		for i := range s {
			s[i] = fmt.Sprintf(item, i)
		}
		return strings.Join(s, ",")
	}
	status := `{"id":"wamid.S%d","status":"sent","timestamp":"1750000000","recipient_id":"15550000001"}`
	value := func(md, contacts, statuses string) string {
		return `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":` +
			md + `,"contacts":` + contacts + `,"statuses":[` + statuses + `]}}]}]}`
	}
	for _, c := range []struct {
		name, provider, body string
	}{
		{"cloud metadata", messages.ProviderCloud, value(`{"display_phone_number":"1","phone_number_id":"2","pad":"`+pad+`"}`, `[]`, items(status))},
		{"cloud contact", messages.ProviderCloud, value(`{"display_phone_number":"1","phone_number_id":"2"}`,
			`[{"wa_id":"15550000001","profile":{"name":"`+pad+`"}}]`, items(status))},
		{"wasender frame", messages.ProviderWASender, `{"event":"messages.upsert","sessionId":"s","data":{"messages":[` +
			items(`{"key":{"id":"A%d","remoteJid":"15550000001@s.whatsapp.net","fromMe":false},"message":{"conversation":"hi"}}`) + `],"pad":"` + pad + `"}}`},
	} {
		if len(c.body) > limit {
			t.Fatalf("%s: body of %d bytes, over the body limit", c.name, len(c.body))
		}
		code, text := e.postTo(c.provider, []byte(c.body), testSecretOf(c.provider))
		var ans Answer
		_ = json.Unmarshal([]byte(text), &ans)
		if code != http.StatusRequestEntityTooLarge || !strings.Contains(ans.Error, fmt.Sprintf("limit of %d bytes", e.srv.eventBytes)) {
			t.Errorf("%s: %d-byte body of %d items: got %d %s, want 413 naming the limit of %d bytes", c.name, len(c.body), n, code, text, e.srv.eventBytes)
		}
	}
	if n := e.store.claims.Load(); n != 0 {
		t.Errorf("%d claims for refused bodies, want 0", n)
	}
	if got := e.stored(); len(got) != 0 {
		t.Errorf("%d events stored for refused bodies, want 0", len(got))
	}
	// As many ordinary items, in a body as large, are stored.
	fill := (limit*15/16 - len(batchBody("", maxEvents))) / maxEvents
	body := batchBody(strings.Repeat("t", fill), maxEvents)
	if len(body) < limit*3/4 || len(body) > limit {
		t.Fatalf("batch of %d bytes, want near the limit of %d", len(body), limit)
	}
	e.postSigned(body, http.StatusOK)
	if got := len(e.storedKeys()); got != maxEvents {
		t.Errorf("%d events stored, want %d", got, maxEvents)
	}
}

// The lines a request writes about its events are bounded whatever their
// number: a body of 2,000 items without an id (each with a fallback
// identity) writes a few lines about them and one line counting the rest;
// the metric counts every one.
func TestEventLinesBounded(t *testing.T) {
	e := newEnv(t, Config{})
	items := make([]string, 2000)
	for i := range items {
		items[i] = fmt.Sprintf(`{"status":"sent","timestamp":"%d","recipient_id":"15550000001"}`, 1750000000+i)
	}
	e.postSigned(cloudBody(nil, items), http.StatusOK)
	logs := e.logs.String()
	if n := strings.Count(logs, `"msg":"ingest: fallback identity"`); n > maxEventLines+1 {
		t.Errorf("%d fallback lines for one request, want at most %d", n, maxEventLines+1)
	}
	if !strings.Contains(logs, fmt.Sprintf(`"more_events":%d`, len(items)-maxEventLines)) {
		t.Errorf("no line counts the %d fallback events not written", len(items)-maxEventLines)
	}
	if n := e.metric("wagate_ingest_fallback_identities_total"); n != float64(len(items)) {
		t.Errorf("fallback identities counted %v, want %d", n, len(items))
	}
}
