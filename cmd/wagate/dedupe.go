package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/internal/connect"
)

// dedupeTimeout bounds `wagate dedupe init` and `check`, which may wait for
// a new DynamoDB table to become active.
const dedupeTimeout = 5 * time.Minute

func newDedupeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dedupe",
		Short: "Create or check the dedupe store's table (PostgreSQL, DynamoDB)",
		Long: `Create or check the table of the dedupe store that WAGATE_DEDUPE_BACKEND
names. The ingress and the worker only check it at start-up and refuse to
start without it; run "wagate dedupe init" once per deployment (and again
after changing the table's name: it is idempotent).

  postgres   the table WAGATE_POSTGRES_TABLE and its expires_at index, in
             the database of WAGATE_POSTGRES_URL (the SQL is in deployments/README.md)
  dynamodb   the table WAGATE_DYNAMODB_TABLE (on-demand capacity, partition
             key k of type S) with TTL on the attribute x
  redis, nats
             nothing to create (JetStream buckets are created by the
             processes at start-up)

A live table that conflicts with the layout is an error naming the
difference; nothing is altered or deleted.`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "init",
		Short: "Create the table if it does not exist, then check it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDedupe(cmd.Context(), cmd.OutOrStdout(), true)
		},
	}, &cobra.Command{
		Use:   "check",
		Short: "Check that the table exists and matches the layout",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDedupe(cmd.Context(), cmd.OutOrStdout(), false)
		},
	})
	return cmd
}

// runDedupe creates (init) or checks the configured backend's table.
func runDedupe(ctx context.Context, out io.Writer, init bool) error {
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, dedupeTimeout)
	defer cancel()
	verb := "checked"
	if init {
		verb = "in place"
	}
	switch cfg.DedupeBackend {
	case "postgres":
		p, closeStore, err := connect.Postgres(ctx, cfg)
		if err != nil {
			return err
		}
		defer closeStore()
		if init {
			err = p.InitSchema(ctx)
		} else {
			err = p.CheckSchema(ctx)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "postgres table %s and its expires_at index: %s\n", cfg.PostgresTable, verb)
	case "dynamodb":
		d, err := connect.DynamoDB(ctx, cfg)
		if err != nil {
			return err
		}
		if init {
			err = d.InitTable(ctx)
		} else {
			err = d.CheckTable(ctx)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "dynamodb table %s: %s\n", cfg.DynamoDBTable, verb)
		ttl, err := d.TTLAttribute(ctx)
		if err != nil {
			return err
		}
		if ttl == "" {
			fmt.Fprintf(out, "warning: TTL is off on table %s (or the server has none): expired items are ignored but never deleted\n", cfg.DynamoDBTable)
		}
	default:
		fmt.Fprintf(out, "dedupe backend %s has no table to create or check\n", cfg.DedupeBackend)
	}
	return nil
}

// storeName says which dedupe store a configuration uses, for the operator.
func storeName(cfg config.Config) string {
	switch cfg.DedupeBackend {
	case "nats":
		return "JetStream key-value bucket " + cfg.KVBucket
	case "postgres":
		return "postgres table " + cfg.PostgresTable
	case "dynamodb":
		return "dynamodb table " + cfg.DynamoDBTable
	}
	return "redis " + connect.RedactURL(cfg.RedisURL)
}
