package connect

import (
	"context"
	"log/slog"
	"time"

	"github.com/wagate/wagate/internal/config"
)

// RedisAOFWarning is logged at start-up when the Redis dedupe store runs
// without its append-only file.
const RedisAOFWarning = "redis runs without AOF (CONFIG GET appendonly = no): a Redis restart loses the dedupe claims and done marks written since its last RDB snapshot, so an event already processed can run again (the limit of G2 in the README); set appendonly yes (and appendfsync everysec or always)"

// CheckRedisAOF asks the Redis of c (WAGATE_REDIS_URL in any of its forms,
// with WAGATE_REDIS_TLS_*, as the dedupe store connects) whether it keeps an
// append-only file (CONFIG GET appendonly) and logs RedisAOFWarning at level
// Warn when it does not. Through Sentinel it asks the master; in a Cluster,
// one node. It returns what it found: "yes", "no", or "" when Redis could
// not be asked (CONFIG is often disabled on managed Redis; that is logged at
// Info, naming the error). It never fails the caller: durability is the
// operator's choice.
func CheckRedisAOF(ctx context.Context, c config.Config, log *slog.Logger) string {
	rc, err := RedisClient(config.Prefix+"REDIS_URL", c.RedisURL, RedisTLS{CA: c.RedisTLSCA, Cert: c.RedisTLSCert, Key: c.RedisTLSKey})
	if err != nil {
		log.Info("redis persistence not checked; make sure AOF is on (see the G2 limit in the README)", "err", err)
		return ""
	}
	defer rc.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	vals, err := rc.ConfigGet(ctx, "appendonly").Result()
	if err != nil {
		log.Info("redis persistence not checked: CONFIG GET appendonly failed; make sure AOF is on (see the G2 limit in the README)", "err", err)
		return ""
	}
	v := vals["appendonly"]
	if v == "no" {
		log.Warn(RedisAOFWarning, "redis", RedactURL(c.RedisURL))
	}
	return v
}
