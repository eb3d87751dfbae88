// Command worker consumes wagate's events stream and runs the configured
// handler for each event, exactly once, under a lock with a fencing number.
// It serves /healthz, /readyz and /metrics on WAGATE_WORKER_HTTP_ADDR.
// Configuration: WAGATE_* environment variables (see the README).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/connect"
	"github.com/wagate/wagate/internal/forward"
	"github.com/wagate/wagate/internal/logging"
	"github.com/wagate/wagate/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		logging.Exit("worker: stopped", err)
	}
}

func run(ctx context.Context) error {
	svc, err := connect.Open(ctx, "wagate-worker")
	if err != nil {
		return err
	}
	defer svc.Close()
	cfg, log := svc.Config, svc.Log

	var h worker.Handler
	switch cfg.Handler {
	case "forward":
		h = forward.New(cfg)
	default:
		h = worker.NewLog(log)
	}

	w, err := worker.New(worker.Config{
		Streams:         connect.Streams(cfg),
		Concurrency:     cfg.WorkerConcurrency,
		LockTTL:         cfg.LockTTL,
		ShutdownTimeout: cfg.ShutdownTimeout,
		Logger:          log,
		Registerer:      svc.Registry,
	}, svc.JS, svc.Store, h)
	if err != nil {
		return err
	}

	httpSrv := &http.Server{
		Addr:              cfg.WorkerHTTPAddr,
		Handler:           probes(svc.Registry, svc.NC, svc.Store, log),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	httpErr := make(chan error, 1)
	go func() { httpErr <- httpSrv.ListenAndServe() }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = httpSrv.Shutdown(sctx)
	}()

	log.Info("worker starting", "handler", cfg.Handler, "concurrency", cfg.WorkerConcurrency, "http_addr", cfg.WorkerHTTPAddr, "dedupe", cfg.DedupeBackend)
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(ctx) }()
	select {
	case err := <-httpErr:
		return fmt.Errorf("http %s: %w", cfg.WorkerHTTPAddr, err)
	case err := <-runErr:
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	log.Info("worker stopped")
	return nil
}

// probes serves the worker's /healthz, /readyz and /metrics.
func probes(reg *prometheus.Registry, nc *nats.Conn, store dedupe.Store, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		// The answer names the failing dependency, never its address or
		// error text; the logs have those.
		if !nc.IsConnected() {
			http.Error(w, "nats: unavailable", http.StatusServiceUnavailable)
			return
		}
		if err := store.Ping(ctx); err != nil {
			log.Warn("worker: not ready: dedupe store", "err", err)
			http.Error(w, "dedupe store: unavailable", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}
