// Package wiring turns the configuration into the ingress's and the worker's
// Config, once for every command that runs them (ingress, worker, wagate dev).
package wiring

import (
	"log/slog"
	"net"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wagate/wagate/ingest"
	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/internal/connect"
	"github.com/wagate/wagate/worker"
)

// Ingest is the ingress configuration c describes, logging to log and
// registering its metrics with reg.
func Ingest(c config.Config, log *slog.Logger, reg prometheus.Registerer) ingest.Config {
	return ingest.Config{
		Addr:            c.HTTPAddr,
		AdminAddr:       c.AdminAddr,
		AppSecrets:      c.Secrets(),
		WASenderSecrets: c.WASenderSecretList(),
		WAHAKeys:        c.WAHAKeyList(),
		EvolutionTokens: c.EvolutionTokenList(),
		RepeatWindow:    c.RepeatWindow,
		VerifyToken:     c.MetaVerifyToken,
		Insecure:        c.InsecureNoSecret,
		BodyLimit:       c.BodyLimit,
		BodyMemory:      c.BodyMemory,
		MaxEvents:       c.MaxEvents,
		LogSampleRate:   c.LogSampleRate,
		RedisPolicy:     ingest.Policy(c.RedisPolicy),
		PublishTimeout:  c.PublishTimeout,
		ShutdownTimeout: c.ShutdownTimeout,
		Streams:         connect.Streams(c),
		Logger:          log,
		Registerer:      reg,
	}
}

// Worker is the worker configuration c describes, logging to log and
// registering its metrics with reg.
func Worker(c config.Config, log *slog.Logger, reg prometheus.Registerer) worker.Config {
	return worker.Config{
		Streams:         connect.Streams(c),
		Concurrency:     c.WorkerConcurrency,
		Prefetch:        c.WorkerPrefetch,
		Order:           worker.Order(c.Order),
		MemberID:        memberID(c.WorkerHTTPAddr),
		LockTTL:         c.LockTTL,
		ShutdownTimeout: c.ShutdownTimeout,
		Logger:          log,
		Registerer:      reg,
	}
}

// memberID is the worker's member id with WAGATE_ORDER=conversation: the
// host name and the port of WAGATE_WORKER_HTTP_ADDR, which no other worker
// of the host can listen on, so that a worker restarted in place (a crash, a
// container restart in its pod) takes its partitions back at once.
func memberID(httpAddr string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		return ""
	}
	_, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		port = httpAddr
	}
	return host + ":" + port
}
