package dedupe_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
)

// BenchmarkPostgresClaim claims fresh keys in batches of 1 and 50 on the
// PostgreSQL of testenv.PostgresURL (a fresh schema); it reports the time
// per claim and the bytes the table and its indexes grow by per claim.
func BenchmarkPostgresClaim(b *testing.B) {
	pool := newPool(b, testenv.PostgresURL(b))
	s := newPostgres(b, pool, dedupe.PostgresOptions{})
	ctx := context.Background()
	size := func() int64 {
		var n int64
		if err := pool.QueryRow(ctx, `SELECT pg_total_relation_size('wagate_dedupe')`).Scan(&n); err != nil {
			b.Fatal(err)
		}
		return n
	}
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	for _, batch := range []int{1, 50} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			keys := make([]string, batch)
			n := 0
			base := size()
			b.ReportAllocs()
			for b.Loop() {
				for i := range keys {
					keys[i] = messages.KeyOf(run + "|" + strconv.Itoa(batch) + "|" + strconv.FormatInt(benchSeq.Add(1), 10))
					n++
				}
				cl, err := s.Claim(ctx, "ingress-0a1b2c", keys)
				if err != nil {
					b.Fatalf("Claim: %v", err)
				}
				if cl[0].Prior != dedupe.Absent {
					b.Fatalf("Claim of a new key: %+v, want absent", cl[0])
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(batch), "claims/op")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/claim")
			b.ReportMetric(float64(size()-base)/float64(n), "table-bytes/claim")
		})
	}
}
