// Command worker consumes wagate's events stream and runs the configured
// handler for each event, exactly once, under a lock with a fencing number.
// It serves /healthz, /readyz and /metrics on WAGATE_WORKER_HTTP_ADDR.
// Configuration: WAGATE_* environment variables, each overridden by its flag
// (WAGATE_HANDLER by --handler; see the README or --help). The handler has
// no default: a worker started without one refuses to start.
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
	"github.com/spf13/cobra"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/buildinfo"
	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/internal/connect"
	"github.com/wagate/wagate/internal/forward"
	"github.com/wagate/wagate/internal/logging"
	"github.com/wagate/wagate/internal/wiring"
	"github.com/wagate/wagate/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newCmd().ExecuteContext(ctx); err != nil {
		logging.Exit("worker: stopped", err)
	}
}

// newCmd returns the worker command: --help, -h and --version print and exit
// without connecting to anything; otherwise it loads and checks the
// configuration (flags over WAGATE_* variables; the handler is required),
// then consumes.
func newCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "worker --handler forward|log [flags]",
		Short: "wagate's worker: run each stored event's handler exactly once",
		Long: `wagate's worker: it consumes the events stream and runs the handler for each
event exactly once, under a lock with a fencing number, then marks it done.

The handler is required (WAGATE_HANDLER or --handler):
  forward  POST each event to WAGATE_FORWARD_URL (your app); done on its 2xx
  log      log one line per event and mark it done: for trials only, the
           event reaches no application

Every setting is a WAGATE_* environment variable; the flag of the same name
overrides it (WAGATE_FORWARD_URL by --forward-url).`,
		Version:       buildinfo.Read().String(),
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.LoadFlags(cmd.Flags(), config.Config.CheckWorker)
			if err != nil {
				return err
			}
			return run(cmd.Context(), cfg)
		},
	}
	cmd.SetVersionTemplate("worker {{.Version}}\n")
	config.AddFlags(cmd.Flags())
	return cmd
}

func run(ctx context.Context, cfg config.Config) error {
	svc, err := connect.OpenConfig(ctx, cfg, "wagate-worker")
	if err != nil {
		return err
	}
	defer svc.Close()
	log := svc.Log

	h, err := forward.Handler(cfg, log) // config.CheckWorker has required WAGATE_HANDLER
	if err != nil {
		return err
	}
	w, err := worker.New(wiring.Worker(cfg, log, svc.Registry), svc.JS, svc.Store, h)
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

	if cfg.Handler == "log" {
		log.Warn("handler log: each event is logged and marked done, and reaches no application (set WAGATE_HANDLER=forward and WAGATE_FORWARD_URL to deliver events)")
	}
	log.Info("worker starting", "version", buildinfo.Read().String(), "handler", cfg.Handler, "forward_url", forwardURL(cfg), "concurrency", cfg.WorkerConcurrency, "order", cfg.Order, "http_addr", cfg.WorkerHTTPAddr, "dedupe", cfg.DedupeBackend)
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

// forwardURL is the URL the forward handler posts to, without credentials,
// for the start-up line; "" for the log handler.
func forwardURL(cfg config.Config) string {
	if cfg.Handler != "forward" {
		return ""
	}
	return connect.RedactURL(cfg.ForwardURL)
}
