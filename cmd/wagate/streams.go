package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/wagate/wagate/messages/streams"
)

func newStreamsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "streams",
		Short: "Show the JetStream streams and the workers' consumer: messages, pending, ack pending, redelivered, lag",
		Long: `Show the events stream, the dead-letter stream and the workers' durable
consumer, as configured by WAGATE_EVENTS_STREAM, WAGATE_DLQ_STREAM and
WAGATE_CONSUMER.

For each stream: subjects, storage, replicas, max age, duplicate window,
messages, bytes, and the first and last sequence with their time. For the
consumer:
  pending       events stored and not yet delivered to any worker
  ack pending   delivered and not yet acknowledged (being processed, or
                waiting for a redelivery after a Nak)
  redelivered   of those, delivered more than once
  waiting       pull requests of idle workers
  lag           pending + ack pending: events stored and not yet settled
  ack floor     the stream sequence below which every event is settled
A stream or consumer that does not exist is shown as missing; "wagate streams
create" creates them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := openOps(cmd.Context(), "wagate-streams", false)
			if err != nil {
				return err
			}
			defer o.close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			return showStreams(ctx, cmd.OutOrStdout(), o.js, o.sc, time.Now())
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "create",
		Short: "Create the streams and the workers' consumer, or update them to the configuration",
		Long: `Create the events stream, the dead-letter stream and the workers' durable
consumer, or update them to the configuration (the ingress and the worker do
the same at start-up). A live stream whose configuration cannot be updated in
place (its storage type, for example) is an error; nothing is deleted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := openOps(cmd.Context(), "wagate-streams", false)
			if err != nil {
				return err
			}
			defer o.close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			if err := streams.Ensure(ctx, o.js, o.sc); err != nil {
				return err
			}
			if _, err := streams.EnsureConsumer(ctx, o.js, o.sc); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "streams %s and %s and consumer %s are in place\n", o.sc.Events, o.sc.DLQ, o.sc.Consumer)
			return showStreams(ctx, cmd.OutOrStdout(), o.js, o.sc, time.Now())
		},
	})
	return cmd
}

// showStreams writes the state of both streams and the workers' consumer.
func showStreams(ctx context.Context, w io.Writer, js jetstream.JetStream, sc streams.Config, now time.Time) error {
	for _, name := range []string{sc.Events, sc.DLQ} {
		st, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			fmt.Fprintf(w, "stream %s: missing (create it with: wagate streams create)\n", name)
			continue
		}
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		c, s := info.Config, info.State
		maxAge := "unlimited"
		if c.MaxAge > 0 {
			maxAge = c.MaxAge.String()
		}
		fmt.Fprintf(w, "stream %s\n", name)
		fmt.Fprintf(w, "  subjects          %s\n", strings.Join(c.Subjects, " "))
		fmt.Fprintf(w, "  storage           %s, replicas %d, max age %s, duplicate window %s\n", strings.ToLower(c.Storage.String()), c.Replicas, maxAge, c.Duplicates)
		fmt.Fprintf(w, "  messages          %d (%s)\n", s.Msgs, sizeOf(s.Bytes))
		if s.Msgs > 0 {
			fmt.Fprintf(w, "  first             seq %d, %s (%s ago)\n", s.FirstSeq, s.FirstTime.UTC().Format(time.RFC3339), ago(s.FirstTime, now))
			fmt.Fprintf(w, "  last              seq %d, %s (%s ago)\n", s.LastSeq, s.LastTime.UTC().Format(time.RFC3339), ago(s.LastTime, now))
		}
		if s.NumDeleted > 0 {
			fmt.Fprintf(w, "  deleted           %d\n", s.NumDeleted)
		}
		if name != sc.Events {
			continue
		}
		cons, err := st.Consumer(ctx, sc.Consumer)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			fmt.Fprintf(w, "  consumer %s: missing (create it with: wagate streams create)\n", sc.Consumer)
			continue
		}
		if err != nil {
			return fmt.Errorf("consumer %s: %w", sc.Consumer, err)
		}
		ci, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("consumer %s: %w", sc.Consumer, err)
		}
		fmt.Fprintf(w, "  consumer %s\n", sc.Consumer)
		fmt.Fprintf(w, "    ack wait        %s, max deliver %d, max ack pending %d\n", ci.Config.AckWait, ci.Config.MaxDeliver, ci.Config.MaxAckPending)
		fmt.Fprintf(w, "    pending         %d\n", ci.NumPending)
		fmt.Fprintf(w, "    ack pending     %d\n", ci.NumAckPending)
		fmt.Fprintf(w, "    redelivered     %d\n", ci.NumRedelivered)
		fmt.Fprintf(w, "    waiting         %d\n", ci.NumWaiting)
		fmt.Fprintf(w, "    lag             %d\n", ci.NumPending+uint64(ci.NumAckPending))
		fmt.Fprintf(w, "    ack floor       seq %d\n", ci.AckFloor.Stream)
		fmt.Fprintf(w, "    delivered       seq %d\n", ci.Delivered.Stream)
	}
	return nil
}

// sizeOf formats a byte count.
func sizeOf(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
