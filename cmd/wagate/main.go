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

Configuration comes from WAGATE_* environment variables (see the README).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newDevCmd(), newSendCmd(), newKeyCmd(), newReplayCmd(), newDLQCmd(), newStreamsCmd(), newDedupeCmd())
	return root
}
