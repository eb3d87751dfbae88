package connect

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/buildinfo"
	"github.com/wagate/wagate/internal/config"
)

// connectTimeout bounds the first connection to NATS and the dedupe store.
const connectTimeout = 30 * time.Second

// Service is what a long-running wagate process (ingress, worker) opens at
// start: its configuration, logger, tracing, NATS connection, dedupe store
// and a metrics registry holding the Go and process collectors.
type Service struct {
	Config   config.Config
	Log      *slog.Logger
	NC       *nats.Conn
	JS       jetstream.JetStream
	Store    dedupe.Store
	Registry *prometheus.Registry

	closers []func()
}

// Open loads the configuration from the environment and opens everything a
// Service holds; name identifies the process to NATS and to tracing. The
// first connection is bounded by 30 s. It returns the configuration's,
// tracing's, NATS's or the store's error; on error nothing stays open.
func Open(ctx context.Context, name string) (*Service, error) {
	cfg, err := config.Load()
	if err != nil {
		return nil, err
	}
	return OpenConfig(ctx, cfg, name)
}

// OpenConfig is Open with a configuration already loaded (and checked by
// the command). With the Redis dedupe store it also warns, once, when Redis
// runs without AOF (CheckRedisAOF).
func OpenConfig(ctx context.Context, cfg config.Config, name string) (*Service, error) {
	s := &Service{Config: cfg, Log: Logger(cfg)}
	stopTracing, err := Tracing(ctx, cfg, name, s.Log)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, stopTracing)

	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	auth, err := NATSAuth(cfg)
	if err != nil {
		s.Close()
		return nil, err
	}
	if s.NC, s.JS, err = NATS(cctx, cfg.NATSURL, name, s.Log, auth...); err != nil {
		s.Close()
		return nil, err
	}
	s.closers = append(s.closers, s.NC.Close)
	store, closeStore, err := Store(cctx, cfg, s.JS)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.Store = store
	s.closers = append(s.closers, closeStore, StartCleanup(store, s.Log))
	if cfg.DedupeBackend == "redis" {
		CheckRedisAOF(cctx, cfg, s.Log)
	}

	s.Registry = prometheus.NewRegistry()
	s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Collector())
	return s, nil
}

// Close releases what Open opened, in reverse order.
func (s *Service) Close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}
