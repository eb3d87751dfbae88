package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/wagate/wagate/messages/streams"
)

// The compare phase measures, side by side in one run, at each concurrency:
//
//	baseline     a hand-written Go handler of wagate's shape: echo v4, HMAC
//	             check, SET NX EX per message, synchronous JetStream publish,
//	             200 (no worker): the design card done by hand
//	ingress      wagate's ingress alone (no worker)
//	end-to-end   wagate's ingress and two worker processes (the log handler
//	             at level warn: it writes nothing), counting only the events
//	             fully processed (done and acked) within the step
//	end-to-end-kv  the same on the JetStream KV dedupe backend (c=32 only,
//	             or the first concurrency when 32 is not measured)
//	end-to-end-prefetch  end-to-end with WAGATE_WORKER_PREFETCH=32 (each
//	             worker fetches as many events ahead as it runs; the same
//	             concurrency only)
//
// Single-event bodies, each with a wamid of its own (no re-sends). Every
// system runs against the same Redis and nats-server, one after the other;
// figures are ratios against the baseline of the same concurrency, so that
// a busy machine lowers both sides alike.

// workerConcurrency is WAGATE_WORKER_CONCURRENCY of the compare phase's
// worker processes.
const workerConcurrency = 32

// Cell is one system at one concurrency.
type Cell struct {
	System      string `json:"system"`
	Concurrency int    `json:"concurrency"`
	// RPS is requests answered 200 per second.
	RPS float64 `json:"req_per_s"`
	// EventsPerS is events per second: stored (baseline, ingress) or fully
	// processed by the workers (end-to-end).
	EventsPerS float64 `json:"events_per_s"`
	// Ratio is EventsPerS over the baseline's at the same concurrency.
	Ratio float64 `json:"ratio_to_baseline"`
	// Events is the count EventsPerS is made of.
	Events int `json:"events"`
	// Backlog is the events stored and not yet processed when the load
	// stopped (end-to-end only).
	Backlog    int                `json:"backlog_at_end"`
	Latency    Percentiles        `json:"ack_latency_ms"`
	CPUPerEvt  float64            `json:"cpu_us_per_event"`
	CPUByProcJ map[string]float64 `json:"cpu_us_per_event_by_process"`
	CPU        *CPU               `json:"cpu"`
	Errors     []string           `json:"errors,omitempty"`
}

// baseline env: when baselineAddrEnv is set this program serves the baseline
// handler instead of benchmarking.
const (
	baselineAddrEnv   = "WAGATE_BENCH_BASELINE_ADDR"
	baselineRedisEnv  = "WAGATE_BENCH_BASELINE_REDIS"
	baselineNATSEnv   = "WAGATE_BENCH_BASELINE_NATS"
	baselineSecretEnv = "WAGATE_BENCH_BASELINE_SECRET"
)

// serveBaselineFromEnv serves the hand-written baseline and exits when
// baselineAddrEnv is set; it returns at once otherwise.
func serveBaselineFromEnv() {
	addr := os.Getenv(baselineAddrEnv)
	if addr == "" {
		return
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
	ropts, err := redis.ParseURL(os.Getenv(baselineRedisEnv))
	if err != nil {
		fail(err)
	}
	rdb := redis.NewClient(ropts)
	nc, err := nats.Connect(os.Getenv(baselineNATSEnv))
	if err != nil {
		fail(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		fail(err)
	}
	secret := []byte(os.Getenv(baselineSecretEnv))
	type payload struct {
		Entry []struct {
			Changes []struct {
				Value struct {
					Metadata struct {
						PhoneNumberID string `json:"phone_number_id"`
					} `json:"metadata"`
					Messages []struct {
						ID string `json:"id"`
					} `json:"messages"`
				} `json:"value"`
			} `json:"changes"`
		} `json:"entry"`
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.POST("/webhooks/whatsapp", func(c echo.Context) error {
		body, err := io.ReadAll(io.LimitReader(c.Request().Body, 4<<20))
		if err != nil {
			return err
		}
		mac := hmac.New(sha256.New, secret)
		mac.Write(body)
		want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
		if !hmac.Equal([]byte(c.Request().Header.Get("X-Hub-Signature-256")), []byte(want)) {
			return c.NoContent(http.StatusUnauthorized)
		}
		var p payload
		if err := json.Unmarshal(body, &p); err != nil {
			return c.NoContent(http.StatusBadRequest)
		}
		ctx := c.Request().Context()
		accepted := 0
		for _, en := range p.Entry {
			for _, ch := range en.Changes {
				for _, m := range ch.Value.Messages {
					ok, err := rdb.SetNX(ctx, "baseline:"+m.ID, "1", 7*24*time.Hour).Result()
					if err != nil {
						return c.NoContent(http.StatusServiceUnavailable)
					}
					if !ok {
						continue
					}
					msg := nats.NewMsg("wagate.events.baseline.message." + ch.Value.Metadata.PhoneNumberID)
					msg.Data = body
					msg.Header.Set(jetstream.MsgIDHeader, m.ID)
					if _, err := js.PublishMsg(ctx, msg); err != nil {
						return c.NoContent(http.StatusServiceUnavailable)
					}
					accepted++
				}
			}
		}
		return c.JSONBlob(http.StatusOK, []byte(`{"events":1,"accepted":`+strconv.Itoa(accepted)+`,"duplicates":0}`))
	})
	e.GET("/healthz", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	srv := &http.Server{Addr: addr, Handler: e, ReadHeaderTimeout: 10 * time.Second}
	fail(srv.ListenAndServe())
}

// startBaseline runs this program again as the baseline server.
func startBaseline(ctx context.Context, dir, redisURL, natsURL string) (*process, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p, err := startProcess(dir, "baseline", self, []string{
		baselineAddrEnv + "=" + addr, baselineRedisEnv + "=" + redisURL,
		baselineNATSEnv + "=" + natsURL, baselineSecretEnv + "=" + benchSecret,
	})
	if err != nil {
		return nil, "", err
	}
	base := "http://" + addr
	if err := waitHTTP(ctx, base+"/healthz"); err != nil {
		p.stop()
		return nil, "", fmt.Errorf("baseline not ready (log %s): %w", p.log, err)
	}
	return p, base, nil
}

// startWorkers starts n worker processes (cmd/worker) with the log handler at
// level warn, and waits until each is ready.
func startWorkers(ctx context.Context, dir, bin, redisURL, natsURL string, n int, extra ...string) ([]*process, error) {
	var ps []*process
	for i := range n {
		port, err := freePort()
		if err != nil {
			return ps, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		p, err := startProcess(dir, fmt.Sprintf("worker%d", i+1), bin, append([]string{
			"WAGATE_REDIS_URL=" + redisURL, "WAGATE_NATS_URL=" + natsURL,
			"WAGATE_WORKER_HTTP_ADDR=" + addr, "WAGATE_HANDLER=log", "WAGATE_LOG_LEVEL=warn",
			"WAGATE_WORKER_CONCURRENCY=" + strconv.Itoa(workerConcurrency),
		}, extra...))
		if err != nil {
			return ps, err
		}
		ps = append(ps, p)
		if err := waitHTTP(ctx, "http://"+addr+"/readyz"); err != nil {
			return ps, fmt.Errorf("worker not ready (log %s): %w", p.log, err)
		}
	}
	return ps, nil
}

// benchCompare runs the compare phase.
func benchCompare(ctx context.Context, e *env, o options, bins map[string]string, tmp string, logf func(string, ...any)) ([]Cell, error) {
	baseline, baseURL, err := startBaseline(ctx, tmp, e.redisURL, e.natsURL)
	if err != nil {
		return nil, err
	}
	defer baseline.stop()
	var cells []Cell
	measure := func(system, url string, c int, pids map[string]int, workers bool) (Cell, error) {
		if err := resetConsumer(ctx, e.js, e.sc); err != nil {
			return Cell{}, err
		}
		if err := e.rdb.FlushDB(ctx).Err(); err != nil {
			return Cell{}, err
		}
		var wps []*process
		if workers {
			extra := []string(nil)
			switch system {
			case "end-to-end-kv":
				extra = []string{"WAGATE_DEDUPE_BACKEND=nats"}
			case "end-to-end-prefetch":
				extra = []string{"WAGATE_WORKER_PREFETCH=" + strconv.Itoa(workerConcurrency)}
			}
			wps, err = startWorkers(ctx, tmp, bins["worker"], e.redisURL, e.natsURL, 2, extra...)
			defer func() {
				for _, p := range wps {
					p.stop()
				}
			}()
			if err != nil {
				return Cell{}, err
			}
			for i, p := range wps {
				pids[fmt.Sprintf("worker%d", i+1)] = p.cmd.Process.Pid
			}
		}
		load := newWorkload(1, 0, benchSecret, false)
		m := startCPU(pids)
		st := attack{url: url + "/webhooks/whatsapp", load: load, workers: c, duration: o.peakDuration}.run(ctx)
		cell := Cell{System: system, Concurrency: c, RPS: st.RPS, Latency: st.Latency, Errors: st.Errors}
		if workers {
			info, err := consumerInfo(ctx, e.js, e.sc)
			cpu := m.stop()
			if err != nil {
				return Cell{}, err
			}
			stored, err := streamLast(ctx, e.js, e.sc)
			if err != nil {
				return Cell{}, err
			}
			cell.Backlog = int(info.NumPending) + info.NumAckPending
			cell.Events = max(0, int(stored)-cell.Backlog)
			cell.CPU = cpu
		} else {
			cell.CPU = m.stop()
			cell.Events = st.Accepted
		}
		if st.Seconds > 0 {
			cell.EventsPerS = float64(cell.Events) / st.Seconds
		}
		cell.CPUPerEvt, cell.CPUByProcJ = cell.CPU.PerEvent(cell.Events)
		// The worker processes count as one.
		if w := cell.CPUByProcJ["worker1"] + cell.CPUByProcJ["worker2"]; w > 0 {
			cell.CPUByProcJ["worker"] = w
			delete(cell.CPUByProcJ, "worker1")
			delete(cell.CPUByProcJ, "worker2")
		}
		logf("compare %-13s c=%-3d %6.0f req/s %6.0f events/s  p99 %.2f ms  CPU %s  backlog %d",
			system, c, cell.RPS, cell.EventsPerS, cell.Latency.P99, cell.CPU.perEventString(cell.Events), cell.Backlog)
		return cell, nil
	}
	pidsOf := func(server string, pid int) map[string]int {
		m := map[string]int{"bench": os.Getpid(), server: pid}
		for _, p := range []*process{e.redis, e.nats} {
			if p != nil && p.cmd.Process != nil {
				m[p.name] = p.cmd.Process.Pid
			}
		}
		return m
	}
	kvC := o.compareC[0]
	if slices.Contains(o.compareC, 32) {
		kvC = 32
	}
	for _, c := range o.compareC {
		base, err := measure("baseline", baseURL, c, pidsOf("baseline", baseline.cmd.Process.Pid), false)
		if err != nil {
			return cells, err
		}
		base.Ratio = 1
		cells = append(cells, base)
		add := func(cell Cell) {
			if base.EventsPerS > 0 {
				cell.Ratio = cell.EventsPerS / base.EventsPerS
			}
			cells = append(cells, cell)
		}
		systems := []string{"ingress", "end-to-end"}
		if c == kvC {
			systems = append(systems, "end-to-end-prefetch")
		}
		for _, sys := range systems {
			cell, err := measure(sys, e.ingressURL, c, pidsOf("ingress", e.ingress.cmd.Process.Pid), sys != "ingress")
			if err != nil {
				return cells, err
			}
			add(cell)
		}
		if c == kvC {
			kvIngress, kvURL, err := startIngress(ctx, tmp, bins["ingress"], e.redisURL, e.natsURL, benchSecret, "WAGATE_DEDUPE_BACKEND=nats")
			if err != nil {
				return cells, err
			}
			cell, err := measure("end-to-end-kv", kvURL, c, pidsOf("ingress", kvIngress.cmd.Process.Pid), true)
			kvIngress.stop()
			if err != nil {
				return cells, err
			}
			add(cell)
		}
	}
	return cells, nil
}

// consumerInfo returns the workers' consumer's state.
func consumerInfo(ctx context.Context, js jetstream.JetStream, sc streams.Config) (*jetstream.ConsumerInfo, error) {
	c, err := js.Consumer(ctx, sc.Events, sc.Consumer)
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// streamLast returns how many messages the events stream holds.
func streamLast(ctx context.Context, js jetstream.JetStream, sc streams.Config) (uint64, error) {
	s, err := js.Stream(ctx, sc.Events)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	if info.State.Msgs == 0 {
		return 0, nil
	}
	return info.State.Msgs, nil
}

var errNoCell = errors.New("no such cell")

// cell returns the compare cell of system at concurrency c.
func (r *Results) cell(system string, c int) (Cell, error) {
	for _, x := range r.Compare {
		if x.System == system && x.Concurrency == c {
			return x, nil
		}
	}
	return Cell{}, errNoCell
}
