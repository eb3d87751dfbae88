package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/messages"
)

// Secrets of the gateway providers in the tests.
const (
	testWASenderSecret = "wasender-webhook-secret-1c4e"
	testWAHAKey        = "waha-hmac-key-77d0"
	testEvolutionToken = "evolution-token-3a9f"
)

// gatewayConfig serves every provider, each with its test secret.
func gatewayConfig() Config {
	return Config{
		AppSecrets:      []string{testSecret},
		WASenderSecrets: []string{testWASenderSecret},
		WAHAKeys:        []string{testWAHAKey},
		EvolutionTokens: []string{testEvolutionToken},
	}
}

// testSecretOf is the test secret of provider.
func testSecretOf(provider string) string {
	switch provider {
	case messages.ProviderWASender:
		return testWASenderSecret
	case messages.ProviderWAHA:
		return testWAHAKey
	case messages.ProviderEvolution:
		return testEvolutionToken
	}
	return testSecret
}

// postTo posts body to provider's route, signed with secret (unsigned when
// secret is empty), and returns the status code and the answer's body.
func (e *env) postTo(provider string, body []byte, secret string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.http.URL+Route(provider), bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		if err := SignRequest(req.Header, provider, body, secret); err != nil {
			e.t.Fatal(err)
		}
	}
	return e.do(req)
}

// answer posts body signed with provider's test secret and decodes the
// answer, failing the test unless its code is want.
func (e *env) answer(provider string, body []byte, want int) Answer {
	e.t.Helper()
	code, text := e.postTo(provider, body, testSecretOf(provider))
	var ans Answer
	if err := json.Unmarshal([]byte(text), &ans); err != nil || code != want {
		e.t.Fatalf("POST %s: got %d %q (%v), want %d", Route(provider), code, text, err, want)
	}
	return ans
}

// gatewayFixtures returns the bodies of messages/testdata whose names start
// with prefix, by name.
func gatewayFixtures(t testing.TB, prefix string) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "messages", "testdata", prefix+"*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no %s fixtures: %v", prefix, err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}

// fixture returns the body of messages/testdata/name.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "messages", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRegistry(t *testing.T) {
	want := map[string]string{
		messages.ProviderCloud:     "/webhooks/whatsapp",
		messages.ProviderWASender:  "/webhooks/wasender",
		messages.ProviderWAHA:      "/webhooks/waha",
		messages.ProviderEvolution: "/webhooks/evolution",
	}
	names := Providers()
	if len(names) != len(want) {
		t.Fatalf("Providers() = %v", names)
	}
	for _, name := range names {
		if Route(name) != want[name] {
			t.Errorf("Route(%q) = %q, want %q", name, Route(name), want[name])
		}
		if _, ok := messages.Parser(name); !ok {
			t.Errorf("%s: no parser in messages", name)
		}
		h := http.Header{}
		if err := SignRequest(h, name, []byte(`{}`), "k"); err != nil || len(h) == 0 {
			t.Errorf("SignRequest(%s): %v, headers %v", name, err, h)
		}
	}
	if Route("telegram") != "" || SignRequest(http.Header{}, "telegram", nil, "k") == nil {
		t.Error("unknown provider: a route or no error")
	}
}

// §8: a gateway provider with no secret is not served (404); with only a
// gateway's secret the server builds and the other routes are 404; an empty
// secret is an error; Insecure serves every provider unsigned.
func TestProviderConfiguration(t *testing.T) {
	e := newEnv(t, Config{})
	for _, c := range []struct {
		name string
		cfg  Config
		want error
	}{
		{"empty WASender secret", Config{AppSecrets: []string{"a"}, WASenderSecrets: []string{""}}, nil},
		{"empty WAHA key", Config{WAHAKeys: []string{"k", ""}}, nil},
		{"empty Evolution API token", Config{EvolutionTokens: []string{""}}, nil},
	} {
		c.cfg.Registerer = prometheus.NewRegistry()
		if _, err := New(c.cfg, e.store, e.js); err == nil || errors.Is(err, ErrNoSecret) {
			t.Errorf("%s: New returned %v, want a configuration error", c.name, err)
		}
	}

	// The default env serves the Cloud API only.
	for _, p := range []string{messages.ProviderWASender, messages.ProviderWAHA, messages.ProviderEvolution} {
		if code, _ := e.postTo(p, []byte(`{"event":"x","session":"s"}`), ""); code != http.StatusNotFound {
			t.Errorf("%s not configured: got %d, want 404", p, code)
		}
	}

	only := newEnv(t, Config{AppSecrets: []string{}, WASenderSecrets: []string{testWASenderSecret}})
	if code, _ := only.postTo(messages.ProviderCloud, textBody("wamid.x", "x"), testSecret); code != http.StatusNotFound {
		t.Errorf("Cloud API not configured: got %d, want 404", code)
	}
	if code, _ := only.get(pathCloud + "?hub.mode=subscribe&hub.verify_token=t&hub.challenge=1"); code != http.StatusNotFound {
		t.Errorf("handshake with the Cloud API not configured: got %d, want 404", code)
	}
	only.answer(messages.ProviderWASender, fixture(t, "wasender_messages_upsert.json"), http.StatusOK)

	insecure := newEnv(t, Config{Insecure: true})
	for _, p := range Providers() {
		var body []byte
		switch p {
		case messages.ProviderCloud:
			body = textBody("wamid.insecure.all", "x")
		case messages.ProviderWASender:
			body = fixture(t, "wasender_message_sent.json")
		case messages.ProviderWAHA:
			body = fixture(t, "waha_message.json")
		case messages.ProviderEvolution:
			body = fixture(t, "evolution_messages_upsert.json")
		}
		if code, text := insecure.postTo(p, body, ""); code != http.StatusOK {
			t.Errorf("%s insecure, unsigned: got %d %s, want 200", p, code, text)
		}
	}
	if n := len(insecure.stored()); n != 4 {
		t.Errorf("stream holds %d messages, want 4", n)
	}
}

// Every gateway fixture, signed, is stored once per distinct key; a second
// delivery is all duplicates; events are published on their provider's
// subject with their key as Nats-Msg-Id.
func TestGatewayFixturesStoredOnce(t *testing.T) {
	e := newEnv(t, gatewayConfig())
	want := map[string]messages.Event{}
	for prefix, provider := range map[string]string{"wasender_": messages.ProviderWASender, "waha_": messages.ProviderWAHA, "evolution_": messages.ProviderEvolution} {
		parse, _ := messages.Parser(provider)
		for name, body := range gatewayFixtures(t, prefix) {
			evs, err := parse(body, time.Now())
			if err != nil || len(evs) == 0 {
				t.Fatalf("%s: %d events, %v", name, len(evs), err)
			}
			// Transient events: the server's window is the default one.
			messages.Window(evs, 0)
			fresh := 0
			for _, ev := range evs {
				if _, seen := want[ev.Key]; !seen {
					fresh++
				}
				want[ev.Key] = ev
			}
			if ans := e.answer(provider, body, http.StatusOK); ans.Events != len(evs) || ans.Accepted != fresh || ans.Duplicates != len(evs)-fresh {
				t.Errorf("%s: first delivery %+v, want %d events, %d accepted", name, ans, len(evs), fresh)
			}
			if ans := e.answer(provider, body, http.StatusOK); ans.Accepted != 0 || ans.Duplicates != len(evs) {
				t.Errorf("%s: second delivery %+v, want all duplicates", name, ans)
			}
		}
	}
	got := e.stored()
	if len(got) != len(want) {
		t.Fatalf("stream holds %d messages, want %d", len(got), len(want))
	}
	for _, m := range got {
		w, ok := want[m.ev.Key]
		if !ok {
			t.Errorf("stored unexpected %s (%s)", m.ev.Key, m.ev.Identity)
			continue
		}
		if m.ev.Identity != w.Identity || m.ev.Provider != w.Provider || !bytes.Equal(m.ev.Item, w.Item) {
			t.Errorf("stored %+v, want %+v", m.ev, w)
		}
		if m.raw.Header.Get("Nats-Msg-Id") != w.Key || m.raw.Subject != messages.Subject(w) {
			t.Errorf("%s: header %q subject %q", w.Key, m.raw.Header.Get("Nats-Msg-Id"), m.raw.Subject)
		}
		if !strings.HasPrefix(m.raw.Subject, "wagate.events."+w.Provider+".") {
			t.Errorf("subject %q for provider %s", m.raw.Subject, w.Provider)
		}
		if s := e.state(w.Key); s != dedupe.Accepted {
			t.Errorf("%s: state %v, want accepted", w.Key, s)
		}
	}
	for _, path := range []string{pathWASender, pathWAHA, pathEvolution} {
		if n := e.metric("wagate_ingest_requests_total", "route", path, "code", "200"); n == 0 {
			t.Errorf("requests{%s,200} = 0", path)
		}
	}
}

// One WASenderApi message delivered with its chat as a phone JID, then as a
// LID, through messages.upsert then messages.received; one WAHA message
// delivered with a new request id, envelope id and time and its chat as a
// LID. Each is stored once.
func TestGatewayRedeliveriesStoredOnce(t *testing.T) {
	e := newEnv(t, gatewayConfig())
	ws := func(event, jid, messages string) []byte {
		return fmt.Appendf(nil, `{"event":%q,"sessionId":"sess-1","timestamp":%d,"data":{"messages":%s}}`, event, time.Now().UnixNano(),
			strings.ReplaceAll(messages, "JID", jid))
	}
	item := `{"key":{"id":"3EB0REDELIVER","fromMe":false,"remoteJid":"JID","cleanedSenderPn":"15550000001"},"message":{"conversation":"hi"}}`
	waha := func(evtID, chat string) []byte {
		return fmt.Appendf(nil, `{"id":%q,"timestamp":%d,"session":"default","event":"message","payload":{"id":"false_%s_3EB0WAHARE","from":%q,"fromMe":false,"body":"hi"}}`,
			evtID, time.Now().UnixMilli(), chat, chat)
	}
	deliveries := []struct {
		provider string
		body     []byte
		header   string // X-Webhook-Request-Id, WAHA's transport id
	}{
		{messages.ProviderWASender, ws("messages.upsert", "15550000001@s.whatsapp.net", "["+item+"]"), ""},
		{messages.ProviderWASender, ws("messages.upsert", "123456789@lid", "["+item+"]"), ""},
		{messages.ProviderWASender, ws("messages.received", "123456789@lid", item), ""},
		{messages.ProviderWAHA, waha("evt_01", "15550000001@c.us"), "req-1"},
		{messages.ProviderWAHA, waha("evt_02", "123456789@lid"), "req-2"},
		{messages.ProviderWAHA, waha("evt_03", "15550000001@c.us"), "req-3"},
	}
	accepted := 0
	for i, d := range deliveries {
		req, _ := http.NewRequest(http.MethodPost, e.http.URL+Route(d.provider), bytes.NewReader(d.body))
		if err := SignRequest(req.Header, d.provider, d.body, testSecretOf(d.provider)); err != nil {
			t.Fatal(err)
		}
		if d.header != "" {
			req.Header.Set("X-Webhook-Request-Id", d.header)
		}
		code, text := e.do(req)
		var ans Answer
		if err := json.Unmarshal([]byte(text), &ans); err != nil || code != http.StatusOK || ans.Events != 1 {
			t.Fatalf("delivery %d: %d %s", i, code, text)
		}
		accepted += ans.Accepted
	}
	if accepted != 2 {
		t.Errorf("%d deliveries accepted, want 2 (one per message)", accepted)
	}
	if n := len(e.stored()); n != 2 {
		t.Errorf("stream holds %d messages, want 2", n)
	}
	if n := e.metric("wagate_ingest_events_total", "kind", "message", "outcome", "duplicate"); n != 4 {
		t.Errorf("duplicates = %v, want 4", n)
	}
}

// G6, §8 for the gateways: a wrong or missing signature is 401 with nothing
// claimed; a signed body that is not a webhook is 400; an unknown event is
// 200 and stored as unknown; a missing id is stored with a fallback identity
// and counted.
func TestGatewayBadInput(t *testing.T) {
	e := newEnv(t, gatewayConfig())
	body := fixture(t, "wasender_messages_upsert.json")
	wbody := fixture(t, "waha_message.json")
	ebody := fixture(t, "evolution_messages_upsert.json")
	refused := []struct {
		name     string
		provider string
		body     []byte
		header   http.Header
	}{
		{"wasender unsigned", messages.ProviderWASender, body, http.Header{}},
		{"wasender wrong secret", messages.ProviderWASender, body, http.Header{HeaderWASenderSignature: {"not-the-secret"}}},
		{"wasender secret prefix", messages.ProviderWASender, body, http.Header{HeaderWASenderSignature: {testWASenderSecret[:10]}}},
		{"wasender cloud signature", messages.ProviderWASender, body, http.Header{HeaderSignature: {Sign(body, testWASenderSecret)}}},
		{"waha unsigned", messages.ProviderWAHA, wbody, http.Header{}},
		{"waha wrong key", messages.ProviderWAHA, wbody, http.Header{HeaderWAHAHmac: {SignWAHA(wbody, "other")}}},
		{"waha other body", messages.ProviderWAHA, wbody, http.Header{HeaderWAHAHmac: {SignWAHA(body, testWAHAKey)}}},
		{"waha sha256 claimed", messages.ProviderWAHA, wbody, http.Header{HeaderWAHAHmac: {SignWAHA(wbody, testWAHAKey)}, HeaderWAHAHmacAlgorithm: {"sha256"}}},
		{"waha with the WASender secret", messages.ProviderWAHA, wbody, http.Header{HeaderWASenderSignature: {testWASenderSecret}}},
		{"evolution unsigned", messages.ProviderEvolution, ebody, http.Header{}},
		{"evolution wrong token", messages.ProviderEvolution, ebody, http.Header{HeaderEvolutionToken: {"Bearer not-the-token"}}},
		{"evolution token without scheme", messages.ProviderEvolution, ebody, http.Header{HeaderEvolutionToken: {testEvolutionToken}}},
		{"evolution apikey of the body", messages.ProviderEvolution, ebody, http.Header{"Apikey": {"EVOLUTION-INSTANCE-KEY-0001"}}},
	}
	for _, c := range refused {
		req, _ := http.NewRequest(http.MethodPost, e.http.URL+Route(c.provider), bytes.NewReader(c.body))
		for k, v := range c.header {
			req.Header[k] = v
		}
		if code, text := e.do(req); code != http.StatusUnauthorized || !strings.Contains(text, "invalid signature") {
			t.Errorf("%s: got %d %s, want 401", c.name, code, text)
		}
	}
	if n := e.store.claims.Load(); n != 0 {
		t.Fatalf("%d claims after refused bodies, want 0", n)
	}

	for _, c := range []struct {
		provider string
		body     string
		title    string
	}{
		{messages.ProviderWASender, `{"sessionId":"s"}`, "WASenderApi"},
		// A body with the provider's data (Evolution API's data, WAHA's
		// payload) but no event name or session is the provider's envelope
		// and is stored below: only one without it is refused.
		{messages.ProviderEvolution, `{"instance":"shop"}`, "Evolution API"},
		{messages.ProviderWASender, `not json`, "WASenderApi"},
		{messages.ProviderWAHA, `{"event":"message"}`, "WAHA"},
		{messages.ProviderWAHA, string(body), "WAHA"}, // a WASenderApi body has no session
	} {
		if ans := e.answer(c.provider, []byte(c.body), http.StatusBadRequest); ans.Error != "body is not a "+c.title+" webhook" {
			t.Errorf("%s %s: error %q", c.provider, c.body, ans.Error)
		}
	}

	e.answer(messages.ProviderWASender, []byte(`{"event":"newsletter.future-event","data":[{"id":"x@g.us"}]}`), http.StatusOK)
	e.answer(messages.ProviderWAHA, []byte(`{"event":"future.event","session":"default","payload":{"id":"x@c.us"}}`), http.StatusOK)
	// A WASenderApi body with data but no event name (older examples) is
	// stored, not refused: a 4xx would lose it for good.
	e.answer(messages.ProviderWASender, []byte(`{"timestamp":1633456789,"data":{"messages":{"key":{"id":"3EB0NOEVENT","fromMe":false,"remoteJid":"15550000009@s.whatsapp.net"},"message":{"conversation":"hi"}}}}`), http.StatusOK)
	e.answer(messages.ProviderWASender, []byte(`{"event":"messages.upsert","data":{"messages":[{"key":{"fromMe":false,"remoteJid":"x@lid"},"messageTimestamp":1,"message":{"conversation":"no id"}}]}}`), http.StatusOK)
	// So are an Evolution API body with data but no event name (a WAMessage
	// by its shape) and WAHA bodies with a payload but no session (read
	// under "default") or no event name (unknown).
	e.answer(messages.ProviderEvolution, []byte(`{"instance":"shop","data":{"key":{"id":"3EB0EVONOEVENT","fromMe":false,"remoteJid":"15550000008@s.whatsapp.net"},"message":{"conversation":"hi"}}}`), http.StatusOK)
	e.answer(messages.ProviderWAHA, []byte(`{"event":"message","payload":{"id":"false_15550000007@c.us_AAAANOSESSION","from":"15550000007@c.us","timestamp":1700000000,"body":"hi"}}`), http.StatusOK)
	e.answer(messages.ProviderWAHA, []byte(`{"session":"default","payload":{"x":1}}`), http.StatusOK)
	kinds := map[messages.Kind]int{}
	fallback := 0
	for _, m := range e.stored() {
		kinds[m.ev.Kind]++
		if m.ev.Fallback {
			fallback++
		}
	}
	if kinds[messages.KindUnknown] != 3 || kinds[messages.KindMessage] != 4 || fallback != 1 {
		t.Errorf("stored kinds %v, %d fallbacks; want 3 unknown, 4 messages, 1 with a fallback identity", kinds, fallback)
	}
	if n := e.metric("wagate_ingest_fallback_identities_total", "kind", "message"); n != 1 {
		t.Errorf("fallback identities = %v, want 1", n)
	}
}

// Secret rotation for the gateways: any configured secret is accepted.
func TestGatewaySecretRotation(t *testing.T) {
	e := newEnv(t, Config{WASenderSecrets: []string{"old-secret", "new-secret"}, WAHAKeys: []string{"old-key", "new-key"}, EvolutionTokens: []string{"old-token", "new-token"}})
	ws := fixture(t, "wasender_message_sent.json")
	wh := fixture(t, "waha_message.json")
	for _, secret := range []string{"old-secret", "new-secret"} {
		if code, text := e.postTo(messages.ProviderWASender, ws, secret); code != http.StatusOK {
			t.Errorf("WASenderApi secret %s: %d %s", secret, code, text)
		}
	}
	for _, key := range []string{"old-key", "new-key"} {
		if code, text := e.postTo(messages.ProviderWAHA, wh, key); code != http.StatusOK {
			t.Errorf("WAHA key %s: %d %s", key, code, text)
		}
	}
	if code, _ := e.postTo(messages.ProviderWAHA, wh, "retired-key"); code != http.StatusUnauthorized {
		t.Errorf("retired WAHA key: %d, want 401", code)
	}
	ev := fixture(t, "evolution_messages_upsert.json")
	for _, tok := range []string{"old-token", "new-token"} {
		if code, text := e.postTo(messages.ProviderEvolution, ev, tok); code != http.StatusOK {
			t.Errorf("Evolution API token %s: %d %s", tok, code, text)
		}
	}
	if code, _ := e.postTo(messages.ProviderEvolution, ev, "retired-token"); code != http.StatusUnauthorized {
		t.Errorf("retired Evolution API token: %d, want 401", code)
	}
	if n := len(e.stored()); n != 3 {
		t.Errorf("stream holds %d messages, want 3", n)
	}
}

// §8: logs never hold a gateway's secret, its signature or a message text.
func TestGatewayLogsOmitSecrets(t *testing.T) {
	e := newEnv(t, gatewayConfig())
	body := []byte(`{"event":"messages.upsert","sessionId":"api-key-in-body-5b1","data":{"messages":[{"key":{"id":"3EB0LOG","fromMe":false,"remoteJid":"15550000001@s.whatsapp.net"},"message":{"conversation":"a private text"}}]}}`)
	e.answer(messages.ProviderWASender, body, http.StatusOK)
	e.answer(messages.ProviderWASender, body, http.StatusOK)
	_, _ = e.postTo(messages.ProviderWASender, body, "wrong-secret-value")
	wbody := fixture(t, "waha_message.json")
	e.answer(messages.ProviderWAHA, wbody, http.StatusOK)
	ebody := fixture(t, "evolution_messages_upsert.json")
	e.answer(messages.ProviderEvolution, ebody, http.StatusOK)
	e.answer(messages.ProviderEvolution, []byte(`{"event":"logout.instance","instance":"shop-main","apikey":"EVOLUTION-INSTANCE-KEY-0001"}`), http.StatusOK)
	logs := e.logs.String()
	for _, secret := range []string{testWASenderSecret, testWAHAKey, SignWAHA(wbody, testWAHAKey), "wrong-secret-value", "api-key-in-body-5b1", "a private text", "15550000001",
		testEvolutionToken, "EVOLUTION-INSTANCE-KEY-0001", "Bom dia"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs hold %q", secret)
		}
	}
	if !strings.Contains(logs, `"provider":"wasender"`) {
		t.Errorf("no log line names the provider")
	}
	// Evolution API's instance key is not in any stored event either.
	for _, m := range e.stored() {
		if bytes.Contains(m.raw.Data, []byte("EVOLUTION-INSTANCE-KEY-0001")) {
			t.Errorf("stored event holds the instance apikey: %s", m.raw.Data)
		}
	}
}
