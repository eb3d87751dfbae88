package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/internal/testenv"
)

// devEnv is the environment of a `wagate dev` run: the machine's, less every
// WAGATE_* variable (so that the embedded servers are used), plus extra.
func devEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WAGATE_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

var (
	processedLine = regexp.MustCompile(`msg="wagate: event" key=(wa:[A-Za-z0-9_-]{22})`)
	duplicateLine = regexp.MustCompile(`msg="ingest: duplicate" .*key=(wa:[A-Za-z0-9_-]{22})`)
	natsLine      = regexp.MustCompile(`nats +(nats://127\.0\.0\.1:\d+)`)
	summaryLine   = regexp.MustCompile(`summary: requests=(\d+) .*events=(\d+) accepted=(\d+) duplicates=(\d+)`)
)

func countKeys(re *regexp.Regexp, out string) map[string]int {
	n := map[string]int{}
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		n[m[1]]++
	}
	return n
}

// TestDevRestartKeepsState runs `wagate dev` as a user would: send the
// built-in samples twice, stop it with Ctrl-C, start it again on the same data
// folder, send again. Every event is processed once; every later delivery is a
// duplicate, across the restart.
func TestDevRestartKeepsState(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped in -short mode")
	}
	bin := filepath.Join(binaries(t), "wagate")
	data := t.TempDir()
	port, adminPort := testenv.FreePort(t), testenv.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	// Every duplicate line is counted below: no sampling.
	env := devEnv("WAGATE_DATA_DIR="+data, fmt.Sprintf("WAGATE_HTTP_ADDR=127.0.0.1:%d", port),
		fmt.Sprintf("WAGATE_ADMIN_ADDR=127.0.0.1:%d", adminPort), "WAGATE_LOG_SAMPLE_RATE=-1")

	var logs []*syncWriter
	startDev := func() *exec.Cmd {
		t.Helper()
		out := &syncWriter{w: new(bytes.Buffer)}
		cmd := exec.Command(bin, "dev")
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		logs = append(logs, out)
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_, _ = cmd.Process.Wait()
			if t.Failed() {
				t.Logf("--- wagate dev output:\n%s", tail(out.String(), 6000))
			}
		})
		waitReady(t, admin+"/readyz")
		return cmd
	}
	stopDev := func(cmd *exec.Cmd) {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("wagate dev exited with %v after Ctrl-C, want a clean exit", err)
			}
		case <-time.After(40 * time.Second):
			t.Fatal("wagate dev did not stop within 40s of Ctrl-C")
		}
	}
	send := func() (requests, events, accepted, duplicates int) {
		t.Helper()
		cmd := exec.Command(bin, "send", "--url", base+"/webhooks/whatsapp", "--concurrency", "4")
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("wagate send: %v\n%s", err, out)
		}
		m := summaryLine.FindStringSubmatch(string(out))
		if m == nil {
			t.Fatalf("wagate send printed no summary:\n%s", out)
		}
		for i, n := range []*int{&requests, &events, &accepted, &duplicates} {
			if _, err := fmt.Sscan(m[i+1], n); err != nil {
				t.Fatalf("summary %q: %v", m[0], err)
			}
		}
		return
	}

	dev := startDev()
	if !strings.Contains(logs[0].String(), "app secret") || !strings.Contains(logs[0].String(), "verify token") {
		t.Errorf("wagate dev did not print its verify token and app secret:\n%s", logs[0].String())
	}
	_, events, accepted, dups := send()
	if events == 0 || accepted != events || dups != 0 {
		t.Fatalf("first send: events=%d accepted=%d duplicates=%d, want all accepted", events, accepted, dups)
	}
	if _, e2, a2, d2 := send(); e2 != events || a2 != 0 || d2 != events {
		t.Fatalf("second send: events=%d accepted=%d duplicates=%d, want %d duplicates", e2, a2, d2, events)
	}
	testenv.Eventually(t, 60*time.Second, func() bool {
		return len(countKeys(processedLine, logs[0].String())) == events
	}, "wagate dev logged %d processed events, want %d", len(countKeys(processedLine, logs[0].String())), events)
	stopDev(dev)

	dev = startDev()
	if _, e3, a3, d3 := send(); e3 != events || a3 != 0 || d3 != events {
		t.Fatalf("send after restart: events=%d accepted=%d duplicates=%d, want %d duplicates", e3, a3, d3, events)
	}
	// Wait until the worker is idle, then count.
	m := natsLine.FindStringSubmatch(logs[1].String())
	if m == nil {
		t.Fatalf("wagate dev printed no nats URL:\n%s", logs[1].String())
	}
	nc, err := nats.Connect(m[1])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	testenv.Eventually(t, 30*time.Second, func() bool {
		cons, err := js.Consumer(ctx, "WAGATE_EVENTS", "wagate-workers")
		if err != nil {
			return false
		}
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, "the worker of the restarted wagate dev never became idle")
	stopDev(dev)

	all := logs[0].String() + logs[1].String()
	processed := countKeys(processedLine, all)
	if len(processed) != events {
		t.Errorf("%d distinct keys processed, want %d", len(processed), events)
	}
	for k, n := range processed {
		if n != 1 {
			t.Errorf("key %s processed %d times, want once", k, n)
		}
	}
	duplicates := countKeys(duplicateLine, all)
	total := 0
	for k, n := range duplicates {
		total += n
		if processed[k] != 1 {
			t.Errorf("duplicate logged for key %s, which was not processed", k)
		}
	}
	if total != 2*events {
		t.Errorf("%d duplicates logged, want %d (two later deliveries of each event)", total, 2*events)
	}
	if _, err := os.Stat(filepath.Join(data, "secrets.json")); err != nil {
		t.Errorf("secrets not kept in the data folder: %v", err)
	}
}

// TestDevStoresABodyAtTheLimit: `wagate dev` accepts bodies up to
// WAGATE_BODY_LIMIT (4 MiB), so its embedded server must be able to store
// the event of any such body. A signed, valid envelope holding one large item
// must be answered 200 (G6: never a 5xx loop, which makes Meta retry for 7
// days), not 503 because the event is over NATS's default 1 MB max_payload.
func TestDevStoresABodyAtTheLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped in -short mode")
	}
	bin := filepath.Join(binaries(t), "wagate")
	data := t.TempDir()
	port, adminPort := testenv.FreePort(t), testenv.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	admin := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	env := devEnv("WAGATE_DATA_DIR="+data, fmt.Sprintf("WAGATE_HTTP_ADDR=127.0.0.1:%d", port),
		fmt.Sprintf("WAGATE_ADMIN_ADDR=127.0.0.1:%d", adminPort), "WAGATE_META_APP_SECRET=big-body-secret")
	out := &syncWriter{w: new(bytes.Buffer)}
	cmd := exec.Command(bin, "dev")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		_, _ = cmd.Process.Wait()
		if t.Failed() {
			t.Logf("--- wagate dev output:\n%s", tail(out.String(), 3000))
		}
	})
	waitReady(t, admin+"/readyz")

	// One text message of 2.5 MB: within Meta's 3 MB and the 4 MiB limit.
	text := strings.Repeat("a", 2500000)
	body := []byte(`{"object":"whatsapp_business_account","entry":[{"id":"200000000000001","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550000000","phone_number_id":"100000000000001"},"messages":[{"from":"15550000001","id":"wamid.BIG1","timestamp":"1750000000","type":"text","text":{"body":"` + text + `"}}]}}]}]}`)
	file := filepath.Join(t.TempDir(), "big.json")
	if err := os.WriteFile(file, body, 0o600); err != nil {
		t.Fatal(err)
	}
	send := exec.Command(bin, "send", "--url", base+"/webhooks/whatsapp", file)
	send.Env = env
	res, err := send.CombinedOutput()
	if err != nil || !strings.Contains(string(res), "200=1") {
		t.Fatalf("wagate send of a 2.5 MB body: %v\n%s", err, res)
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		return strings.Contains(out.String(), "id=wamid.BIG1")
	}, "the large event was not processed")
}
