package ingest

import (
	"fmt"
	"net/http"
	"testing"
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
