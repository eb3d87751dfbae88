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
	"github.com/wagate/wagate/worker"
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
Workers with WAGATE_ORDER=conversation read the partition consumers
<consumer>-p0 … -p31 instead: those that exist are shown one a line, with
their total. A stream or consumer that does not exist is shown as missing;
"wagate streams create" creates them.`,
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
the same at start-up). With WAGATE_ORDER=conversation the consumers are the
32 partition consumers the workers then read (nats-server 2.11 or later), not
the workers' consumer. A live stream whose configuration cannot be updated in
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
			// The consumers the workers read: an unordered consumer beside
			// ordered workers would only pile up a backlog nobody takes.
			consumers := "consumer " + o.sc.Consumer
			if o.cfg.Order == string(worker.OrderConversation) {
				if _, err := streams.EnsurePartitionConsumers(ctx, o.js, o.sc); err != nil {
					return err
				}
				consumers = fmt.Sprintf("partition consumers %s … %s", o.sc.PartitionConsumer(0), o.sc.PartitionConsumer(streams.Partitions-1))
			} else if _, err := streams.EnsureConsumer(ctx, o.js, o.sc); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "streams %s and %s and %s are in place\n", o.sc.Events, o.sc.DLQ, consumers)
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
		infos, err := workerConsumers(ctx, st, sc)
		if err != nil {
			return err
		}
		ci, ok := infos[sc.Consumer]
		if ok {
			showConsumer(w, ci)
		}
		parts := len(infos)
		if ok {
			parts--
		}
		switch {
		case !ok && parts > 0:
			fmt.Fprintf(w, "  consumer %s: none (the workers keep order: WAGATE_ORDER=conversation)\n", sc.Consumer)
		case !ok:
			fmt.Fprintf(w, "  consumer %s: missing (create it with: wagate streams create)\n", sc.Consumer)
		}
		if parts > 0 {
			showPartitions(w, sc, infos, parts)
		}
	}
	return nil
}

// workerConsumers returns the info of the consumers of st that the workers
// read (sc.WorkerConsumers) and that exist, by name.
func workerConsumers(ctx context.Context, st jetstream.Stream, sc streams.Config) (map[string]*jetstream.ConsumerInfo, error) {
	want := map[string]bool{}
	for _, name := range sc.WorkerConsumers() {
		want[name] = true
	}
	out := map[string]*jetstream.ConsumerInfo{}
	l := st.ListConsumers(ctx)
	for ci := range l.Info() {
		if want[ci.Name] {
			out[ci.Name] = ci
		}
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("stream %s: consumers: %w", sc.Events, err)
	}
	return out, nil
}

// showPartitions writes the n partition consumers of infos that exist, their
// total and one line each.
func showPartitions(w io.Writer, sc streams.Config, infos map[string]*jetstream.ConsumerInfo, n int) {
	var pending, ackPending, redelivered uint64
	for p := range streams.Partitions {
		if ci, ok := infos[sc.PartitionConsumer(p)]; ok {
			pending += ci.NumPending
			ackPending += uint64(ci.NumAckPending)
			redelivered += uint64(ci.NumRedelivered)
		}
	}
	fmt.Fprintf(w, "  partition consumers %s … %s (WAGATE_ORDER=conversation): %d of %d\n",
		sc.PartitionConsumer(0), sc.PartitionConsumer(streams.Partitions-1), n, streams.Partitions)
	fmt.Fprintf(w, "    total           pending %d, ack pending %d, redelivered %d, lag %d\n",
		pending, ackPending, redelivered, pending+ackPending)
	width := len(sc.PartitionConsumer(streams.Partitions - 1))
	for p := range streams.Partitions {
		name := sc.PartitionConsumer(p)
		ci, ok := infos[name]
		if !ok {
			fmt.Fprintf(w, "    %-*s missing\n", width, name)
			continue
		}
		fmt.Fprintf(w, "    %-*s pending %d, ack pending %d, redelivered %d, waiting %d, lag %d, ack floor seq %d\n",
			width, name, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting,
			ci.NumPending+uint64(ci.NumAckPending), ci.AckFloor.Stream)
	}
}

// showConsumer writes the workers' consumer ci.
func showConsumer(w io.Writer, ci *jetstream.ConsumerInfo) {
	fmt.Fprintf(w, "  consumer %s\n", ci.Name)
	fmt.Fprintf(w, "    ack wait        %s, max deliver %d, max ack pending %d\n", ci.Config.AckWait, ci.Config.MaxDeliver, ci.Config.MaxAckPending)
	fmt.Fprintf(w, "    pending         %d\n", ci.NumPending)
	fmt.Fprintf(w, "    ack pending     %d\n", ci.NumAckPending)
	fmt.Fprintf(w, "    redelivered     %d\n", ci.NumRedelivered)
	fmt.Fprintf(w, "    waiting         %d\n", ci.NumWaiting)
	fmt.Fprintf(w, "    lag             %d\n", ci.NumPending+uint64(ci.NumAckPending))
	fmt.Fprintf(w, "    ack floor       seq %d\n", ci.AckFloor.Stream)
	fmt.Fprintf(w, "    delivered       seq %d\n", ci.Delivered.Stream)
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
