// Command wagate is the operator's command line: it runs the whole pipeline
// in one process (dev), sends signed payloads to an ingress (send), re-runs
// stored events (replay), handles dead letters (dlq), shows and creates the
// streams (streams), inspects an event's dedupe state (key) and creates or
// checks the dedupe store's table (dedupe).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/wagate/wagate/internal/buildinfo"
	"github.com/wagate/wagate/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	if err := root.ExecuteContext(ctx); err != nil {
		if !errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "wagate:", err)
		}
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "wagate",
		Short: "wagate makes WhatsApp webhooks safe to process: stored before 200, processed exactly once",
		Long: `wagate makes WhatsApp webhooks safe to process: every event a provider
delivers is stored durably in NATS JetStream before the provider is answered
200, and its business logic runs exactly once.

Configuration comes from WAGATE_* environment variables (see the README);
the global flag of the same name overrides each (WAGATE_NATS_URL by
--nats-url).`,
		Version:       buildinfo.Read().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		// Flags given on the command line override their variables for
		// every subcommand, including the parts that read a variable
		// directly (send's WAGATE_META_APP_SECRET, WAGATE_DATA_DIR).
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return config.ApplyFlags(cmd.Flags())
		},
	}
	root.SetVersionTemplate("wagate {{.Version}}\n")
	config.AddFlags(root.PersistentFlags())
	root.AddCommand(newDevCmd(), newSendCmd(), newKeyCmd(), newReplayCmd(), newDLQCmd(), newStreamsCmd(), newDedupeCmd())
	return root
}
