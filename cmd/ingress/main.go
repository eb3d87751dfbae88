// Command ingress is wagate's HTTP ingress: it verifies each webhook's
// signature, claims its events, stores them in JetStream and answers the
// provider. Configuration: WAGATE_* environment variables (see the README).
package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/wagate/wagate/ingest"
	"github.com/wagate/wagate/internal/connect"
	"github.com/wagate/wagate/internal/logging"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		logging.Exit("ingress: stopped", err)
	}
}

func run(ctx context.Context) error {
	svc, err := connect.Open(ctx, "wagate-ingress")
	if err != nil {
		return err
	}
	defer svc.Close()
	cfg, log := svc.Config, svc.Log

	srv, err := ingest.New(ingest.Config{
		Addr:            cfg.HTTPAddr,
		AdminAddr:       cfg.AdminAddr,
		AppSecrets:      cfg.Secrets(),
		WASenderSecrets: cfg.WASenderSecretList(),
		WAHAKeys:        cfg.WAHAKeyList(),
		EvolutionTokens: cfg.EvolutionTokenList(),
		RepeatWindow:    cfg.RepeatWindow,
		VerifyToken:     cfg.MetaVerifyToken,
		Insecure:        cfg.InsecureNoSecret,
		BodyLimit:       cfg.BodyLimit,
		BodyMemory:      cfg.BodyMemory,
		MaxEvents:       cfg.MaxEvents,
		LogSampleRate:   cfg.LogSampleRate,
		RedisPolicy:     ingest.Policy(cfg.RedisPolicy),
		PublishTimeout:  cfg.PublishTimeout,
		ShutdownTimeout: cfg.ShutdownTimeout,
		Streams:         connect.Streams(cfg),
		Logger:          log,
		Registerer:      svc.Registry,
	}, svc.Store, svc.JS)
	if err != nil {
		return err
	}
	log.Info("ingress starting", "addr", cfg.HTTPAddr, "admin_addr", cfg.AdminAddr, "dedupe", cfg.DedupeBackend, "redis_policy", cfg.RedisPolicy)
	if err := srv.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("ingress stopped")
	return nil
}
