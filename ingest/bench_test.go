package ingest

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPost posts bodies of new events, signed, to an ingress on real
// Redis and JetStream, and waits for each answer: the latency of the claim
// and the publishes of a whole request.
func BenchmarkPost(b *testing.B) {
	for _, n := range []int{1, 50} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			e := newEnv(b, Config{})
			i := 0
			for b.Loop() {
				i++
				body := batchBody(fmt.Sprintf("bench.%d", i), n)
				if code, text := e.post(body, Sign(body, testSecret)); code != http.StatusOK {
					b.Fatalf("got %d %q", code, text)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkPostParallel posts single-event bodies from 32 concurrent
// clients: the load under which the ingress commits claims, publishes and
// accepted marks in groups. Profile it with -cpuprofile.
func BenchmarkPostParallel(b *testing.B) {
	// Logs at info level, the ingress's default: no line per stored event.
	e := newEnv(b, Config{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	client := e.http.Client()
	var n atomic.Int64
	b.SetParallelism(32 / max(1, runtime.GOMAXPROCS(0)))
	claims0, calls0, cpu0 := e.store.claims.Load(), e.store.calls.Load(), processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := batchBody(fmt.Sprintf("pbench.%d", n.Add(1)), 1)
			req, err := http.NewRequest(http.MethodPost, e.http.URL+pathCloud, bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(HeaderSignature, Sign(body, testSecret))
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("got %d", resp.StatusCode)
				return
			}
		}
	})
	cpu := processCPU() - cpu0
	e.waitMarks() // before the store's client is closed
	calls := e.store.calls.Load() - calls0
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	// CPU of the whole test process (the ingress, its HTTP clients and its
	// in-process nats-server; not Redis) per request: steadier than events/s
	// on a shared machine.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(e.store.claims.Load()-claims0)/float64(b.N), "claim-calls/op")
	b.ReportMetric(float64(calls)/float64(b.N), "store-calls/op")
}

// processCPU returns the CPU time, user and system, this process used so
// far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
