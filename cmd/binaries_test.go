package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/testenv"
)

// The version and revision the test binaries are stamped with by -ldflags.
const (
	e2eVersion  = "v0.0.0-e2e"
	e2eRevision = "0123456789abcdef0123456789abcdef01234567"
)

// trap is a TCP listener that counts the connections made to it: a
// command that must not connect anywhere is pointed at it.
type trap struct {
	ln    net.Listener
	conns atomic.Int64
}

func newTrap(t *testing.T) *trap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := &trap{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tr.conns.Add(1)
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return tr
}

func (tr *trap) addr() string { return tr.ln.Addr().String() }

// runBinary runs bin with args and env (over the test's environment),
// bounded by 30 s, and returns its exit code and combined output.
func runBinary(t *testing.T, bin string, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %s did not exit within 30s (it ran instead of answering); output:\n%s", filepath.Base(bin), strings.Join(args, " "), tail(string(out), 2000))
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s: %v", bin, err)
	}
	return code, string(out)
}

// TestBinariesAnswerHelpAndVersion checks that --help, -h and --version of
// every binary print and exit 0 without connecting to NATS or Redis or
// serving, however complete the configuration: bin/worker --help used to
// start a real worker.
func TestBinariesAnswerHelpAndVersion(t *testing.T) {
	dir := binaries(t)
	nats, redis := newTrap(t), newTrap(t)
	httpPort, workerPort, adminPort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	env := []string{
		"WAGATE_NATS_URL=nats://" + nats.addr(),
		"WAGATE_REDIS_URL=redis://" + redis.addr() + "/0",
		fmt.Sprintf("WAGATE_HTTP_ADDR=127.0.0.1:%d", httpPort),
		fmt.Sprintf("WAGATE_WORKER_HTTP_ADDR=127.0.0.1:%d", workerPort),
		fmt.Sprintf("WAGATE_ADMIN_ADDR=127.0.0.1:%d", adminPort),
		"WAGATE_HANDLER=log",
		"WAGATE_META_APP_SECRET=s",
		"WAGATE_DATA_DIR=" + t.TempDir(),
	}
	for _, name := range []string{"ingress", "worker", "wagate"} {
		for _, arg := range []string{"--help", "-h", "--version"} {
			code, out := runBinary(t, filepath.Join(dir, name), env, arg)
			if code != 0 {
				t.Errorf("%s %s: exit %d, want 0; output:\n%s", name, arg, code, out)
			}
			want := "Usage:"
			if arg == "--version" {
				want = name + " " + e2eVersion + " (revision " + e2eRevision + ") go"
			}
			if !strings.Contains(out, want) {
				t.Errorf("%s %s: output lacks %q:\n%s", name, arg, want, tail(out, 1000))
			}
		}
	}
	if n := nats.conns.Load() + redis.conns.Load(); n != 0 {
		t.Errorf("%d connections to NATS or Redis during --help and --version", n)
	}
	for _, port := range []int{httpPort, workerPort, adminPort} {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
			_ = c.Close()
			t.Errorf("something serves on 127.0.0.1:%d after --help and --version", port)
		}
	}
}

// TestWorkerRequiresHandler checks that bin/worker without WAGATE_HANDLER
// refuses to start, before connecting, with a message naming the variable,
// its flag and the choices: it used to run the log handler and mark every
// event done.
func TestWorkerRequiresHandler(t *testing.T) {
	dir := binaries(t)
	nats, redis := newTrap(t), newTrap(t)
	code, out := runBinary(t, filepath.Join(dir, "worker"), []string{
		"WAGATE_HANDLER=",
		"WAGATE_NATS_URL=nats://" + nats.addr(),
		"WAGATE_REDIS_URL=redis://" + redis.addr() + "/0",
	})
	if code == 0 {
		t.Fatalf("worker without a handler exited 0; output:\n%s", out)
	}
	for _, w := range []string{"WAGATE_HANDLER", "--handler", "forward", "log"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if n := nats.conns.Load() + redis.conns.Load(); n != 0 {
		t.Errorf("%d connections before refusing to start", n)
	}
}

// TestFlagsOverrideEnvironment starts an ingress and a worker whose
// environment points at servers that do not exist and whose flags point at
// the real ones: they must become ready on the flags' addresses, say at
// start which handler runs and which build they are, warn that Redis has no
// AOF, and export wagate_build_info.
func TestFlagsOverrideEnvironment(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes: skipped in -short mode")
	}
	dir := binaries(t)
	r := testenv.StartRedis(t) // without AOF
	natsURL := testenv.NATSURL(t)
	dead := newTrap(t)
	env := []string{
		"WAGATE_NATS_URL=nats://" + dead.addr(),
		"WAGATE_REDIS_URL=redis://" + dead.addr() + "/0",
		"WAGATE_HTTP_ADDR=127.0.0.1:1",
		"WAGATE_WORKER_HTTP_ADDR=127.0.0.1:1",
		"WAGATE_ADMIN_ADDR=127.0.0.1:1",
		"WAGATE_HANDLER=forward", "WAGATE_FORWARD_URL=http://" + dead.addr(),
		"WAGATE_EVENTS_STREAM=FLAGS_EVENTS", "WAGATE_DLQ_STREAM=FLAGS_DLQ", "WAGATE_CONSUMER=flags-workers",
	}
	ip, ap, wp := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	ing := startArgs(t, filepath.Join(dir, "ingress"), "ingress", env,
		"--nats-url", natsURL, "--redis-url", r.URL(), "--http-addr", fmt.Sprintf("127.0.0.1:%d", ip),
		"--admin-addr", fmt.Sprintf("127.0.0.1:%d", ap), "--meta-app-secret", "s")
	wrk := startArgs(t, filepath.Join(dir, "worker"), "worker", env,
		"--nats-url", natsURL, "--redis-url", r.URL(), "--worker-http-addr", fmt.Sprintf("127.0.0.1:%d", wp), "--handler=log")
	ibase, wbase := fmt.Sprintf("http://127.0.0.1:%d", ap), fmt.Sprintf("http://127.0.0.1:%d", wp)
	waitReady(t, ibase+"/readyz")
	waitReady(t, wbase+"/readyz")
	for _, p := range []*process{ing, wrk} {
		log := p.cmd.Stdout.(*syncWriter).String()
		if !strings.Contains(log, "appendonly") || !strings.Contains(log, "G2") {
			t.Errorf("%s: no warning about Redis without AOF:\n%s", p.name, tail(log, 2000))
		}
		if !strings.Contains(log, `"version"`) {
			t.Errorf("%s: start-up line names no version:\n%s", p.name, tail(log, 2000))
		}
	}
	if log := wrk.cmd.Stdout.(*syncWriter).String(); !strings.Contains(log, `"handler":"log"`) {
		t.Errorf("worker: start-up line does not say the log handler runs:\n%s", tail(log, 2000))
	}
	for _, base := range []string{ibase, wbase} {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(body), "wagate_build_info{") || !strings.Contains(string(body), `revision="`+e2eRevision+`"`) {
			t.Errorf("%s/metrics: no wagate_build_info with a revision label", base)
		}
	}
	if n := dead.conns.Load(); n != 0 {
		t.Errorf("%d connections to the environment's servers: the flags did not override them", n)
	}
}

// startArgs is start with command-line arguments.
func startArgs(t *testing.T, bin, name string, env []string, args ...string) *process {
	t.Helper()
	var logBuf bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = &syncWriter{w: &logBuf}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("--- %s log:\n%s", name, tail(cmd.Stdout.(*syncWriter).String(), 4000))
		}
	})
	return &process{name: name, cmd: cmd, log: &logBuf}
}
