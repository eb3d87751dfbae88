package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/connect"
	"github.com/wagate/wagate/messages/streams"
)

// benchSecret is the App Secret of the ingress under test.
const benchSecret = "bench-app-secret"

// env is the servers of a run and the bench's own clients of them.
type env struct {
	redis, nats, ingress, echo *process

	ingressURL, echoURL string
	redisURL, natsURL   string

	rdb   *redis.Client
	nc    *nats.Conn
	js    jetstream.JetStream
	store dedupe.Store
	sc    streams.Config
}

// startEnv starts Redis and NATS (unless natsURL names one), and with http
// the ingress and the echo server, and connects the bench's clients with the settings the ingress
// uses (internal/connect).
func startEnv(ctx context.Context, dir, ingressBin, natsBin, natsURL string, http bool) (_ *env, err error) {
	e := &env{sc: streams.Config{}.WithDefaults()}
	defer func() {
		if err != nil {
			e.stop()
		}
	}()
	var redisURL string
	if e.redis, redisURL, err = startRedis(ctx, dir, "redis"); err != nil {
		return nil, err
	}
	if natsURL == "" {
		if e.nats, natsURL, err = startNATS(ctx, dir, natsBin); err != nil {
			return nil, err
		}
	}
	e.redisURL, e.natsURL = redisURL, natsURL
	if e.rdb, err = connect.Redis(redisURL); err != nil {
		return nil, err
	}
	e.store = dedupe.NewRedis(e.rdb, dedupe.RedisOptions{})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if e.nc, e.js, err = connect.NATS(ctx, natsURL, "wagate-bench", quiet); err != nil {
		return nil, err
	}
	if err = streams.Ensure(ctx, e.js, e.sc); err != nil {
		return nil, err
	}
	if !http {
		return e, nil
	}
	if e.ingress, e.ingressURL, err = startIngress(ctx, dir, ingressBin, redisURL, natsURL, benchSecret); err != nil {
		return nil, err
	}
	if e.echo, e.echoURL, err = startEcho(ctx, dir); err != nil {
		return nil, err
	}
	return e, nil
}

// stop closes the clients and stops the servers.
func (e *env) stop() {
	for _, p := range []*process{e.ingress, e.echo} {
		p.stop()
	}
	if e.nc != nil {
		e.nc.Close()
	}
	if e.rdb != nil {
		_ = e.rdb.Close()
	}
	for _, p := range []*process{e.nats, e.redis} {
		p.stop()
	}
}

// pids names the processes of the run, for CPU accounting.
func (e *env) pids() map[string]int {
	m := map[string]int{"bench": os.Getpid()}
	for _, p := range []*process{e.redis, e.nats, e.ingress, e.echo} {
		if p != nil && p.cmd.Process != nil {
			m[p.name] = p.cmd.Process.Pid
		}
	}
	return m
}

// reset empties Redis and the events stream between runs, so that each
// starts from the same state.
func (e *env) reset(ctx context.Context) error {
	return errors.Join(e.rdb.FlushDB(ctx).Err(), purge(ctx, e.js, e.sc))
}

// machine describes this machine and the servers' versions.
func (e *env) machine(ctx context.Context) Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	m.CPU = procField("/proc/cpuinfo", "model name")
	if kb, err := strconv.ParseInt(strings.TrimSuffix(procField("/proc/meminfo", "MemTotal"), " kB"), 10, 64); err == nil {
		m.MemoryMB = kb >> 10
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if info, err := e.rdb.Info(ctx, "server").Result(); err == nil {
		for line := range strings.Lines(info) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
				m.Redis = v
			}
		}
	}
	if e.nc != nil {
		m.NATS = e.nc.ConnectedServerVersion()
	}
	return m
}

// procField returns the value of the first "name : value" line of a /proc
// file, or "".
func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
