package connect

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/wagate/wagate/internal/testenv"
)

// TestCheckRedisAOF checks the start-up warning against two real
// redis-servers: one without AOF (warned, naming the G2 limit) and one with
// it (silent).
func TestCheckRedisAOF(t *testing.T) {
	for _, tc := range []struct {
		appendonly string
		warn       bool
	}{{"no", true}, {"yes", false}} {
		t.Run("appendonly "+tc.appendonly, func(t *testing.T) {
			r := testenv.StartRedis(t, "--appendonly", tc.appendonly)
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, nil))
			if got := CheckRedisAOF(context.Background(), r.URL(), log); got != tc.appendonly {
				t.Fatalf("CheckRedisAOF = %q, want %q", got, tc.appendonly)
			}
			warned := strings.Contains(buf.String(), "level=WARN") && strings.Contains(buf.String(), "G2")
			if warned != tc.warn {
				t.Errorf("appendonly %s: warned %t, want %t; log:\n%s", tc.appendonly, warned, tc.warn, buf.String())
			}
		})
	}
}
