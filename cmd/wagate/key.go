package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/internal/connect"
	"github.com/wagate/wagate/messages"
)

func newKeyCmd() *cobra.Command {
	var account, kind, status string
	cmd := &cobra.Command{
		Use:   "key <key | wamid>",
		Short: "Show an event's dedupe state (absent, pending, accepted, done), fencing number and lock",
		Long: `Show an event's dedupe state in the configured store (WAGATE_DEDUPE_BACKEND).

The argument is a dedupe key ("wa:…") or a Cloud API wamid. A wamid needs
--account (the phone_number_id); for a status add --kind status --status read.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load()
			if err != nil {
				return err
			}
			key := args[0]
			if !strings.HasPrefix(key, messages.KeyPrefix) {
				if account == "" {
					return fmt.Errorf("key: %q is not a key; a wamid needs --account <phone_number_id>", key)
				}
				parts := []string{messages.ProviderCloud, kind, account, key}
				if kind == string(messages.KindStatus) {
					parts = append(parts, status)
				}
				id := messages.Identity(parts...)
				key = messages.KeyOf(id)
				fmt.Fprintf(cmd.OutOrStdout(), "identity %s\n", id)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			var js jetstream.JetStream
			if cfg.DedupeBackend == "nats" {
				nc, j, err := connect.NATS(ctx, cfg.NATSURL, "wagate-key", connect.Logger(cfg))
				if err != nil {
					return err
				}
				defer nc.Close()
				js = j
			}
			store, closeStore, err := connect.Store(ctx, cfg, js)
			if err != nil {
				return err
			}
			defer closeStore()
			rec, err := store.Lookup(ctx, key)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key      %s\nstate    %s\nfence    %d\nlocked   %t\nttl      %s\nraw      %q\n",
				key, rec.State, rec.Fence, rec.Locked, rec.TTL.Round(time.Second), rec.Raw)
			return nil
		},
	}
	cmd.Flags().StringVar(&account, "account", "", "phone_number_id the wamid belongs to")
	cmd.Flags().StringVar(&kind, "kind", "message", "event kind: message or status")
	cmd.Flags().StringVar(&status, "status", "", "status value for --kind status: sent, delivered, read, played, failed")
	return cmd
}
