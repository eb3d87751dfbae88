// Command bench measures wagate against the machine's floor: the real
// ingress binary under load from vegeta, with real Redis and NATS servers on
// loopback; the same claim and publish in a bare loop and an echo handler
// answering 200, on the same machine in the same run; the worker against a
// bare consumer; and Redis memory per claim against a naive layout. It
// prints a table and writes latest.json and latest.svg (ack latency
// percentiles against offered load) to -out.
//
//	cd scripts && go run ./bench             # or: make bench
//	cd scripts && go run ./bench -duration 3s -phases ingress
//
// It needs redis-server on PATH; it builds the ingress and a NATS server
// from the wagate module. Nothing is asserted: the targets are reported, met or
// missed.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command's flags.
type options struct {
	duration     time.Duration // per load step
	peakDuration time.Duration // closed-loop peak, bare loop and echo runs
	concurrency  int           // requests in flight at peak; goroutines of the floor; worker concurrency
	batch        int           // events per batch body
	dup          float64       // fraction of bodies re-sent
	workerEvents int
	claims       int
	e2ePct       float64 // end-to-end load, % of the single-event peak
	compareC     []int   // concurrency of the compare phase's cells
	phases       string
	out          string // "" means scripts/bench/results in the wagate module
	keep         bool   // keep the temporary directory (logs, binaries)
	cpuProfile   string // write the bench process's CPU profile here
	natsURL      string // use this NATS server instead of building and starting one
}

func defaultOptions() options {
	return options{
		duration:     8 * time.Second,
		peakDuration: 5 * time.Second,
		concurrency:  16,
		batch:        50,
		dup:          0.10,
		workerEvents: 20000,
		claims:       100000,
		e2ePct:       25,
		compareC:     []int{8, 32, 128},
		phases:       "compare,ingress,worker,order,memory",
	}
}

func main() {
	serveEchoFromEnv()
	serveBaselineFromEnv()
	o := defaultOptions()
	flag.DurationVar(&o.duration, "duration", o.duration, "length of each load step (25, 50, 75, 100% of peak)")
	flag.DurationVar(&o.peakDuration, "peak-duration", o.peakDuration, "length of the closed-loop peak run, the bare loop and the echo run")
	flag.IntVar(&o.concurrency, "concurrency", o.concurrency, "requests in flight at peak, goroutines of the bare loop, messages in flight of the worker")
	flag.IntVar(&o.batch, "batch", o.batch, "events per batch body")
	flag.Float64Var(&o.dup, "dup", o.dup, "fraction of bodies that are re-sends of earlier ones")
	flag.IntVar(&o.workerEvents, "worker-events", o.workerEvents, "events drained by the worker and by the bare consumer")
	flag.IntVar(&o.claims, "claims", o.claims, "claims stored to measure Redis memory per claim")
	flag.Float64Var(&o.e2ePct, "e2e-load", o.e2ePct, "end-to-end run's load, in % of the single-event peak")
	flag.Func("compare-c", "comma-separated concurrency of the compare phase's cells (default 8,32,128); the KV backend runs at 32, or the first", func(v string) error {
		o.compareC = nil
		for f := range strings.SplitSeq(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return fmt.Errorf("bad concurrency %q", f)
			}
			o.compareC = append(o.compareC, n)
		}
		return nil
	})
	flag.StringVar(&o.phases, "phases", o.phases, "comma-separated phases to run: compare, ingress, worker, order, memory")
	flag.StringVar(&o.out, "out", "", "directory for latest.json and latest.svg (default scripts/bench/results in the module)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory with the servers' logs")
	flag.StringVar(&o.natsURL, "nats-url", "", "use this NATS server (with JetStream) instead of building and starting one; its WAGATE_EVENTS stream is purged")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write this process's CPU profile (load generator, bare loop, worker; the worker's goroutines carry the label run=worker, for pprof -tagfocus) to `file`")
	flag.Parse()

	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, o, os.Stderr)
	if res != nil {
		res.print(os.Stdout)
	}
	if err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run measures every phase o asks for, writes the results to o.out and
// returns them. Progress goes to logw.
func run(ctx context.Context, o options, logw io.Writer) (*Results, error) {
	logf := func(format string, args ...any) {
		fmt.Fprintf(logw, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	phases := map[string]bool{}
	for p := range strings.SplitSeq(o.phases, ",") {
		switch p = strings.TrimSpace(p); p {
		case "compare", "ingress", "worker", "order", "memory":
			phases[p] = true
		case "":
		default:
			return nil, fmt.Errorf("unknown phase %q (want compare, ingress, worker, order, memory)", p)
		}
	}
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	if o.out == "" {
		o.out = filepath.Join(root, "scripts", "bench", "results")
	}
	tmp, err := os.MkdirTemp("", "wagate-bench-")
	if err != nil {
		return nil, err
	}
	if o.keep {
		logf("servers' logs in %s", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}

	pkgs := map[string]string{"ingress": "./cmd/ingress", "worker": "./cmd/worker"}
	if o.natsURL == "" {
		pkgs["nats-server"] = "github.com/nats-io/nats-server/v2"
	}
	logf("building %s", strings.Join(slices.Sorted(maps.Keys(pkgs)), " and "))
	bins, err := build(ctx, root, tmp, pkgs)
	if err != nil {
		return nil, err
	}
	env, err := startEnv(ctx, tmp, bins["ingress"], bins["nats-server"], o.natsURL, phases["ingress"] || phases["worker"] || phases["compare"])
	if err != nil {
		return nil, err
	}
	defer env.stop()

	idle := startCPU(nil)
	time.Sleep(time.Second)
	busy := idle.stop().Machine
	res := &Results{
		Date:    time.Now().UTC().Format(time.RFC3339),
		Command: strings.Join(append([]string{"cd scripts && go run ./bench"}, os.Args[1:]...), " "),
		Machine: env.machine(ctx),
		Settings: Settings{
			Concurrency: o.concurrency, StepSeconds: o.duration.Seconds(), PeakSeconds: o.peakDuration.Seconds(),
			BatchSize: o.batch, DuplicatePct: 100 * o.dup, WorkerEvents: o.workerEvents, MemoryClaims: o.claims,
			EndToEndShare: o.e2ePct,
		},
	}
	res.Machine.BusyBefore = busy
	if busy >= 0.2 {
		logf("warning: the machine is busy (%.2f cores used by other processes)", busy)
	}
	finish := func(err error) (*Results, error) {
		res.evaluate()
		if werr := res.write(o.out); werr != nil && err == nil {
			err = werr
		}
		logf("wrote the results to %s", o.out)
		return res, err
	}

	if phases["compare"] {
		cells, err := benchCompare(ctx, env, o, bins, tmp, logf)
		res.Compare = cells
		if err != nil {
			return finish(fmt.Errorf("compare: %w", err))
		}
	}
	if phases["ingress"] {
		for _, shape := range []struct {
			name string
			n    int
		}{{"single", 1}, {fmt.Sprintf("batch of %d", o.batch), o.batch}} {
			in, err := benchIngress(ctx, env, o, tmp, shape.name, shape.n, logf)
			if err != nil {
				return finish(fmt.Errorf("ingress %s: %w", shape.name, err))
			}
			res.Ingress = append(res.Ingress, in)
		}
	}
	if phases["worker"] {
		e2eRate := 0
		if len(res.Ingress) > 0 {
			e2eRate = int(res.Ingress[0].Peak.RPS * o.e2ePct / 100)
		}
		wk, err := benchWorker(ctx, env, o, e2eRate, logf)
		if err != nil {
			return finish(fmt.Errorf("worker: %w", err))
		}
		res.Worker = &wk
	}
	if phases["order"] {
		runs, err := benchOrder(ctx, env, o.workerEvents, logf)
		res.Order = runs
		if err != nil {
			return finish(fmt.Errorf("order: %w", err))
		}
	}
	if phases["memory"] {
		logf("memory: %d claims in each layout", o.claims)
		p, url, err := startRedis(ctx, tmp, "redis-memory")
		if err != nil {
			return finish(err)
		}
		mem, err := measureMemory(ctx, url, o.claims)
		p.stop()
		if err != nil {
			return finish(fmt.Errorf("memory: %w", err))
		}
		res.Memory = &mem
	}
	return finish(nil)
}
