// Package e2e runs the built wagate binaries as separate processes against
// real Redis and a real NATS server with JetStream, and checks the contract
// end to end: every event of every payload fixture, and of every body of the
// peer corpus, is forwarded exactly once with its key, however often and
// however concurrently it is delivered.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/ingest"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
)

// The providers' secrets.
const (
	secret         = "e2e-app-secret"
	wasenderSecret = "e2e-wasender-secret"
	wahaKey        = "e2e-waha-hmac-key"
	evolutionToken = "e2e-evolution-token"
)

// repeatWindow is the ingress's WAGATE_REPEAT_WINDOW in this test: long, so
// that the keys of transient events computed here before the run are those
// the ingress makes during it (a window starts every ten years).
const repeatWindow = 10 * 365 * 24 * time.Hour

// secretOf is the secret the ingress is given for provider.
func secretOf(provider string) string {
	switch provider {
	case messages.ProviderWASender:
		return wasenderSecret
	case messages.ProviderWAHA:
		return wahaKey
	case messages.ProviderEvolution:
		return evolutionToken
	}
	return secret
}

// sink records every forward of the worker's forward handler.
type sink struct {
	mu       sync.Mutex
	forwards []forward
}

type forward struct {
	IdempotencyKey string
	Fence          int64
	Event          messages.Event
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
	fence, _ := strconv.ParseInt(r.Header.Get("Wagate-Fencing-Token"), 10, 64)
	s.mu.Lock()
	s.forwards = append(s.forwards, forward{IdempotencyKey: r.Header.Get("Idempotency-Key"), Fence: fence, Event: ev})
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (s *sink) snapshot() []forward {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]forward(nil), s.forwards...)
}

// build compiles the commands once per test binary run.
var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "wagate-e2e-bin")
		if buildErr != nil {
			return
		}
		// Stamped as the Makefile and the Dockerfile stamp them (see
		// TestBinariesAnswerHelpAndVersion).
		const bi = "github.com/wagate/wagate/internal/buildinfo"
		cmd := exec.Command("go", "build", "-ldflags", "-X "+bi+".version="+e2eVersion+" -X "+bi+".revision="+e2eRevision,
			"-o", buildDir+string(os.PathSeparator), "./ingress", "./worker", "./wagate")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildDir
}

// process is one running binary, killed at the end of the test.
type process struct {
	name string
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

func start(t *testing.T, bin, name string, env ...string) *process {
	t.Helper()
	var logBuf bytes.Buffer
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = &syncWriter{w: &logBuf}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, log: &logBuf}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("--- %s log:\n%s", name, tail(cmd.Stdout.(*syncWriter).String(), 4000))
		}
	})
	return p
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "%s never answered 200", url)
}

// post sends a fixture to its provider's route on the ingress at base,
// signed as that provider signs it.
func post(base string, f fixture) (int, error) {
	req, err := http.NewRequest(http.MethodPost, base+ingest.Route(f.provider), bytes.NewReader(f.body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if err := ingest.SignRequest(req.Header, f.provider, f.body, secretOf(f.provider)); err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// fixture is one payload file and the provider whose route it goes to.
type fixture struct {
	provider string
	body     []byte
	peer     bool // from the peer corpus, messages/testdata/peers
}

// fixturePrefixes maps the payload files of each provider to it: mixed
// traffic from every provider the ingress serves.
var fixturePrefixes = map[string]string{
	"meta_":      messages.ProviderCloud,
	"wasender_":  messages.ProviderWASender,
	"waha_":      messages.ProviderWAHA,
	"evolution_": messages.ProviderEvolution,
}

// fixtures returns every payload fixture of every provider with the keys its
// events must be forwarded under. Some fixtures reuse an id on one account
// (see messages/testdata/README.md): one key then stands for several items,
// and whichever delivery was stored first is the one forwarded.
func fixtures(t *testing.T) (bodies map[string]fixture, want map[string][]messages.Event) {
	t.Helper()
	bodies = map[string]fixture{}
	want = map[string][]messages.Event{}
	type glob struct{ pattern, provider string }
	var globs []glob
	for prefix, provider := range fixturePrefixes {
		globs = append(globs,
			glob{filepath.Join("..", "messages", "testdata", prefix+"*.json"), provider},
			glob{filepath.Join("..", "messages", "testdata", "peers", provider, "*.json"), provider})
	}
	for _, g := range globs {
		provider := g.provider
		files, err := filepath.Glob(g.pattern)
		if err != nil || len(files) == 0 {
			t.Fatalf("no %s fixtures: %v", g.pattern, err)
		}
		parse, ok := messages.Parser(provider)
		if !ok {
			t.Fatalf("no parser for %s", provider)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			evs, err := parse(b, time.Now())
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(evs) == 0 {
				t.Fatalf("%s: no events", f)
			}
			messages.Window(evs, repeatWindow)
			for _, ev := range evs {
				want[ev.Key] = append(want[ev.Key], ev)
			}
			name, _ := filepath.Rel(filepath.Join("..", "messages", "testdata"), f)
			bodies[name] = fixture{provider: provider, body: b, peer: strings.HasPrefix(name, "peers")}
		}
	}
	return bodies, want
}

// TestEndToEndExactlyOnce runs the same corpus through two ingresses and
// two workers on each dedupe backend, one after another.
func TestEndToEndExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped in -short mode")
	}
	dir := binaries(t)
	for _, backend := range []string{"redis", "nats", "postgres", "dynamodb"} {
		t.Run(backend, func(t *testing.T) {
			endToEnd(t, dir, backendEnv(t, dir, backend))
		})
	}
}

// backendEnv returns the environment that selects backend for every
// process, with its server started (or its schema made) for t and its table
// created by `wagate dedupe init`.
func backendEnv(t *testing.T, dir, backend string) []string {
	t.Helper()
	var env []string
	switch backend {
	case "redis":
		env = []string{"WAGATE_DEDUPE_BACKEND=redis", "WAGATE_REDIS_URL=" + testenv.RedisURL(t)}
	case "nats":
		env = []string{"WAGATE_DEDUPE_BACKEND=nats"}
	case "postgres":
		env = []string{"WAGATE_DEDUPE_BACKEND=postgres", "WAGATE_POSTGRES_URL=" + testenv.PostgresURL(t)}
	case "dynamodb":
		env = []string{"WAGATE_DEDUPE_BACKEND=dynamodb", "WAGATE_DYNAMODB_ENDPOINT=" + testenv.DynamoDBEndpoint(t),
			"AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test"}
	default:
		t.Fatalf("unknown backend %q", backend)
	}
	if backend == "postgres" || backend == "dynamodb" {
		cmd := exec.Command(filepath.Join(dir, "wagate"), "dedupe", "init")
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("wagate dedupe init: %v\n%s", err, out)
		}
	}
	return env
}

// endToEnd posts the corpus once, again, and 20 times at once across both
// ingresses, and checks that each distinct event was forwarded exactly once.
func endToEnd(t *testing.T, dir string, backend []string) {
	natsURL := testenv.NATSURL(t)

	var sk sink
	sinkSrv := httptest.NewServer(&sk)
	t.Cleanup(sinkSrv.Close)

	common := []string{
		"WAGATE_NATS_URL=" + natsURL,
		"WAGATE_META_APP_SECRET=" + secret,
		"WAGATE_WASENDER_SECRET=" + wasenderSecret,
		"WAGATE_WAHA_HMAC_KEY=" + wahaKey,
		"WAGATE_EVOLUTION_TOKEN=" + evolutionToken,
		"WAGATE_REPEAT_WINDOW=" + repeatWindow.String(),
		"WAGATE_META_VERIFY_TOKEN=e2e-verify",
		"WAGATE_LOG_LEVEL=debug",
	}
	common = append(common, backend...)
	var ingress []string
	for i := range 2 {
		port, adminPort := testenv.FreePort(t), testenv.FreePort(t)
		start(t, filepath.Join(dir, "ingress"), fmt.Sprintf("ingress-%d", i),
			append(common, fmt.Sprintf("WAGATE_HTTP_ADDR=127.0.0.1:%d", port), fmt.Sprintf("WAGATE_ADMIN_ADDR=127.0.0.1:%d", adminPort))...)
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort))
		ingress = append(ingress, base)
	}
	for i := range 2 {
		port := testenv.FreePort(t)
		start(t, filepath.Join(dir, "worker"), fmt.Sprintf("worker-%d", i),
			append(common,
				"WAGATE_HANDLER=forward",
				"WAGATE_FORWARD_URL="+sinkSrv.URL,
				"WAGATE_WORKER_CONCURRENCY=4",
				fmt.Sprintf("WAGATE_WORKER_HTTP_ADDR=127.0.0.1:%d", port))...)
		waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
	}

	bodies, want := fixtures(t)
	names := make([]string, 0, len(bodies))
	for n := range bodies {
		names = append(names, n)
	}
	sort.Strings(names)

	expect200 := func(name string, base string) {
		t.Helper()
		code, err := post(base, bodies[name])
		if err != nil || code != http.StatusOK {
			t.Errorf("POST %s to %s: code %d err %v, want 200", name, base, code, err)
		}
	}
	// Each fixture once, then again one after another, alternating
	// ingresses; then 20 copies of it at the same moment, across both.
	var fixtureNames, peerNames []string
	for _, n := range names {
		if bodies[n].peer {
			peerNames = append(peerNames, n)
		} else {
			fixtureNames = append(fixtureNames, n)
		}
	}
	for round := range 2 {
		for i, n := range fixtureNames {
			expect200(n, ingress[(i+round)%2])
		}
	}
	for _, n := range fixtureNames {
		var wg sync.WaitGroup
		startGun := make(chan struct{})
		for c := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-startGun
				code, err := post(ingress[c%2], bodies[n])
				if err != nil || code != http.StatusOK {
					t.Errorf("concurrent POST %s: code %d err %v, want 200", n, code, err)
				}
			}()
		}
		close(startGun)
		wg.Wait()
	}
	// The peer corpus: every body twice at the same moment, one copy to
	// each ingress, 16 bodies in flight at a time; then all of it again.
	for range 2 {
		sem := make(chan struct{}, 16)
		var wg sync.WaitGroup
		for _, n := range peerNames {
			sem <- struct{}{}
			wg.Add(2)
			startGun := make(chan struct{})
			for c := range 2 {
				go func() {
					defer wg.Done()
					<-startGun
					code, err := post(ingress[c], bodies[n])
					if err != nil || code != http.StatusOK {
						t.Errorf("concurrent POST %s: code %d err %v, want 200", n, code, err)
					}
					if c == 0 {
						<-sem
					}
				}()
			}
			close(startGun)
		}
		wg.Wait()
	}

	// Wait until every expected key was forwarded and the consumer is idle.
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
		if len(got) < len(want) {
			return false
		}
		cons, err := js.Consumer(ctx, "WAGATE_EVENTS", "wagate-workers")
		if err != nil {
			return false
		}
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, "sink got %d forwards, want %d distinct keys", len(sk.snapshot()), len(want))

	// Exactly once, with the right key, and nothing else.
	seen := map[string]int{}
	for _, f := range sk.snapshot() {
		seen[f.Event.Key]++
		if f.IdempotencyKey != f.Event.Key {
			t.Errorf("forward of %s: Idempotency-Key %q, want the event key", f.Event.Key, f.IdempotencyKey)
		}
		if f.Fence < 1 {
			t.Errorf("forward of %s: fencing token %d, want ≥ 1", f.Event.Key, f.Fence)
		}
		candidates, ok := want[f.Event.Key]
		if !ok {
			t.Errorf("forward of unexpected key %s (identity %q)", f.Event.Key, f.Event.Identity)
			continue
		}
		match := false
		for _, w := range candidates {
			match = match || (f.Event.Identity == w.Identity && f.Event.Kind == w.Kind && bytes.Equal(f.Event.Item, w.Item))
		}
		if !match {
			t.Errorf("forward of %s: identity %q kind %s item %s: matches no fixture item with that key", f.Event.Key, f.Event.Identity, f.Event.Kind, f.Event.Item)
		}
	}
	for k, w := range want {
		if seen[k] != 1 {
			t.Errorf("key %s (%s): forwarded %d times, want exactly 1", k, w[0].Identity, seen[k])
		}
	}
	// Mixed traffic: every provider's events went through, each exactly once.
	wantBy, gotBy := map[string]int{}, map[string]int{}
	for _, w := range want {
		wantBy[w[0].Provider]++
	}
	for _, f := range sk.snapshot() {
		gotBy[f.Event.Provider]++
	}
	for _, provider := range fixturePrefixes {
		if wantBy[provider] == 0 || gotBy[provider] != wantBy[provider] {
			t.Errorf("%s: %d forwards, want %d (one per distinct event)", provider, gotBy[provider], wantBy[provider])
		}
	}
	stream, err := js.Stream(ctx, "WAGATE_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(len(want)) {
		t.Errorf("events stream holds %d messages, want %d (one per distinct event)", info.State.Msgs, len(want))
	}
	peers := 0
	for _, b := range bodies {
		if b.peer {
			peers++
		}
	}
	t.Logf("%d bodies (%d of the peer corpus), %d distinct events (%v by provider), %d POSTs, %d forwards",
		len(bodies), peers, len(want), wantBy, (len(bodies)-peers)*22+peers*4, len(sk.snapshot()))
}
