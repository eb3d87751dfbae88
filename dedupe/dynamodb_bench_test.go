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

// dynamoItemBytes is the size DynamoDB bills for a claim's item (k, s, x),
// by its rules: attribute names plus UTF-8 string bytes, and a number costs
// 1 byte per two significant digits plus 1
// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html).
// dynalite does not report sizes, so the benchmark computes it.
func dynamoItemBytes(key, token string, expires int64) int {
	digits := len(strconv.FormatInt(expires, 10))
	return len("k") + len(key) + len("s") + len(token) + len("x") + (digits+1)/2 + 1
}

// BenchmarkDynamoDBClaim claims fresh keys in batches of 1 and 50 on the
// DynamoDB-compatible server of testenv.DynamoDBEndpoint (dynalite unless
// WAGATE_TEST_DYNAMODB_ENDPOINT is set: DynamoDB's API, not its latency); it
// reports the time per claim and the billed item size per claim.
func BenchmarkDynamoDBClaim(b *testing.B) {
	c := newDynamoClient(testenv.DynamoDBEndpoint(b))
	s := newDynamoDB(b, c, dedupe.DynamoDBOptions{Table: "bench"})
	ctx := context.Background()
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	for _, batch := range []int{1, 50} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			keys := make([]string, batch)
			n, bytes := 0, 0
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
				bytes += dynamoItemBytes(cl[0].Key, cl[0].Token, time.Now().Add(7*24*time.Hour).Unix()) * batch
			}
			b.StopTimer()
			b.ReportMetric(float64(batch), "claims/op")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/claim")
			b.ReportMetric(float64(bytes)/float64(n), "item-bytes/claim")
		})
	}
}
