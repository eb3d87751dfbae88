package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
)

// sdkApp is the directory of the Node.js receivers built on public SDKs;
// .ci/run installs their packages (npm ci).
var sdkApp = filepath.Join("testdata", "sdkapp")

// appRequest is one request the Node.js app received (see app.mjs).
type appRequest struct {
	Key      string `json:"key"`
	Fence    string `json:"fence"`
	Provider string `json:"provider"`
	Code     int    `json:"code"`
	Error    string `json:"error"`
	Body     string `json:"body"` // base64
	Ran      []struct {
		Handler string `json:"handler"`
		ID      string `json:"id"`
		Status  string `json:"status"`
	} `json:"ran"`
}

// startApp starts the Node.js app in mode and returns its URL. Without
// node or the app's packages it skips, or fails under CI.
func startApp(t *testing.T, mode string) string {
	t.Helper()
	missing := func(what string) {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s (CI: .ci/run installs it)", what)
		}
		t.Skip(what)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not installed")
	}
	for _, pkg := range []string{"whatsapp-api-js", "wasenderapi"} {
		if _, err := os.Stat(filepath.Join(sdkApp, "node_modules", pkg, "package.json")); err != nil {
			missing("npm package " + pkg + " is not installed: npm ci --prefix " + sdkApp)
		}
	}
	cmd := exec.Command(node, "app.mjs", mode, secret, wasenderSecret, wahaKey, evolutionToken)
	cmd.Dir = sdkApp
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncWriter
	stderr.w = &bytes.Buffer{}
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("--- app stderr:\n%s", tail(stderr.String(), 4000))
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("app did not start: %v\n%s", err, stderr.String())
	}
	var hello struct{ Port int }
	if err := json.Unmarshal([]byte(line), &hello); err != nil || hello.Port == 0 {
		t.Fatalf("app said %q", line)
	}
	return "http://127.0.0.1:" + strconv.Itoa(hello.Port)
}

func appLog(t *testing.T, url string) []appRequest {
	t.Helper()
	resp, err := http.Get(url + "/log")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var reqs []appRequest
	if err := json.NewDecoder(resp.Body).Decode(&reqs); err != nil {
		t.Fatal(err)
	}
	return reqs
}

// cloudTraffic is Cloud API bodies beyond the fixtures: a batch of 2 entries
// × 2 changes × 3 messages, and a group message's read receipts from two
// participants, as Meta writes them (non-ASCII escaped).
func cloudTraffic() map[string]fixture {
	const value = `"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"}`
	var b strings.Builder
	b.WriteString(`{"object":"whatsapp_business_account","entry":[`)
	for e := range 2 {
		if e > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"id":"102290129340398","time":%d,"changes":[`, 1700000000+e)
		for c := range 2 {
			if c > 0 {
				b.WriteString(",")
			}
			b.WriteString(`{"value":{` + value + `,"contacts":[{"profile":{"name":"Jos\u00e9"},"wa_id":"16505551234"},{"profile":{"name":"Kai"},"wa_id":"16505550000"}],"messages":[`)
			for m := range 3 {
				if m > 0 {
					b.WriteString(",\n ")
				}
				from := []string{"16505551234", "16505550000"}[m%2]
				fmt.Fprintf(&b, `{"from":"%s","id":"wamid.SDK%d%d%d","timestamp":"1700000001","type":"text","text":{"body":"caf\u00e9 \ud83d\ude00 \/ %d"}}`, from, e, c, m, m)
			}
			b.WriteString(`]},"field":"messages"}`)
		}
		b.WriteString(`]}`)
	}
	b.WriteString(`]}`)
	receipts := `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{` + value + `,"statuses":[` +
		`{"id":"wamid.GROUP1","status":"read","timestamp":"1700000002","recipient_id":"120363000000000001@g.us","recipient_type":"group","recipient_participant_id":"16505551234"},` +
		`{"id":"wamid.GROUP1","status":"read","timestamp":"1700000003","recipient_id":"120363000000000001@g.us","recipient_type":"group","recipient_participant_id":"16505550000"},` +
		`{"id":"wamid.GROUP1","status":"delivered","timestamp":"1700000001","recipient_id":"120363000000000001@g.us","recipient_type":"group","recipient_participant_id":"16505550000"}]},"field":"messages"}]}]}`
	return map[string]fixture{
		"sdk_batch.json":          {provider: messages.ProviderCloud, body: []byte(b.String())},
		"sdk_group_receipts.json": {provider: messages.ProviderCloud, body: []byte(receipts)},
	}
}

// TestAppBehindWagate runs an app built on public SDKs behind real ingress
// and worker processes, with wagate forwarding in the provider's own format
// (the app unchanged: the provider's envelope and signature) and in wagate's
// event format (a wagate-aware app). Every body is delivered three times,
// the last time by three concurrent requests. Every event must run exactly
// once in the app, the app must refuse no request, and each item it sees
// must be byte for byte what the provider sent.
func TestAppBehindWagate(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped in -short mode")
	}
	for _, format := range []string{"provider", "event"} {
		t.Run(format, func(t *testing.T) { appBehindWagate(t, format) })
	}
}

func appBehindWagate(t *testing.T, format string) {
	app := startApp(t, format)
	dir := binaries(t)
	natsURL := testenv.NATSURL(t)
	common := []string{
		"WAGATE_REDIS_URL=" + testenv.RedisURL(t),
		"WAGATE_NATS_URL=" + natsURL,
		"WAGATE_META_APP_SECRET=" + secret,
		"WAGATE_WASENDER_SECRET=" + wasenderSecret,
		"WAGATE_WAHA_HMAC_KEY=" + wahaKey,
		"WAGATE_EVOLUTION_TOKEN=" + evolutionToken,
		"WAGATE_META_VERIFY_TOKEN=e2e-verify",
		"WAGATE_REPEAT_WINDOW=" + repeatWindow.String(),
	}
	port, adminPort := testenv.FreePort(t), testenv.FreePort(t)
	start(t, filepath.Join(dir, "ingress"), "ingress", append(common,
		fmt.Sprintf("WAGATE_HTTP_ADDR=127.0.0.1:%d", port),
		fmt.Sprintf("WAGATE_ADMIN_ADDR=127.0.0.1:%d", adminPort))...)
	ingress := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort))
	for i := range 2 {
		wport := testenv.FreePort(t)
		start(t, filepath.Join(dir, "worker"), fmt.Sprintf("worker-%d", i), append(common,
			"WAGATE_HANDLER=forward",
			"WAGATE_FORWARD_URL="+app+"/webhook",
			"WAGATE_FORWARD_FORMAT="+format,
			"WAGATE_WORKER_CONCURRENCY=4",
			fmt.Sprintf("WAGATE_WORKER_HTTP_ADDR=127.0.0.1:%d", wport))...)
		waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", wport))
	}

	bodies, _ := fixtures(t)
	for n, f := range cloudTraffic() {
		bodies[n] = f
	}
	if format == "provider" {
		// whatsapp-api-js reads value.metadata of every change, which a
		// field change (template status, account update, quality, …) lacks:
		// it answers 500 to Meta's own body of one, so those are left out.
		for n, f := range bodies {
			if f.provider != messages.ProviderCloud {
				continue
			}
			evs, _ := messages.Parse(f.body, time.Now())
			for _, ev := range evs {
				if ev.Kind == messages.KindField {
					delete(bodies, n)
					break
				}
			}
		}
	}
	// What the app must see: every distinct event, by key; in the provider
	// format, a gateway's envelope member rides in the body of its siblings.
	want := map[string][]messages.Event{}
	for _, f := range bodies {
		parse, _ := messages.Parser(f.provider)
		evs, err := parse(f.body, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		messages.Window(evs, repeatWindow)
		for _, ev := range evs {
			if format == "provider" && ev.Context.Frame.Covered {
				continue
			}
			want[ev.Key] = append(want[ev.Key], ev)
		}
	}
	for round := range 3 {
		for name, f := range bodies {
			if round < 2 {
				if code, err := post(ingress, f); err != nil || code != http.StatusOK {
					t.Fatalf("POST %s: %d %v", name, code, err)
				}
				continue
			}
			done := make(chan struct{}, 3)
			for range 3 {
				go func() {
					defer func() { done <- struct{}{} }()
					if code, err := post(ingress, f); err != nil || code != http.StatusOK {
						t.Errorf("POST %s: %d %v", name, code, err)
					}
				}()
			}
			for range 3 {
				<-done
			}
		}
	}

	var reqs []appRequest
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	testenv.Eventually(t, 90*time.Second, func() bool {
		reqs = appLog(t, app)
		if len(reqs) < len(want) {
			return false
		}
		cons, err := js.Consumer(ctx, "WAGATE_EVENTS", "wagate-workers")
		if err != nil {
			return false
		}
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, "the app got %d requests, want %d", len(reqs), len(want))
	reqs = appLog(t, app)

	ran := map[string]int{}
	for _, r := range reqs {
		body, err := base64.StdEncoding.DecodeString(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		if r.Code != http.StatusOK {
			t.Errorf("the app refused a request: %d %s\n%s", r.Code, r.Error, body)
			continue
		}
		if fence, _ := strconv.ParseInt(r.Fence, 10, 64); fence < 1 {
			t.Errorf("request %s: Wagate-Fencing-Token %q", r.Key, r.Fence)
		}
		var got messages.Event
		if format == "event" {
			if got, err = messages.Decode(body); err != nil {
				t.Errorf("request %s: %v", r.Key, err)
				continue
			}
		} else {
			got = appItem(t, r, body)
		}
		ran[got.Key]++
		if got.Key != r.Key {
			t.Errorf("request with Idempotency-Key %s holds event %s", r.Key, got.Key)
		}
		candidates, ok := want[got.Key]
		if !ok {
			t.Errorf("the app got an unexpected event %s (%s)", got.Key, got.Identity)
			continue
		}
		match := false
		for _, w := range candidates {
			match = match || bytes.Equal(got.Item, w.Item)
		}
		if !match {
			t.Errorf("event %s: the app saw item %s, not as the provider sent it (%s)", got.Key, got.Item, candidates[0].Item)
		}
		// The SDK ran the item it was given: a message or a status of the
		// Cloud API's messages field reaches its handler with its id (it
		// has no handler for other fields and answers them 200).
		w := candidates[0]
		if got.Provider == messages.ProviderCloud && w.Context.Field == "messages" && (w.Kind == messages.KindMessage || w.Kind == messages.KindStatus) {
			if len(r.Ran) != 1 || r.Ran[0].ID != w.ID || (w.Kind == messages.KindStatus && r.Ran[0].Status != w.Status) {
				t.Errorf("event %s (%s): the app ran %+v", got.Key, w.Identity, r.Ran)
			}
		}
	}
	for k, w := range want {
		if ran[k] != 1 {
			t.Errorf("event %s (%s) ran %d times in the app, want 1", k, w[0].Identity, ran[k])
		}
	}
	t.Logf("%s format: %d bodies ×3 deliveries, %d distinct events, %d requests to the app", format, len(bodies), len(want), len(reqs))
}

// appItem parses a body the app received in the provider's format: it must
// hold exactly one event (a gateway's envelope members aside).
func appItem(t *testing.T, r appRequest, body []byte) messages.Event {
	t.Helper()
	parse, ok := messages.Parser(r.Provider)
	if !ok {
		t.Errorf("request %s: unknown provider %q", r.Key, r.Provider)
		return messages.Event{}
	}
	evs, err := parse(body, time.Now())
	if err != nil {
		t.Errorf("request %s: %v\n%s", r.Key, err, body)
		return messages.Event{}
	}
	messages.Window(evs, repeatWindow)
	var items []messages.Event
	for _, ev := range evs {
		if !ev.Context.Frame.Covered {
			items = append(items, ev)
		}
	}
	if len(items) != 1 {
		t.Errorf("request %s holds %d items, want 1:\n%s", r.Key, len(items), body)
		return messages.Event{}
	}
	return items[0]
}
