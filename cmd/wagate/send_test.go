package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/ingest"
)

const sendTestSecret = "test-app-secret"

// sendTestIngress is a stand-in for the ingress: it verifies the signature
// over the exact bytes received (401 otherwise), answers 400 to a body that
// is not a Cloud API envelope and otherwise answers the counts JSON, with
// its own in-memory dedupe so repeated bodies come back as duplicates.
type sendTestIngress struct {
	t      *testing.T
	secret string
	// status, when non-zero, is answered to every request instead.
	status int
	// gate, when non-nil, is called by every request before it is answered.
	gate func()

	mu       sync.Mutex
	bodies   [][]byte
	seen     map[string]bool
	inFlight int
	maxIn    int
}

func newSendTestIngress(t *testing.T) (*sendTestIngress, *httptest.Server) {
	t.Helper()
	ing := &sendTestIngress{t: t, secret: sendTestSecret, seen: map[string]bool{}}
	srv := httptest.NewServer(ing)
	t.Cleanup(srv.Close)
	return ing, srv
}

func (ing *sendTestIngress) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ing.mu.Lock()
	ing.inFlight++
	ing.maxIn = max(ing.maxIn, ing.inFlight)
	ing.mu.Unlock()
	defer func() {
		ing.mu.Lock()
		ing.inFlight--
		ing.mu.Unlock()
	}()
	if ing.gate != nil {
		ing.gate()
	}

	body, err := io.ReadAll(r.Body)
	if err != nil {
		ing.t.Errorf("ingress: read body: %v", err)
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	mac := hmac.New(sha256.New, []byte(ing.secret))
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if r.Method != http.MethodPost || !hmac.Equal([]byte(r.Header.Get("X-Hub-Signature-256")), []byte(want)) {
		ing.t.Errorf("ingress: %s with signature %q, want POST with %q", r.Method, r.Header.Get("X-Hub-Signature-256"), want)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	ing.mu.Lock()
	ing.bodies = append(ing.bodies, body)
	ing.mu.Unlock()
	if ing.status != 0 {
		http.Error(w, "stream unavailable", ing.status)
		return
	}

	keys, ok := sendTestEventKeys(body)
	if !ok {
		http.Error(w, "not a webhook", http.StatusBadRequest)
		return
	}
	var accepted, dups int
	ing.mu.Lock()
	for _, k := range keys {
		if ing.seen[k] {
			dups++
		} else {
			ing.seen[k] = true
			accepted++
		}
	}
	ing.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"events":%d,"accepted":%d,"duplicates":%d}`, len(keys), accepted, dups)
}

// sendTestEnvelope is the part of a Cloud API webhook the tests look at.
type sendTestEnvelope struct {
	Object string `json:"object"`
	Entry  []struct {
		ID      string `json:"id"`
		Time    int64  `json:"time"`
		Changes []struct {
			Field string `json:"field"`
			Value struct {
				Metadata struct {
					PhoneNumberID string `json:"phone_number_id"`
				} `json:"metadata"`
				Messages []struct {
					ID string `json:"id"`
				} `json:"messages"`
				Statuses []struct {
					ID     string `json:"id"`
					Status string `json:"status"`
				} `json:"statuses"`
			} `json:"value"`
		} `json:"changes"`
	} `json:"entry"`
}

// sendTestEventKeys returns one key per event of a Cloud API body, or false
// when the body is not a Cloud API envelope.
func sendTestEventKeys(body []byte) ([]string, bool) {
	var env sendTestEnvelope
	if err := json.Unmarshal(body, &env); err != nil || env.Object != "whatsapp_business_account" || env.Entry == nil {
		return nil, false
	}
	var keys []string
	for _, e := range env.Entry {
		for _, c := range e.Changes {
			if c.Field != "messages" {
				keys = append(keys, fmt.Sprintf("%s|%s|%d", c.Field, e.ID, e.Time))
				continue
			}
			for _, m := range c.Value.Messages {
				keys = append(keys, "message|"+c.Value.Metadata.PhoneNumberID+"|"+m.ID)
			}
			for _, s := range c.Value.Statuses {
				keys = append(keys, "status|"+c.Value.Metadata.PhoneNumberID+"|"+s.ID+"|"+s.Status)
			}
		}
	}
	return keys, true
}

// runSend runs "wagate send" with args in a clean environment and returns
// its standard output.
func runSend(t *testing.T, args ...string) (string, error) {
	t.Helper()
	t.Setenv("WAGATE_SEND_URL", "")
	t.Setenv("WAGATE_META_APP_SECRET", "")
	if os.Getenv("WAGATE_DATA_DIR") == "" {
		t.Setenv("WAGATE_DATA_DIR", t.TempDir())
	}
	cmd := newSendCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	return out.String(), err
}

func builtinSamples(t *testing.T) []sendPayload {
	t.Helper()
	samples, err := sendBuiltins()
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) < 20 {
		t.Fatalf("only %d built-in samples", len(samples))
	}
	return samples
}

func outputLines(out string) []string {
	return strings.Split(strings.TrimRight(out, "\n"), "\n")
}

func TestSendBuiltinSamples(t *testing.T) {
	ing, srv := newSendTestIngress(t)
	samples := builtinSamples(t)
	// URL and secret come from the environment; the secret is the first of
	// a comma list.
	t.Setenv("WAGATE_DATA_DIR", t.TempDir())
	t.Setenv("WAGATE_SEND_URL", srv.URL)
	t.Setenv("WAGATE_META_APP_SECRET", " "+sendTestSecret+" ,older-secret")
	cmd := newSendCmd()
	var buf bytes.Buffer
	cmd.SetOut(&buf)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(nil)
	err := cmd.Execute()
	out := buf.String()
	if err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}

	// Every sample posted exactly once, byte for byte.
	if len(ing.bodies) != len(samples) {
		t.Fatalf("ingress got %d requests, want %d", len(ing.bodies), len(samples))
	}
	wantEvents := 0
	for i, s := range samples {
		if !bytes.Equal(ing.bodies[i], s.body) {
			t.Errorf("request %d: body differs from %s", i, s.name)
		}
		keys, _ := sendTestEventKeys(s.body)
		wantEvents += len(keys)
	}

	lines := outputLines(out)
	if len(lines) != len(samples)+1 {
		t.Fatalf("got %d output lines, want %d (one per sample and a summary):\n%s", len(lines), len(samples)+1, out)
	}
	for i, s := range samples {
		keys, _ := sendTestEventKeys(s.body)
		want := fmt.Sprintf("events=%d accepted=%d duplicates=0", len(keys), len(keys))
		if !strings.HasPrefix(lines[i], "200 ") || !strings.Contains(lines[i], s.name) || !strings.HasSuffix(lines[i], want) {
			t.Errorf("line %d = %q, want 200, %s and %q", i, lines[i], s.name, want)
		}
	}
	summary := lines[len(lines)-1]
	wantSummary := fmt.Sprintf("summary: requests=%d 200=%d events=%d accepted=%d duplicates=0 ",
		len(samples), len(samples), wantEvents, wantEvents)
	if !strings.HasPrefix(summary, wantSummary) || !strings.HasSuffix(summary, srv.URL) {
		t.Errorf("summary = %q, want prefix %q and the URL", summary, wantSummary)
	}
}

func TestSendRepeatConcurrency(t *testing.T) {
	const repeat, concurrency = 3, 4
	ing, srv := newSendTestIngress(t)
	samples := builtinSamples(t)

	// Hold the first requests until `concurrency` of them are in flight at
	// once, so the test sees the command really send in parallel.
	full := make(chan struct{})
	var once sync.Once
	ing.gate = func() {
		ing.mu.Lock()
		n := ing.inFlight
		ing.mu.Unlock()
		if n >= concurrency {
			once.Do(func() { close(full) })
		}
		select {
		case <-full:
		case <-time.After(5 * time.Second):
			once.Do(func() {
				t.Errorf("never had %d requests in flight at once", concurrency)
				close(full)
			})
		}
	}

	out, err := runSend(t, "--url", srv.URL, "--secret", sendTestSecret,
		"--repeat", fmt.Sprint(repeat), "--concurrency", fmt.Sprint(concurrency))
	if err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	if got, want := len(ing.bodies), repeat*len(samples); got != want {
		t.Fatalf("ingress got %d requests, want %d", got, want)
	}
	if ing.maxIn != concurrency {
		t.Errorf("at most %d requests were in flight, want %d", ing.maxIn, concurrency)
	}
	perBody := map[string]int{}
	for _, b := range ing.bodies {
		perBody[string(b)]++
	}
	for _, s := range samples {
		if n := perBody[string(s.body)]; n != repeat {
			t.Errorf("%s posted %d times, want %d", s.name, n, repeat)
		}
	}

	events := 0
	for _, s := range samples {
		keys, _ := sendTestEventKeys(s.body)
		events += len(keys)
	}
	lines := outputLines(out)
	if len(lines) != repeat*len(samples)+1 {
		t.Fatalf("got %d output lines, want %d", len(lines), repeat*len(samples)+1)
	}
	want := fmt.Sprintf("summary: requests=%d 200=%d events=%d accepted=%d duplicates=%d ",
		repeat*len(samples), repeat*len(samples), repeat*events, events, (repeat-1)*events)
	if summary := lines[len(lines)-1]; !strings.HasPrefix(summary, want) {
		t.Errorf("summary = %q, want prefix %q", summary, want)
	}
}

func TestSendFolderAndFiles(t *testing.T) {
	ing, srv := newSendTestIngress(t)
	samples := builtinSamples(t)

	dir := t.TempDir()
	write := func(name string, body []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, body, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("b.json", samples[1].body)
	write("a.json", samples[0].body)
	write("notes.txt", []byte("not sent: a folder sends *.json only"))
	if err := os.Mkdir(filepath.Join(dir, "sub.json"), 0o700); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join("sub.json", "c.json"), samples[2].body) // not recursive
	other := t.TempDir()
	bad := filepath.Join(other, "garbage.txt")
	if err := os.WriteFile(bad, []byte("this is not JSON\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	out, err := runSend(t, "--url", srv.URL, "--secret", sendTestSecret, dir, bad)
	if err != nil {
		t.Fatalf("a 400 answer must not fail the command: %v\n%s", err, out)
	}
	want := [][]byte{samples[0].body, samples[1].body, []byte("this is not JSON\n")}
	if len(ing.bodies) != len(want) {
		t.Fatalf("ingress got %d requests, want %d:\n%s", len(ing.bodies), len(want), out)
	}
	for i := range want {
		if !bytes.Equal(ing.bodies[i], want[i]) {
			t.Errorf("request %d: body %q, want %q", i, ing.bodies[i], want[i])
		}
	}
	lines := outputLines(out)
	if len(lines) != 4 {
		t.Fatalf("got %d lines, want 4:\n%s", len(lines), out)
	}
	for i, name := range []string{filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")} {
		if !strings.HasPrefix(lines[i], "200 ") || !strings.Contains(lines[i], name) {
			t.Errorf("line %d = %q, want 200 for %s", i, lines[i], name)
		}
	}
	if !strings.HasPrefix(lines[2], "400 ") || !strings.Contains(lines[2], bad) || !strings.Contains(lines[2], `body "not a webhook\n"`) {
		t.Errorf("line 2 = %q, want 400, the file and the answer's body", lines[2])
	}
	if !strings.Contains(lines[3], "requests=3 200=2 400=1 ") {
		t.Errorf("summary = %q", lines[3])
	}
}

func TestSendSecretSources(t *testing.T) {
	t.Run("missing", func(t *testing.T) {
		ing, srv := newSendTestIngress(t)
		out, err := runSend(t, "--url", srv.URL)
		if err == nil {
			t.Fatalf("send without a secret succeeded:\n%s", out)
		}
		for _, hint := range []string{"--secret", "WAGATE_META_APP_SECRET", "wagate dev", "secrets.json"} {
			if !strings.Contains(err.Error(), hint) {
				t.Errorf("error %q does not mention %s", err, hint)
			}
		}
		if len(ing.bodies) != 0 {
			t.Errorf("%d requests sent without a secret", len(ing.bodies))
		}
	})
	t.Run("dev data dir", func(t *testing.T) {
		ing, srv := newSendTestIngress(t)
		dir := t.TempDir()
		t.Setenv("WAGATE_DATA_DIR", dir)
		secrets := `{"app_secret":"` + sendTestSecret + `","verify_token":"vt"}`
		if err := os.WriteFile(filepath.Join(dir, "secrets.json"), []byte(secrets), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := runSend(t, "--url", srv.URL)
		if err != nil {
			t.Fatalf("send: %v\n%s", err, out)
		}
		if len(ing.bodies) == 0 {
			t.Error("nothing sent")
		}
	})
	t.Run("flag wins", func(t *testing.T) {
		ing, srv := newSendTestIngress(t)
		ing.secret = "from-flag"
		t.Setenv("WAGATE_META_APP_SECRET", "from-env")
		cmd := newSendCmd()
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		cmd.SetArgs([]string{"--url", srv.URL, "--secret", "from-flag"})
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestSendFailures(t *testing.T) {
	t.Run("503", func(t *testing.T) {
		ing, srv := newSendTestIngress(t)
		ing.status = http.StatusServiceUnavailable
		out, err := runSend(t, "--url", srv.URL, "--secret", sendTestSecret)
		if err == nil {
			t.Fatalf("503 answers did not fail the command:\n%s", out)
		}
		lines := outputLines(out)
		if !strings.HasPrefix(lines[0], "503 ") || !strings.Contains(lines[0], `body "stream unavailable\n"`) {
			t.Errorf("line 0 = %q", lines[0])
		}
		if !strings.Contains(lines[len(lines)-1], " 503=") {
			t.Errorf("summary = %q", lines[len(lines)-1])
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		target := srv.URL
		srv.Close()
		out, err := runSend(t, "--url", target, "--secret", sendTestSecret, "--timeout", "2s")
		if err == nil {
			t.Fatalf("send to a closed port succeeded:\n%s", out)
		}
		lines := outputLines(out)
		if !strings.HasPrefix(lines[0], "ERR ") || strings.Contains(lines[0], target) {
			t.Errorf("line 0 = %q, want ERR and the cause without the URL", lines[0])
		}
		if !strings.Contains(lines[len(lines)-1], " ERR=") {
			t.Errorf("summary = %q", lines[len(lines)-1])
		}
	})
	t.Run("stopped dev", func(t *testing.T) {
		// The URL comes from the record of a wagate dev that has stopped:
		// the error names the record, as wagate key's does, so that the
		// cause is not only "connection refused".
		srv := httptest.NewServer(http.NotFoundHandler())
		target := srv.URL + "/webhooks/whatsapp"
		srv.Close()
		data := t.TempDir()
		t.Setenv("WAGATE_DATA_DIR", data)
		record := filepath.Join(data, devStateFile)
		st := fmt.Sprintf(`{"pid":1,"nats_url":"nats://127.0.0.1:1","webhook_url":%q}`, target)
		if err := os.WriteFile(record, []byte(st), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := runSend(t, "--secret", sendTestSecret, "--timeout", "2s")
		if err == nil || !strings.Contains(err.Error(), record) || !strings.Contains(err.Error(), target) {
			t.Errorf("err = %v, want one naming %s and %s; output:\n%s", err, record, target, out)
		}
		// Given --url, the record plays no part in the error.
		_, err = runSend(t, "--url", target, "--secret", sendTestSecret, "--timeout", "2s")
		if err == nil || strings.Contains(err.Error(), record) {
			t.Errorf("with --url: err = %v, want a failure that does not name %s", err, record)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		ing, srv := newSendTestIngress(t)
		release := make(chan struct{})
		ing.gate = func() { <-release }
		t.Cleanup(func() { close(release) })
		one := filepath.Join(t.TempDir(), "one.json")
		if err := os.WriteFile(one, []byte(`{}`), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := runSend(t, "--url", srv.URL, "--secret", sendTestSecret, "--timeout", "50ms", one)
		if err == nil || !strings.Contains(out, "no answer within 50ms") {
			t.Errorf("err = %v, output:\n%s", err, out)
		}
	})
	t.Run("bad arguments", func(t *testing.T) {
		for _, args := range [][]string{
			{"--repeat", "0"},
			{"--concurrency", "0"},
			{"--timeout", "0s"},
			{"--url", "127.0.0.1:8080/webhooks/whatsapp"},
			{filepath.Join(t.TempDir(), "missing.json")},
			{t.TempDir()}, // a folder without *.json
		} {
			if _, err := runSend(t, append(args, "--secret", sendTestSecret)...); err == nil {
				t.Errorf("send %q succeeded", args)
			}
		}
	})
}

// TestBuiltinSamplesWellFormed checks every built-in sample is a Cloud API
// envelope and that no two message or status items share an id, so each
// sample's events are new to an ingress that has seen the others.
func TestBuiltinSamplesWellFormed(t *testing.T) {
	ids := map[string]string{} // item id → sample
	for _, s := range builtinSamples(t) {
		var doc map[string]any
		if err := json.Unmarshal(s.body, &doc); err != nil {
			t.Errorf("%s: not JSON: %v", s.name, err)
			continue
		}
		if doc["object"] != "whatsapp_business_account" {
			t.Errorf("%s: object = %v", s.name, doc["object"])
		}
		entries, _ := doc["entry"].([]any)
		if len(entries) == 0 {
			t.Errorf("%s: no entry", s.name)
		}
		items := 0
		for _, e := range entries {
			entry, _ := e.(map[string]any)
			if id, _ := entry["id"].(string); id == "" {
				t.Errorf("%s: entry without id", s.name)
			}
			changes, _ := entry["changes"].([]any)
			if len(changes) == 0 {
				t.Errorf("%s: entry without changes", s.name)
			}
			for _, c := range changes {
				change, _ := c.(map[string]any)
				field, _ := change["field"].(string)
				value, _ := change["value"].(map[string]any)
				if field == "" || value == nil {
					t.Errorf("%s: change without field or value", s.name)
					continue
				}
				if field != "messages" {
					items++
					continue
				}
				if value["messaging_product"] != "whatsapp" {
					t.Errorf("%s: messaging_product = %v", s.name, value["messaging_product"])
				}
				meta, _ := value["metadata"].(map[string]any)
				if pn, _ := meta["phone_number_id"].(string); pn == "" {
					t.Errorf("%s: no metadata.phone_number_id", s.name)
				}
				for _, list := range []string{"messages", "statuses"} {
					arr, _ := value[list].([]any)
					for _, it := range arr {
						item, _ := it.(map[string]any)
						id, _ := item["id"].(string)
						items++
						if !strings.HasPrefix(id, "wamid.SAMPLE") {
							t.Errorf("%s: %s id %q is not a wamid.SAMPLE… id", s.name, list, id)
						}
						if prev, dup := ids[id]; dup {
							t.Errorf("%s: id %s already used in %s", s.name, id, prev)
						}
						ids[id] = s.name
					}
				}
			}
		}
		if items == 0 {
			t.Errorf("%s: no message, status or field change", s.name)
		}
	}
}

// TestSendShowsWhy401 sends a sample signed with the wrong secret to a real
// ingress: the line must give the ingress's reason, not the counts of an
// answer that refused the request ("events=0 accepted=0 duplicates=0").
func TestSendShowsWhy401(t *testing.T) {
	e := newOpsEnv(t, false)
	srv, err := ingest.New(ingest.Config{AppSecrets: []string{"the-right-secret"}, Logger: slog.New(slog.DiscardHandler)}, e.store, e.js)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	out, err := runSend(t, "--url", hs.URL+"/webhooks/whatsapp", "--secret", "a-wrong-secret", "samples/01_text.json")
	if err != nil {
		t.Fatalf("send: %v (a 4xx answer is reported, not a failure)\n%s", err, out)
	}
	line := outputLines(out)[0]
	if !strings.HasPrefix(line, "401 ") || !strings.Contains(line, `error "invalid signature"`) || strings.Contains(line, "events=0") {
		t.Errorf("line = %q, want 401 with the ingress's reason", line)
	}
}
