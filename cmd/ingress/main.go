// Command ingress is wagate's HTTP ingress: it verifies each webhook's
// signature, claims its events, stores them in JetStream and answers the
// provider. Configuration: WAGATE_* environment variables, each overridden
// by its flag (WAGATE_REDIS_URL by --redis-url; see the README or --help).
package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/wagate/wagate/ingest"
	"github.com/wagate/wagate/internal/buildinfo"
	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/internal/connect"
	"github.com/wagate/wagate/internal/logging"
	"github.com/wagate/wagate/internal/wiring"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newCmd().ExecuteContext(ctx); err != nil {
		logging.Exit("ingress: stopped", err)
	}
}

// newCmd returns the ingress command: --help, -h and --version print and
// exit without connecting to anything; otherwise it loads and checks the
// configuration (flags over WAGATE_* variables), then serves.
func newCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ingress [flags]",
		Short: "wagate's HTTP ingress: verify, claim, store in JetStream, answer the provider",
		Long: `wagate's HTTP ingress: it verifies each webhook's signature, claims its
events in the dedupe store, stores them in NATS JetStream and only then
answers the provider 200.

Every setting is a WAGATE_* environment variable; the flag of the same name
overrides it (WAGATE_REDIS_URL by --redis-url). At least one webhook secret
is required (WAGATE_META_APP_SECRET, WAGATE_WASENDER_SECRET,
WAGATE_WAHA_HMAC_KEY or WAGATE_EVOLUTION_TOKEN).`,
		Version:       buildinfo.Read().String(),
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.LoadFlags(cmd.Flags(), config.Config.CheckIngress)
			if err != nil {
				return err
			}
			return run(cmd.Context(), cfg)
		},
	}
	cmd.SetVersionTemplate("ingress {{.Version}}\n")
	config.AddFlags(cmd.Flags())
	return cmd
}

func run(ctx context.Context, cfg config.Config) error {
	svc, err := connect.OpenConfig(ctx, cfg, "wagate-ingress")
	if err != nil {
		return err
	}
	defer svc.Close()
	log := svc.Log

	srv, err := ingest.New(wiring.Ingest(cfg, log, svc.Registry), svc.Store, svc.JS)
	if err != nil {
		return err
	}
	log.Info("ingress starting", "version", buildinfo.Read().String(), "addr", cfg.HTTPAddr, "admin_addr", cfg.AdminAddr, "dedupe", cfg.DedupeBackend, "redis_policy", cfg.RedisPolicy)
	if err := srv.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("ingress stopped")
	return nil
}
