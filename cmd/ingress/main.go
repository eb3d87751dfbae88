// Command ingress is wagate's HTTP ingress: it verifies each webhook's
// signature, claims its events, stores them in JetStream and answers the
// provider. Configuration: WAGATE_* environment variables (see the README).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/wagate/wagate/ingest"
	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/internal/connect"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "ingress:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	log := connect.Logger(cfg)
	stopTracing, err := connect.Tracing(ctx, cfg, "wagate-ingress", log)
	if err != nil {
		return err
	}
	defer stopTracing()

	connectCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	nc, js, err := connect.NATS(connectCtx, cfg.NATSURL, "wagate-ingress", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	store, closeStore, err := connect.Store(connectCtx, cfg, js)
	if err != nil {
		return err
	}
	defer closeStore()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := ingest.New(ingest.Config{
		Addr:            cfg.HTTPAddr,
		AppSecrets:      cfg.Secrets(),
		WASenderSecrets: cfg.WASenderSecretList(),
		WAHAKeys:        cfg.WAHAKeyList(),
		VerifyToken:     cfg.MetaVerifyToken,
		Insecure:        cfg.InsecureNoSecret,
		BodyLimit:       cfg.BodyLimit,
		BodyMemory:      cfg.BodyMemory,
		RedisPolicy:     ingest.Policy(cfg.RedisPolicy),
		PublishTimeout:  cfg.PublishTimeout,
		ShutdownTimeout: cfg.ShutdownTimeout,
		Streams:         connect.Streams(cfg),
		Logger:          log,
		Registerer:      reg,
	}, store, js)
	if err != nil {
		return err
	}
	log.Info("ingress starting", "addr", cfg.HTTPAddr, "dedupe", cfg.DedupeBackend, "redis_policy", cfg.RedisPolicy)
	if err := srv.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("ingress stopped")
	return nil
}
