package connect

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/internal/testenv"
)

// TestCheckRedisAOF checks the start-up warning against real redis-servers:
// one without AOF (warned, naming the G2 limit), one with it (silent), one
// without AOF reached over TLS with a client certificate, and a Cluster, so
// that the check connects as the dedupe store does.
func TestCheckRedisAOF(t *testing.T) {
	for _, tc := range []struct {
		name       string
		start      func(t *testing.T) config.Config
		appendonly string
		warn       bool
	}{
		{"appendonly no", func(t *testing.T) config.Config {
			return config.Config{RedisURL: testenv.StartRedis(t, "--appendonly", "no").URL()}
		}, "no", true},
		{"appendonly yes", func(t *testing.T) config.Config {
			return config.Config{RedisURL: testenv.StartRedis(t, "--appendonly", "yes").URL()}
		}, "yes", false},
		{"TLS", func(t *testing.T) config.Config {
			f := testenv.MakeTLSFiles(t)
			_, url := testenv.StartRedisTLS(t, f) // redis-server's default: appendonly no
			return config.Config{RedisURL: url, RedisTLSCA: f.CA, RedisTLSCert: f.ClientCert, RedisTLSKey: f.ClientKey}
		}, "no", true},
		{"Cluster", func(t *testing.T) config.Config {
			return config.Config{RedisURL: testenv.StartRedisCluster(t).URL()} // appendonly no
		}, "no", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.start(t)
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, nil))
			if got := CheckRedisAOF(context.Background(), c, log); got != tc.appendonly {
				t.Fatalf("CheckRedisAOF = %q, want %q; log:\n%s", got, tc.appendonly, buf.String())
			}
			warned := strings.Contains(buf.String(), "level=WARN") && strings.Contains(buf.String(), "G2")
			if warned != tc.warn {
				t.Errorf("%s: warned %t, want %t; log:\n%s", tc.name, warned, tc.warn, buf.String())
			}
		})
	}
}
