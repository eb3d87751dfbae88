package ingest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/redact"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
)

// G1, G2: one body posted once is stored once, with the wire headers, and
// its key is accepted.
func TestPostStoresEvent(t *testing.T) {
	e := newEnv(t, Config{})
	body := readTestdata(t, "meta_msg_text_reply_context.json")
	ev := parse(t, body)[0]

	e.postSigned(body, http.StatusOK)

	got := e.stored()
	if len(got) != 1 {
		t.Fatalf("stream holds %d messages, want 1", len(got))
	}
	m := got[0]
	if m.ev.Key != ev.Key || m.raw.Subject != messages.Subject(ev) {
		t.Errorf("stored %s on %s, want %s on %s", m.ev.Key, m.raw.Subject, ev.Key, messages.Subject(ev))
	}
	for h, want := range map[string]string{
		jetstream.MsgIDHeader:          ev.Key,
		messages.HeaderProvider:        messages.ProviderCloud,
		messages.HeaderKind:            string(messages.KindMessage),
		jetstream.ExpectedStreamHeader: e.srv.cfg.Streams.Events,
		messages.HeaderConversation:    messages.ConversationToken(ev),
	} {
		if got := m.raw.Header.Get(h); got != want {
			t.Errorf("header %s = %q, want %q", h, got, want)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, m.raw.Header.Get(messages.HeaderReceivedAt)); err != nil {
		t.Errorf("header %s: %v", messages.HeaderReceivedAt, err)
	}
	if s := e.state(ev.Key); s != dedupe.Accepted {
		t.Errorf("state %v, want accepted", s)
	}
	if n := e.metric("wagate_ingest_events_total", "kind", "message", "outcome", "accepted"); n != 1 {
		t.Errorf("accepted = %v, want 1", n)
	}

	// A sequential retry is a duplicate: 200, nothing published.
	e.postSigned(body, http.StatusOK)
	if n := len(e.stored()); n != 1 {
		t.Fatalf("after the retry the stream holds %d messages, want 1", n)
	}
	if n := e.metric("wagate_ingest_events_total", "kind", "message", "outcome", "duplicate"); n != 1 {
		t.Errorf("duplicate = %v, want 1", n)
	}
	if n := e.metric("wagate_ingest_requests_total", "route", pathCloud, "code", "200"); n != 2 {
		t.Errorf("requests{%s,200} = %v, want 2", pathCloud, n)
	}
	if n := e.metric("wagate_ingest_ack_duration_seconds", "code", "200"); n != 2 {
		t.Errorf("ack durations{200} = %v, want 2", n)
	}
	// A refused request is counted under its own code.
	e.post(body, "sha256=00")
	if n := e.metric("wagate_ingest_ack_duration_seconds", "code", "401"); n != 1 {
		t.Errorf("ack durations{401} = %v, want 1", n)
	}
	if n := e.metric("wagate_ingest_requests_total", "route", pathCloud, "code", "401"); n != 1 {
		t.Errorf("requests{%s,401} = %v, want 1", pathCloud, n)
	}
}

// Case 1 (G2): the same text message posted twice at the same moment: both
// answered 200, the stream holds one message. Repeated over several bodies.
func TestConcurrentDuplicates(t *testing.T) {
	e := newEnv(t, Config{})
	const bodies, copies = 10, 2
	for i := range bodies {
		body := textBody(fmt.Sprintf("wamid.concurrent.%d", i), "hello")
		sig := Sign(body, testSecret)
		start := make(chan struct{})
		codes := make([]int, copies)
		var wg sync.WaitGroup
		for c := range copies {
			wg.Go(func() {
				<-start
				codes[c], _ = e.post(body, sig)
			})
		}
		close(start)
		wg.Wait()
		for c, code := range codes {
			if code != http.StatusOK {
				t.Fatalf("body %d copy %d: got %d, want 200", i, c, code)
			}
		}
	}
	keys := e.storedKeys()
	if len(keys) != bodies {
		t.Fatalf("stream holds %d distinct keys, want %d", len(keys), bodies)
	}
	for k, n := range keys {
		if n != 1 {
			t.Errorf("key %s stored %d times, want once", k, n)
		}
	}
}

// failKind returns a publisher wrapper that fails the publish of every event
// of kind while *on is set.
func failKind(kind messages.Kind, on *atomic.Bool) Option {
	return WithPublisher(func(next PublishFunc) PublishFunc {
		return func(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
			if on.Load() && msg.Header.Get(messages.HeaderKind) == string(kind) {
				return nil, errors.New("injected publish failure")
			}
			return next(ctx, msg)
		}
	})
}

// Case 4 (G1): a body holding a read status and a message; the status's
// publish fails: 503, the stream holds only the message, the status's claim
// is released. The retry of the same body: 200, each event stored once.
func TestPartialPublishFailure(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	e := newEnv(t, Config{}, failKind(messages.KindStatus, &failing))
	body := readTestdata(t, "status_and_message.json")
	evs := parse(t, body)
	var status, msg messages.Event
	for _, ev := range evs {
		switch ev.Kind {
		case messages.KindStatus:
			status = ev
		case messages.KindMessage:
			msg = ev
		}
	}
	if len(evs) != 2 || status.Key == "" || msg.Key == "" {
		t.Fatalf("body parses to %d events, want a status and a message", len(evs))
	}

	e.postSigned(body, http.StatusServiceUnavailable)
	keys := e.storedKeys()
	if len(keys) != 1 || keys[msg.Key] != 1 {
		t.Fatalf("after the failure the stream holds %v, want only the message %s", keys, msg.Key)
	}
	if s := e.state(status.Key); s != dedupe.Absent {
		t.Errorf("status claim: state %v, want absent (released)", s)
	}
	if s := e.state(msg.Key); s != dedupe.Accepted {
		t.Errorf("message claim: state %v, want accepted", s)
	}
	if n := e.metric("wagate_ingest_events_total", "kind", "status", "outcome", "rejected"); n != 1 {
		t.Errorf("rejected status = %v, want 1", n)
	}

	failing.Store(false)
	e.postSigned(body, http.StatusOK)
	keys = e.storedKeys()
	if len(keys) != 2 || keys[msg.Key] != 1 || keys[status.Key] != 1 {
		t.Fatalf("after the retry the stream holds %v, want each of %s and %s once", keys, msg.Key, status.Key)
	}
	if n := e.metric("wagate_ingest_events_total", "kind", "message", "outcome", "duplicate"); n != 1 {
		t.Errorf("duplicate message = %v, want 1", n)
	}
	if n := e.metric("wagate_ingest_events_total", "kind", "status", "outcome", "accepted"); n != 1 {
		t.Errorf("accepted status = %v, want 1", n)
	}
}

// A pending claim left by an ingress that died between its claim and its
// publish (or after its publish, before its accept): the retry publishes
// again with the same Nats-Msg-Id, answers 200, and the stream holds the
// event once.
func TestPendingClaimIsRepublished(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()

	// Died before publishing.
	body1 := textBody("wamid.pending.1", "one")
	ev1 := parse(t, body1)[0]
	if _, err := e.store.Claim(ctx, "dead-ingress", []string{ev1.Key}); err != nil {
		t.Fatal(err)
	}
	e.postSigned(body1, http.StatusOK)

	// Died after publishing, before accepting.
	body2 := textBody("wamid.pending.2", "two")
	ev2 := parse(t, body2)[0]
	if _, err := e.store.Claim(ctx, "dead-ingress", []string{ev2.Key}); err != nil {
		t.Fatal(err)
	}
	msg, err := e.srv.message(&ev2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	e.postSigned(body2, http.StatusOK)

	keys := e.storedKeys()
	if len(keys) != 2 || keys[ev1.Key] != 1 || keys[ev2.Key] != 1 {
		t.Fatalf("stream holds %v, want %s and %s once each", keys, ev1.Key, ev2.Key)
	}
	for _, k := range []string{ev1.Key, ev2.Key} {
		if s := e.state(k); s != dedupe.Accepted {
			t.Errorf("%s: state %v, want accepted", k, s)
		}
	}
	if n := e.metric("wagate_ingest_events_total", "kind", "message", "outcome", "republished"); n != 2 {
		t.Errorf("republished = %v, want 2", n)
	}
}

// Case 7 (§8): escapes are signed and stored as received. One byte changed,
// or a signature over re-serialised JSON: 401, nothing claimed or stored.
func TestRawBytesAndSignature(t *testing.T) {
	e := newEnv(t, Config{})
	body := readTestdata(t, "text_escapes.json")
	for _, esc := range []string{`\u00e9`, `\ud83d\ude2e`, `https:\/\/`} {
		if !bytes.Contains(body, []byte(esc)) {
			t.Fatalf("test body lacks %s", esc)
		}
	}
	start := bytes.Index(body, []byte(`{"from": "15550000001"`))
	end := bytes.Index(body[start:], []byte("}}\n")) + 2
	rawItem := body[start : start+end]

	// One byte changed.
	tampered := bytes.Clone(body)
	tampered[bytes.Index(tampered, []byte("caf"))] = 'C'
	if code, _ := e.post(tampered, Sign(body, testSecret)); code != http.StatusUnauthorized {
		t.Fatalf("one byte changed: got %d, want 401", code)
	}
	// Signed over json.Unmarshal + json.Marshal of the body.
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	reser, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := e.post(body, Sign(reser, testSecret)); code != http.StatusUnauthorized {
		t.Fatalf("signature over re-serialised JSON: got %d, want 401", code)
	}
	if n := e.store.claims.Load(); n != 0 {
		t.Fatalf("%d claims after refused bodies, want 0", n)
	}
	if n := len(e.stored()); n != 0 {
		t.Fatalf("stream holds %d messages after refused bodies, want 0", n)
	}
	ev := parse(t, body)[0]
	if s := e.state(ev.Key); s != dedupe.Absent {
		t.Fatalf("state %v after refused bodies, want absent", s)
	}

	e.postSigned(body, http.StatusOK)
	got := e.stored()
	if len(got) != 1 {
		t.Fatalf("stream holds %d messages, want 1", len(got))
	}
	if !bytes.Equal(got[0].ev.Item, rawItem) {
		t.Errorf("stored item\n%s\nwant the raw bytes\n%s", got[0].ev.Item, rawItem)
	}
	if !bytes.Contains(got[0].raw.Data, rawItem) {
		t.Errorf("stream payload does not hold the raw item bytes")
	}
	var item struct {
		Text struct {
			Body string `json:"body"`
		} `json:"text"`
	}
	if err := json.Unmarshal(got[0].ev.Item, &item); err != nil {
		t.Fatal(err)
	}
	if want := "café 😮 https://example.com/menu"; item.Text.Body != want {
		t.Errorf("item text %q, want %q", item.Text.Body, want)
	}
}

// Case 8 (G6): signed bodies that are not webhooks: 400; an empty entry
// array: 200 with no event; an unsupported message: 200 with one event.
// Each of them unsigned or wrongly signed: 401.
func TestBadInput(t *testing.T) {
	e := newEnv(t, Config{})
	unsupported := readTestdata(t, "meta_msg_unsupported_with_errors.json")
	cases := []struct {
		name   string
		body   []byte
		code   int
		events int
	}{
		{"empty", []byte{}, http.StatusBadRequest, 0},
		{"empty object", []byte(`{}`), http.StatusBadRequest, 0},
		{"not json", []byte(`not json`), http.StatusBadRequest, 0},
		{"no entry", []byte(`{"object":"whatsapp_business_account","entry":[]}`), http.StatusOK, 0},
		{"unsupported 131051", unsupported, http.StatusOK, 1},
	}
	stored := 0
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			claims := e.store.claims.Load()
			for _, bad := range []struct{ name, sig string }{
				{"unsigned", ""},
				{"wrong secret", Sign(c.body, "another-secret")},
				{"malformed", "sha256=zz"},
				{"no prefix", strings.TrimPrefix(Sign(c.body, testSecret), "sha256=")},
				{"sha1", "sha1=" + strings.TrimPrefix(Sign(c.body, testSecret), "sha256=")[:40]},
			} {
				if code, _ := e.post(c.body, bad.sig); code != http.StatusUnauthorized {
					t.Errorf("%s: got %d, want 401", bad.name, code)
				}
			}
			if n := e.store.claims.Load(); n != claims {
				t.Errorf("%d claims by refused bodies, want 0", n-claims)
			}
			if code, text := e.post(c.body, Sign(c.body, testSecret)); code != c.code {
				t.Fatalf("signed: got %d %q, want %d", code, text, c.code)
			}
			stored += c.events
			if n := len(e.stored()); n != stored {
				t.Fatalf("stream holds %d messages, want %d", n, stored)
			}
		})
	}
	got := e.stored()
	if len(got) != 1 || got[0].ev.Type != "unsupported" || len(got[0].ev.Errors) != 1 || got[0].ev.Errors[0].Code != 131051 {
		t.Fatalf("stored %+v, want one unsupported message with error 131051", got)
	}
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// paddedBody is a signed-able envelope of exactly size bytes.
func paddedBody(size int) []byte {
	const head, tail = `{"object":"whatsapp_business_account","entry":[],"pad":"`, `"}`
	b := make([]byte, 0, size)
	b = append(b, head...)
	b = append(b, bytes.Repeat([]byte("a"), size-len(head)-len(tail))...)
	return append(b, tail...)
}

// Case 9 (G6): a 5 MiB chunked body: 413 after reading at most limit+1
// bytes, nothing claimed; a Content-Length over the limit: 413, nothing read.
func TestBodyLimit(t *testing.T) {
	e := newEnv(t, Config{})
	body := paddedBody(5 << 20)
	sig := Sign(body, testSecret)

	t.Run("chunked", func(t *testing.T) {
		cr := &countingReader{r: bytes.NewReader(body)}
		req := httptest.NewRequest(http.MethodPost, pathCloud, cr)
		req.ContentLength = -1
		req.TransferEncoding = []string{"chunked"}
		req.Header.Set(HeaderSignature, sig)
		rec := httptest.NewRecorder()
		e.srv.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("got %d, want 413", rec.Code)
		}
		if n := cr.n.Load(); n > DefaultBodyLimit+1 {
			t.Fatalf("read %d bytes, want at most %d", n, DefaultBodyLimit+1)
		}
	})
	t.Run("content-length", func(t *testing.T) {
		cr := &countingReader{r: bytes.NewReader(body)}
		req := httptest.NewRequest(http.MethodPost, pathCloud, cr)
		req.ContentLength = int64(len(body))
		req.Header.Set(HeaderSignature, sig)
		rec := httptest.NewRecorder()
		e.srv.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("got %d, want 413", rec.Code)
		}
		if n := cr.n.Load(); n != 0 {
			t.Fatalf("read %d bytes, want 0", n)
		}
	})
	t.Run("over http", func(t *testing.T) {
		if code, _ := e.post(body, sig); code != http.StatusRequestEntityTooLarge {
			t.Fatalf("got %d, want 413", code)
		}
	})
	if n := e.store.claims.Load(); n != 0 {
		t.Fatalf("%d claims, want 0", n)
	}
}

// The signature can only be checked once the body is read, so anyone can
// make the ingress hold a body: without a bound, N connections that each
// announce BodyLimit bytes and send them slowly hold N × BodyLimit of memory
// (200 of them: 800 MB). Config.BodyMemory bounds the bodies held at once;
// a request over it is answered 503 without its body being read, and the
// ingress serves again once memory is free.
func TestBodyMemoryIsBounded(t *testing.T) {
	const limit = 1 << 20
	e := newEnv(t, Config{BodyLimit: limit, BodyMemory: 2 * limit})
	addr := strings.TrimPrefix(e.http.URL, "http://")
	const slow = 8
	var conns []net.Conn
	for range slow {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Hub-Signature-256: sha256=%064d\r\nContent-Length: %d\r\n\r\n{", pathCloud, 0, limit)
	}
	refused := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(4 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil && resp.StatusCode == http.StatusServiceUnavailable {
			refused++
		}
		_ = c.Close()
	}
	if refused < slow-2 {
		t.Errorf("%d of %d requests announcing %d bytes each were refused with a memory bound of %d bytes, want at least %d",
			refused, slow, limit, 2*limit, slow-2)
	}
	// Memory is given back: a normal request goes through.
	testenv.Eventually(t, wait, func() bool {
		body := textBody("wamid.after-flood", "hello")
		code, _ := e.post(body, Sign(body, testSecret))
		return code == http.StatusOK
	}, "the ingress did not serve again after the slow requests went away")
}

// The limit is inclusive: a body of exactly BodyLimit bytes is read, one
// byte more is refused.
func TestBodyLimitBoundary(t *testing.T) {
	const limit = 4096
	e := newEnv(t, Config{BodyLimit: limit})
	body := paddedBody(limit)
	e.postSigned(body, http.StatusOK)
	over := paddedBody(limit + 1)
	e.postSigned(over, http.StatusRequestEntityTooLarge)
	cr := &countingReader{r: bytes.NewReader(over)}
	req := httptest.NewRequest(http.MethodPost, pathCloud, cr)
	req.ContentLength = -1
	req.Header.Set(HeaderSignature, Sign(over, testSecret))
	rec := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge || cr.n.Load() != limit+1 {
		t.Fatalf("got %d after reading %d bytes, want 413 after %d", rec.Code, cr.n.Load(), limit+1)
	}
}

// §8: a body signed with the second of two App Secrets is accepted.
func TestSecretRotation(t *testing.T) {
	e := newEnv(t, Config{AppSecrets: []string{"old-secret", "new-secret"}})
	body := textBody("wamid.rotation", "rotated")
	if code, _ := e.post(body, Sign(body, "new-secret")); code != http.StatusOK {
		t.Fatalf("second secret: got %d, want 200", code)
	}
	other := textBody("wamid.rotation.2", "rotated")
	if code, _ := e.post(other, Sign(other, "old-secret")); code != http.StatusOK {
		t.Fatalf("first secret: got %d, want 200", code)
	}
	if code, _ := e.post(other, Sign(other, "retired-secret")); code != http.StatusUnauthorized {
		t.Fatalf("unknown secret: got %d, want 401", code)
	}
	if n := len(e.stored()); n != 2 {
		t.Fatalf("stream holds %d messages, want 2", n)
	}
}

// Insecure with no secret: unsigned bodies are accepted.
func TestInsecure(t *testing.T) {
	e := newEnv(t, Config{Insecure: true})
	if code, _ := e.post(textBody("wamid.insecure", "hi"), ""); code != http.StatusOK {
		t.Fatalf("got %d, want 200", code)
	}
	if n := len(e.stored()); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}
}

// Case 12 (§3): an event whose identity is a fallback is stored and counted.
func TestFallbackIdentityCounted(t *testing.T) {
	e := newEnv(t, Config{})
	body := readTestdata(t, "message_without_id.json")
	evs := parse(t, body)
	if len(evs) != 1 || !evs[0].Fallback {
		t.Fatalf("test body parses to %+v, want one event with a fallback identity", evs)
	}
	e.postSigned(body, http.StatusOK)
	if n := e.metric("wagate_ingest_fallback_identities_total", "kind", "message"); n != 1 {
		t.Fatalf("fallback identities = %v, want 1", n)
	}
	if keys := e.storedKeys(); keys[evs[0].Key] != 1 {
		t.Fatalf("stream holds %v, want %s once", keys, evs[0].Key)
	}
}

// §2: a 50-event batch is claimed in one store call, and stored whole.
func TestBatchClaimsOnce(t *testing.T) {
	e := newEnv(t, Config{})
	body := batchBody("batch", 50)
	e.postSigned(body, http.StatusOK)
	if n := e.store.claims.Load(); n != 1 {
		t.Fatalf("%d store claim calls, want 1", n)
	}
	if n := e.store.keys.Load(); n != 50 {
		t.Fatalf("%d keys claimed, want 50", n)
	}
	keys := e.storedKeys()
	if len(keys) != 50 {
		t.Fatalf("stream holds %d keys, want 50", len(keys))
	}
	for _, ev := range parse(t, body) {
		if keys[ev.Key] != 1 {
			t.Errorf("%s stored %d times", ev.Key, keys[ev.Key])
		}
		if s := e.state(ev.Key); s != dedupe.Accepted {
			t.Errorf("%s: state %v, want accepted", ev.Key, s)
		}
	}
}

// An item repeated in one body is claimed and published once, in a small
// body (keys compared one by one) and a large one (keys in a map).
func TestRepeatedItemInOneBody(t *testing.T) {
	for _, distinct := range []int{1, 11} {
		t.Run(fmt.Sprintf("distinct=%d", distinct), func(t *testing.T) {
			e := newEnv(t, Config{})
			items := []string{textItem("wamid.twice", "twice")}
			for i := range distinct - 1 {
				items = append(items, textItem(fmt.Sprintf("wamid.once.%d", i), "once"))
			}
			items = append(items, items[0])
			e.postSigned(cloudBody(items, nil), http.StatusOK)
			if n := e.store.keys.Load(); n != int64(distinct) {
				t.Fatalf("%d keys claimed, want %d", n, distinct)
			}
			if n := len(e.stored()); n != distinct {
				t.Fatalf("stream holds %d messages, want %d", n, distinct)
			}
			if n := e.metric("wagate_ingest_events_total", "outcome", "duplicate"); n != 1 {
				t.Fatalf("duplicate = %v, want 1", n)
			}
		})
	}
}

// §8: logs carry the key and never the secret, the signature, the body's
// text or an unmasked phone number.
func TestLogsMaskAndOmit(t *testing.T) {
	var failing atomic.Bool
	e := newEnv(t, Config{}, failKind(messages.KindMessage, &failing))
	body := textBody("wamid.logs", "a private message text")
	ev := parse(t, body)[0]
	sig := Sign(body, testSecret)
	failing.Store(true)
	e.postSigned(body, http.StatusServiceUnavailable)
	failing.Store(false)
	e.postSigned(body, http.StatusOK)
	e.postSigned(body, http.StatusOK) // duplicate
	_, _ = e.post(body, Sign(body, "wrong"))

	logs := e.logs.String()
	for _, secret := range []string{testSecret, sig, "a private message text", testUser, ev.ID, ev.Identity} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs hold %q", secret)
		}
	}
	lines := 0
	for line := range strings.SplitSeq(strings.TrimSpace(logs), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %s", line)
		}
		if _, about := rec["kind"]; about {
			lines++
			if rec["key"] != ev.Key {
				t.Errorf("log line about an event without its key: %s", line)
			}
			if from, ok := rec["from"].(string); ok && from != redact.Phone(testUser) {
				t.Errorf("from logged as %q", from)
			}
		}
	}
	if lines < 3 {
		t.Errorf("%d log lines about the event, want at least 3 (rejected, stored, duplicate)", lines)
	}
}

// The answer to a request does not depend on the provider staying: a
// request whose client hangs up still releases or accepts its claims.
func TestClientGoneClaimsSettle(t *testing.T) {
	entered := make(chan struct{}, 1)
	proceed := make(chan struct{})
	e := newEnv(t, Config{}, WithPublisher(func(next PublishFunc) PublishFunc {
		return func(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
			entered <- struct{}{}
			<-proceed
			return next(ctx, msg)
		}
	}))
	body := textBody("wamid.gone", "bye")
	ev := parse(t, body)[0]
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.http.URL+pathCloud, bytes.NewReader(body))
	req.Header.Set(HeaderSignature, Sign(body, testSecret))
	done := make(chan error, 1)
	go func() {
		resp, err := e.http.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-entered
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the request was answered though the client hung up")
	}
	close(proceed)
	testenv.Eventually(t, wait, func() bool { return e.state(ev.Key) == dedupe.Accepted }, "claim accepted after the client hung up")
	if n := len(e.stored()); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}
}

// G6: a publisher that panics fails its event (503, claim released); the
// process goes on.
func TestPublisherPanic(t *testing.T) {
	var panicking atomic.Bool
	panicking.Store(true)
	e := newEnv(t, Config{}, WithPublisher(func(next PublishFunc) PublishFunc {
		return func(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
			if panicking.Load() {
				panic("injected publisher panic")
			}
			return next(ctx, msg)
		}
	}))
	body := textBody("wamid.panic", "panic")
	ev := parse(t, body)[0]
	e.postSigned(body, http.StatusServiceUnavailable)
	if s := e.state(ev.Key); s != dedupe.Absent {
		t.Fatalf("state %v, want absent (released)", s)
	}
	panicking.Store(false)
	e.postSigned(body, http.StatusOK)
	if n := len(e.stored()); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}
}

// The answer's body says what became of the events: accepted on the first
// delivery, duplicates on the next; the error on a refusal.
func TestAnswerCounts(t *testing.T) {
	e := newEnv(t, Config{})
	body := cloudBody([]string{textItem("wamid.ANSWER1", "a"), textItem("wamid.ANSWER2", "b")}, nil)
	for i, want := range []Answer{
		{Events: 2, Accepted: 2, Duplicates: 0},
		{Events: 2, Accepted: 0, Duplicates: 2},
	} {
		code, text := e.post(body, Sign(body, testSecret))
		var got Answer
		if err := json.Unmarshal([]byte(text), &got); err != nil || code != http.StatusOK || got != want {
			t.Errorf("delivery %d: %d %s (%v), want 200 %+v", i+1, code, text, err, want)
		}
	}
	code, text := e.post(body, "sha256=00")
	var got Answer
	if err := json.Unmarshal([]byte(text), &got); err != nil || code != http.StatusUnauthorized || got.Error != "invalid signature" {
		t.Errorf("unsigned: %d %s (%v), want 401 with error \"invalid signature\"", code, text, err)
	}
}

// G4: the answer waits for the claim and the publish only. The accepted mark
// is written after it: with Accept held, the POST is still answered 200 (the
// event stored, the key pending), and the mark lands once Accept runs.
func TestAnswerDoesNotWaitForAccept(t *testing.T) {
	e := newEnv(t, Config{})
	gate := make(chan struct{})
	e.store.acceptGate = gate
	body := textBody("wamid.NO_WAIT_ACCEPT", "hi")
	ev := parse(t, body)[0]
	// Not e.post: it waits for the marks, which the gate holds.
	post := func() (int, Answer) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, e.http.URL+pathCloud, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(HeaderSignature, Sign(body, testSecret))
		resp, err := e.http.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ans Answer
		if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, ans
	}
	if code, ans := post(); code != http.StatusOK || ans != (Answer{Events: 1, Accepted: 1}) {
		t.Fatalf("first delivery: %d %+v, want 200 with 1 accepted", code, ans)
	}
	if n := len(e.stored()); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if r, err := e.store.Lookup(ctx, ev.Key); err != nil || r.State != dedupe.Pending {
		t.Fatalf("while Accept is held: state %v err %v, want pending", r.State, err)
	}
	// A retry now sees the pending claim, publishes again, which JetStream
	// drops as a duplicate, and is answered 200 with the event a duplicate.
	if code, ans := post(); code != http.StatusOK || ans != (Answer{Events: 1, Duplicates: 1}) {
		t.Fatalf("retry while pending: %d %+v, want 200 with 1 duplicate", code, ans)
	}
	if n := len(e.stored()); n != 1 {
		t.Fatalf("after the retry the stream holds %d messages, want 1", n)
	}
	close(gate)
	if s := e.state(ev.Key); s != dedupe.Accepted {
		t.Fatalf("after Accept ran: state %v, want accepted", s)
	}
}
