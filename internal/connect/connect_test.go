package connect

import (
	"context"
	"encoding/json"
	"github.com/wagate/wagate/internal/config"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// hungRedis accepts connections and reads whatever is sent, but never
// answers: a Redis that is stopped (SIGSTOP), swapping, or behind a network
// partition that drops packets.
func hungRedis(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	return ln.Addr().String()
}

// The ingress bounds each dedupe store call with StoreTimeout (2 s) so that
// its fail-open or fail-closed policy answers in time, and /readyz bounds
// its ping with 2 s: the client must honour the context's deadline, not only
// its own 3 s socket timeouts.
func TestRedisHonoursContextDeadline(t *testing.T) {
	rc, err := Redis("redis://" + hungRedis(t))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	for range 2 { // a fresh connection, then a pooled one
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		start := time.Now()
		err := rc.Ping(ctx).Err()
		cancel()
		took := time.Since(start)
		if err == nil {
			t.Fatal("ping of a hung Redis succeeded")
		}
		if took > time.Second {
			t.Fatalf("ping of a hung Redis with a 300ms deadline took %v (err %v)", took, err)
		}
	}
}

// A URL's password never reaches an error, which the commands print.
func TestNATSErrorHidesPassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	for _, u := range []string{
		"nats://wagate:hunter2@127.0.0.1:1",
		"nats://hunter2@127.0.0.1:1", // token authentication
		"nats://127.0.0.1:2,nats://wagate:hunter2@127.0.0.1:1",
	} {
		_, _, err := NATS(ctx, u, "test", slog.New(slog.DiscardHandler))
		if err == nil {
			t.Fatal("connected to nothing")
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

// go-redis logs dial failures through its own logger; with WAGATE_LOG_FORMAT
// json every line on stderr must still be a JSON record (log shippers drop
// or mangle the others).
func TestRedisLogsAreStructured(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	defer func() { os.Stderr = stderr }()
	_ = Logger(config.Config{LogLevel: "info", LogFormat: "json"})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	rc, err := Redis("redis://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if rc.Ping(ctx).Err() == nil {
		t.Fatal("ping of a closed port succeeded")
	}
	_ = rc.Close()
	os.Stderr = stderr
	_ = w.Close()
	out, _ := io.ReadAll(r)
	if !strings.Contains(string(out), "failed to dial") {
		t.Errorf("go-redis's dial failure is not in the structured log: %q", out)
	}
	for l := range strings.Lines(string(out)) {
		if !json.Valid([]byte(l)) {
			t.Errorf("stderr line is not JSON: %q", l)
		}
	}
}
