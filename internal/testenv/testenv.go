// Package testenv gives tests real servers: Redis and NATS with JetStream.
//
// Each helper takes, in order: the address in the environment
// (WAGATE_TEST_REDIS_URL, WAGATE_TEST_NATS_URL) when set; else a container
// from testcontainers-go when a Docker engine answers; else a private
// redis-server from PATH on a free loopback port, or an in-process NATS server
// from the nats-server/v2 module. When none can be had the test is skipped,
// except under CI=true, where it fails: CI never skips a test for want of a
// server.
//
// For deployments beyond one node, StartRedisCluster and StartRedisSentinel
// run a 3-master Redis Cluster and a Sentinel setup from redis-server (and
// redis-cli) on loopback, with planned and unplanned failovers;
// MakeTLSFiles, StartRedisTLS, StartNATSSecure and StartNATSNKey run servers
// that require TLS with client certificates, an operator-signed account or
// an NKey.
package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/redis/go-redis/v9"
	"github.com/testcontainers/testcontainers-go"
	tcnats "github.com/testcontainers/testcontainers-go/modules/nats"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"
)

// unavailable skips the test, or fails it under CI.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("testenv: %s (CI=true: a test never skips for want of a server)", msg)
	}
	t.Skipf("testenv: %s", msg)
}

var (
	dockerOnce sync.Once
	dockerOK   bool
)

// docker reports whether a Docker engine answers.
func docker() bool {
	dockerOnce.Do(func() {
		if os.Getenv("WAGATE_TEST_NO_DOCKER") != "" {
			return
		}
		if _, err := exec.LookPath("docker"); err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		dockerOK = exec.CommandContext(ctx, "docker", "info").Run() == nil
		if dockerOK {
			p, err := testcontainers.NewDockerProvider()
			dockerOK = err == nil && p.Health(ctx) == nil
		}
	})
	return dockerOK
}

// RedisURL returns the URL of a real Redis for t, flushed of nothing: tests
// must use keys of their own.
func RedisURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("WAGATE_TEST_REDIS_URL"); u != "" {
		return u
	}
	if docker() {
		ctx := context.Background()
		c, err := tcredis.Run(ctx, "redis:7")
		if err == nil {
			t.Cleanup(func() { _ = testcontainers.TerminateContainer(c) })
			u, err := c.ConnectionString(ctx)
			if err == nil {
				return u
			}
		}
		t.Logf("testenv: redis container: %v; trying redis-server", err)
	}
	return StartRedis(t).URL()
}

// NATSURL returns the URL of a real NATS server with JetStream for t.
func NATSURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("WAGATE_TEST_NATS_URL"); u != "" {
		return u
	}
	if docker() {
		ctx := context.Background()
		c, err := tcnats.Run(ctx, "nats:2.11")
		if err == nil {
			t.Cleanup(func() { _ = testcontainers.TerminateContainer(c) })
			u, err := c.ConnectionString(ctx)
			if err == nil {
				return u
			}
		}
		t.Logf("testenv: nats container: %v; using an in-process server", err)
	}
	return StartNATS(t).ClientURL()
}

// Redis is a private redis-server process on a loopback port, stopped at the
// end of the test. Stop and Start let fault tests take it down and back.
type Redis struct {
	t       testing.TB
	port    int
	dir     string
	args    []string
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  <-chan struct{} // closed when cmd has exited
	started bool            // the first start succeeded: the ports are the server's
	hold    *portHold       // keeps the port while stopped
}

// StartRedis starts a private redis-server from PATH, with extra
// configuration args such as "--appendonly", "yes". Data lives in a
// temporary folder kept across Stop and Start.
func StartRedis(t testing.TB, args ...string) *Redis {
	t.Helper()
	_, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(t, "no Redis: WAGATE_TEST_REDIS_URL unset, no Docker engine, no redis-server on PATH")
	}
	r := &Redis{t: t, port: FreePort(t), dir: t.TempDir(), args: args}
	r.Start()
	t.Cleanup(func() {
		r.Stop()
		r.mu.Lock()
		defer r.mu.Unlock()
		r.hold.release()
		r.hold = nil
	})
	return r
}

// URL is the server's redis:// URL.
func (r *Redis) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

// Addr is the server's host:port.
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// portFlags are the redis-server flags whose value is a port chosen by
// FreePort: the first start moves them, with the main port, to fresh ones
// when the server exits because another process took one meanwhile.
var portFlags = []string{"--tls-port", "--cluster-port"}

// Start starts the server (again) and waits until it answers PING. The first
// start, if redis-server exits before answering (a port FreePort gave was
// taken by another process before redis-server bound it), tries again on
// fresh ports, up to five times; Addr and Arg then name the ports in use.
func (r *Redis) Start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return
	}
	r.hold.release()
	r.hold = nil
	for attempt := 1; ; attempt++ {
		err := r.startOnce()
		if err == nil {
			r.started = true
			return
		}
		if r.started || attempt == 5 {
			r.t.Fatalf("testenv: redis-server on %s did not answer: %v", r.Addr(), err)
		}
		r.port = FreePort(r.t)
		for i := 0; i+1 < len(r.args); i++ {
			if slices.Contains(portFlags, r.args[i]) {
				r.args[i+1] = strconv.Itoa(FreePort(r.t))
			}
		}
	}
}

// startOnce starts redis-server and waits for its PING, or returns why not
// (it exited, or did not answer within 10 s), with no process left; r.mu is
// held.
func (r *Redis) startOnce() error {
	args := append([]string{
		"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--dir", r.dir, "--save", "", "--appendonly", "no",
		"--logfile", filepath.Join(r.dir, "redis.log"),
	}, r.args...)
	cmd, exited, err := startPinged(r.t, r.Addr(), "redis-server", args...)
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
		return fmt.Errorf("%w; its log ends: %s", err, tail(log, 300))
	}
	r.cmd, r.exited = cmd, exited
	return nil
}

// startPinged starts name with args and waits until the Redis protocol
// server it runs answers PING on addr, for at most 10 s. It returns the
// process and a channel closed when it has exited; or, when the process
// exits first or does not answer in time (it is then killed), an error, with
// no process left.
func startPinged(t testing.TB, addr, name string, args ...string) (*exec.Cmd, <-chan struct{}, error) {
	cmd := exec.Command(name, args...)
	if err := cmd.Start(); err != nil {
		unavailable(t, "start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return cmd, exited, nil
		}
		select {
		case <-exited:
			return nil, nil, fmt.Errorf("%s exited: %v", name, err)
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return nil, nil, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tail returns the last n bytes of b.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Arg returns the value that follows flag in the server's extra arguments
// (after Start, the port actually used for a port flag), or "".
func (r *Redis) Arg(flag string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 0; i+1 < len(r.args); i++ {
		if r.args[i] == flag {
			return r.args[i+1]
		}
	}
	return ""
}

// Stop kills the server (SIGKILL) and waits for it to exit.
func (r *Redis) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.exited
	r.cmd = nil
	r.hold = holdPort(r.Addr())
}

// NATS is an in-process NATS server with JetStream and file storage.
type NATS struct {
	t    testing.TB
	opts server.Options
	mu   sync.Mutex
	srv  *server.Server
	hold *portHold // keeps the port while shut down
}

// StartNATS starts an in-process NATS server with JetStream on a free
// loopback port, storing under a temporary folder kept across Restart. It is
// shut down at the end of the test.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	return newNATS(t, server.Options{})
}

// ClientURL is the server's nats:// URL; it stays the same across Restart.
func (n *NATS) ClientURL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.opts.Port) }

// Server returns the running server, or nil when shut down.
func (n *NATS) Server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// Start starts the server (again, with the same port and storage) and waits
// until it is ready for connections.
func (n *NATS) Start() {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		return
	}
	n.hold.release()
	n.hold = nil
	opts := n.opts
	s, err := server.NewServer(&opts)
	if err != nil {
		n.t.Fatalf("testenv: nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		n.t.Fatalf("testenv: nats server on port %d not ready", n.opts.Port)
	}
	n.srv = s
}

// Shutdown stops the server and waits for it.
func (n *NATS) Shutdown() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil {
		return
	}
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	n.srv = nil
	n.hold = holdPort(fmt.Sprintf("127.0.0.1:%d", n.opts.Port))
}

// portHold keeps a stopped server's port from being taken by another test's
// server (test packages run in parallel), so that clients of the stopped
// server see it down, not some other server. It accepts connections and
// closes them at once, as a server that is going away would.
type portHold struct {
	ln   net.Listener
	done chan struct{}
}

// holdPort listens on addr; it returns nil when the port is already taken.
func holdPort(addr string) *portHold {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil
	}
	h := &portHold{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	return h
}

// release frees the port; nil-safe.
func (h *portHold) release() {
	if h == nil {
		return
	}
	_ = h.ln.Close()
	<-h.done
}

// handedOut holds every port FreePort returned in this process.
var handedOut sync.Map

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that FreePort has not returned before in this process: the kernel may hand
// the same ephemeral port to two listeners opened one after the other, and
// two servers of one test (an ingress's webhook and admin ports) must not
// both be given it.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 1000 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testenv: free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if _, taken := handedOut.LoadOrStore(port, true); !taken {
			return port
		}
	}
	t.Fatalf("testenv: no free port that was not handed out before")
	return 0
}

// Eventually polls cond every 10 ms until it returns true or timeout passes,
// then fails the test with msg. It never sleeps longer than needed.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("testenv: timed out after %v: "+msg, append([]any{timeout}, args...)...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
