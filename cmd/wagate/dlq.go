package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/worker"
)

// letter is one dead letter, read from the dead-letter stream.
type letter struct {
	seq         uint64
	subject     string // in the dead-letter stream
	stored      time.Time
	header      nats.Header
	data        []byte
	key         string
	kind        string
	reason      string
	deliveries  string
	origSubject string // where requeue publishes it
	origSeq     string
	failedAt    time.Time
	headersOnly bool // read without its payload
}

// readLetter interprets a dead letter's headers (and payload, when they do
// not name the key or kind).
func readLetter(seq uint64, subject string, stored time.Time, h nats.Header, data []byte) letter {
	d := worker.ReadDeadLetter(subject, stored, h, data)
	return letter{seq: seq, subject: subject, stored: stored, header: h, data: data,
		key: d.Key, kind: d.Kind, reason: d.Reason, deliveries: d.Deliveries,
		origSubject: d.OriginalSubject, origSeq: d.OriginalSequence, failedAt: d.FailedAt}
}

// dlqFilter selects dead letters: by sequence, or by subject, key and
// reason, or all of them.
type dlqFilter struct {
	seqs    []uint64
	all     bool
	subject string
	key     string
	reason  string
}

func (f *dlqFilter) addFlags(cmd *cobra.Command, withAll bool) {
	if withAll {
		cmd.Flags().BoolVar(&f.all, "all", false, "every dead letter")
	}
	cmd.Flags().StringVar(&f.subject, "subject", "", "dead-letter subject filter, for example 'wagate.dlq.cloud.status.>'")
	cmd.Flags().StringVar(&f.key, "key", "", "dedupe key of the event")
	cmd.Flags().StringVar(&f.reason, "reason", "", "text the error contains (case-insensitive)")
}

// parseSeqs reads sequence arguments.
func (f *dlqFilter) parseSeqs(args []string) error {
	for _, a := range args {
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil || n == 0 {
			return fmt.Errorf("%q is not a dead-letter sequence (a positive number, as in the SEQ column of wagate dlq list)", a)
		}
		f.seqs = append(f.seqs, n)
	}
	return nil
}

// empty reports whether nothing selects any dead letter.
func (f *dlqFilter) empty() bool {
	return len(f.seqs) == 0 && !f.all && f.subject == "" && f.key == "" && f.reason == ""
}

// matches reports whether l passes the key and reason filters.
func (f *dlqFilter) matches(l letter) bool {
	if f.key != "" && l.key != f.key {
		return false
	}
	if f.reason != "" && !strings.Contains(strings.ToLower(l.reason), strings.ToLower(f.reason)) {
		return false
	}
	return true
}

// letters returns the dead letters f selects, in sequence order, with their
// payloads when withData (a selection by sequence always has them).
// Sequences that do not exist are reported in missing.
func (f *dlqFilter) letters(ctx context.Context, o *ops, withData bool) (ls []letter, missing []uint64, err error) {
	st, err := o.stream(ctx, o.sc.DLQ)
	if err != nil {
		return nil, nil, err
	}
	if len(f.seqs) > 0 {
		for _, seq := range f.seqs {
			raw, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				missing = append(missing, seq)
				continue
			}
			if err != nil {
				return nil, nil, fmt.Errorf("dlq: get %d: %w", seq, err)
			}
			if l := readLetter(raw.Sequence, raw.Subject, raw.Time, raw.Header, raw.Data); f.matches(l) {
				ls = append(ls, l)
			}
		}
		return ls, missing, nil
	}
	err = scan(ctx, o.js, o.sc.DLQ, scanRange{subject: f.subject, headersOnly: !withData}, func(uint64) {},
		func(m jetstream.Msg, meta *jetstream.MsgMetadata) error {
			l := readLetter(meta.Sequence.Stream, m.Subject(), meta.Timestamp, m.Headers(), m.Data())
			l.headersOnly = !withData
			if f.matches(l) {
				ls = append(ls, l)
			}
			return nil
		})
	return ls, nil, err
}

func newDLQCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "List, show, requeue and purge dead letters",
		Long: `Work with the dead-letter stream (WAGATE_DLQ_STREAM, default WAGATE_DLQ).

An event is dead-lettered when its handler fails permanently, when its last
delivery (WAGATE_MAX_DELIVER) fails, when its payload is not an event, or
when JetStream stops delivering it. The dead letter holds the payload byte
for byte, the original headers, and Wagate-Error (why), Wagate-Deliveries,
Wagate-Original-Subject, -Sequence, -Stream, -Msg-Id (the key) and
Wagate-Failed-At. A dead-lettered event is never marked done, so a requeued
one runs once more under the lock. Dead letters are kept until purged.`,
	}
	cmd.AddCommand(newDLQListCmd(), newDLQShowCmd(), newDLQRequeueCmd(), newDLQPurgeCmd())
	return cmd
}

func newDLQListCmd() *cobra.Command {
	var f dlqFilter
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List dead letters: sequence, age, deliveries, kind, key, original sequence, reason",
		Long: `List dead letters, oldest first, one a line: SEQ (in the dead-letter
stream: the argument of show, requeue and purge), AGE (since it failed),
DELIVERIES, KIND, KEY, ORIG-SEQ (its sequence in the events stream) and
REASON (the error, cut to 100 characters; "show" prints it whole). Filters
combine: --subject, --key, --reason. A summary line ends the list.`,
		Example: `  wagate dlq list
  wagate dlq list --reason "HTTP 4" --subject 'wagate.dlq.cloud.message.>'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := openOps(cmd.Context(), "wagate-dlq", false)
			if err != nil {
				return err
			}
			defer o.close()
			ls, _, err := f.letters(cmd.Context(), o, false)
			if err != nil {
				return err
			}
			shown := ls
			if limit > 0 && len(shown) > limit {
				shown = shown[:limit]
			}
			printLetters(cmd.OutOrStdout(), shown, time.Now())
			fmt.Fprintf(cmd.OutOrStdout(), "%d dead letters", len(ls))
			if len(shown) < len(ls) {
				fmt.Fprintf(cmd.OutOrStdout(), " (%d shown)", len(shown))
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
	f.addFlags(cmd, false)
	cmd.Flags().IntVar(&limit, "limit", 0, "show at most this many (0: all)")
	return cmd
}

// printLetters writes one line per dead letter, with a header line.
func printLetters(w io.Writer, ls []letter, now time.Time) {
	fmt.Fprintf(w, "%-8s %-5s %-10s %-8s %-25s %-9s %s\n", "SEQ", "AGE", "DELIVERIES", "KIND", "KEY", "ORIG-SEQ", "REASON")
	for _, l := range ls {
		fmt.Fprintf(w, "%-8d %-5s %-10s %-8s %-25s %-9s %s\n", l.seq, ago(l.failedAt, now), cmp.Or(l.deliveries, "-"),
			cmp.Or(l.kind, "-"), cmp.Or(l.key, "-"), cmp.Or(l.origSeq, "-"), printable(cut(l.reason, 100)))
	}
}

// cut shortens s to n runes, marking the cut.
func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func newDLQShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show <seq>",
		Short: "Print one dead letter: its headers, then its payload as stored",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var f dlqFilter
			if err := f.parseSeqs(args); err != nil {
				return fmt.Errorf("dlq show: %w", err)
			}
			o, err := openOps(cmd.Context(), "wagate-dlq", false)
			if err != nil {
				return err
			}
			defer o.close()
			ls, missing, err := f.letters(cmd.Context(), o, true)
			if err != nil {
				return err
			}
			if len(missing) > 0 || len(ls) == 0 {
				return fmt.Errorf("dlq show: no dead letter %s in %s", args[0], o.sc.DLQ)
			}
			printLetter(cmd.OutOrStdout(), ls[0])
			return nil
		},
	}
}

// printLetter writes a dead letter's place, headers (sorted) and payload.
func printLetter(w io.Writer, l letter) {
	fmt.Fprintf(w, "seq       %d\nsubject   %s\nstored    %s\n\n", l.seq, l.subject, l.stored.UTC().Format(time.RFC3339Nano))
	names := make([]string, 0, len(l.header))
	for k := range l.header {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		for _, v := range l.header[k] {
			fmt.Fprintf(w, "%s: %s\n", printable(k), printable(v))
		}
	}
	fmt.Fprintf(w, "\n%s\n", printable(string(l.data)))
}

// printable returns s with every control character but a line break or a
// tab written as a JSON escape (\u001b), so that text from a dead letter
// (a downstream's answer, an item's content) cannot drive the terminal it
// is printed on.
func printable(s string) string {
	if !strings.ContainsFunc(s, escaped) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if escaped(r) {
			fmt.Fprintf(&b, "\\u%04x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// escaped reports whether printable escapes r.
func escaped(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }

// dlqTarget resolves the dead letters a requeue or purge acts on.
func dlqTarget(ctx context.Context, cmdName string, o *ops, f *dlqFilter, withData bool, out io.Writer) ([]letter, error) {
	if f.empty() {
		return nil, fmt.Errorf("dlq %s: name dead letters by sequence, or select them with --all, --subject, --key or --reason", cmdName)
	}
	ls, missing, err := f.letters(ctx, o, withData)
	if err != nil {
		return nil, err
	}
	for _, seq := range missing {
		fmt.Fprintf(out, "no dead letter %d in %s\n", seq, o.sc.DLQ)
	}
	return ls, nil
}

func newDLQRequeueCmd() *cobra.Command {
	var f dlqFilter
	cmd := &cobra.Command{
		Use:   "requeue [seq]...",
		Short: "Put dead letters back into the events stream: each runs once more under the lock",
		Long: `Put dead letters back into the events stream, for the workers to run once
more under the lock (a dead-lettered event is never marked done, so it runs;
one done since, by a replay, is acknowledged without running).

Each is published to its original subject with its payload byte for byte and
its original headers (the dead-letter headers dropped, Wagate-Requeued-From
added), with Nats-Msg-Id "<key>:requeue:<dead-letter seq>" so that JetStream
does not drop it as a copy of the original, and it is deleted from the
dead-letter stream only after the PubAck. Running the same requeue twice
within the duplicate window (WAGATE_DUPLICATE_WINDOW) stores it once. A dead
letter whose payload is not an event is left where it is: it would only fail
again.

Select by sequence (arguments), or with --all, --subject, --key, --reason.`,
		Example: `  wagate dlq requeue 12 13
  wagate dlq requeue --reason "HTTP 503"
  wagate dlq requeue --all`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.parseSeqs(args); err != nil {
				return fmt.Errorf("dlq requeue: %w", err)
			}
			o, err := openOps(cmd.Context(), "wagate-dlq", false)
			if err != nil {
				return err
			}
			defer o.close()
			out := cmd.OutOrStdout()
			ls, err := dlqTarget(cmd.Context(), "requeue", o, &f, false, out)
			if err != nil {
				return err
			}
			st, err := o.stream(cmd.Context(), o.sc.DLQ)
			if err != nil {
				return err
			}
			requeued, failed := 0, 0
			for _, l := range ls {
				seq, err := requeue(cmd.Context(), o, st, l)
				if err != nil {
					failed++
					fmt.Fprintf(out, "dead letter %d (%s): not requeued: %v\n", l.seq, cmp.Or(l.key, "-"), err)
					continue
				}
				requeued++
				fmt.Fprintf(out, "dead letter %d (%s) requeued to %s as %s seq %d\n", l.seq, l.key, l.origSubject, o.sc.Events, seq)
			}
			fmt.Fprintf(out, "requeued %d, failed %d\n", requeued, failed)
			if failed > 0 {
				return fmt.Errorf("dlq requeue: %d of %d dead letters not requeued", failed, len(ls))
			}
			return nil
		},
	}
	f.addFlags(cmd, true)
	return cmd
}

// requeue publishes l to the events stream and then deletes it from the
// dead-letter stream st. It returns the event's new sequence.
func requeue(ctx context.Context, o *ops, st jetstream.Stream, l letter) (uint64, error) {
	if l.headersOnly {
		// Selected by its headers: fetch it whole now, one at a time.
		raw, err := st.GetMsg(ctx, l.seq)
		if err != nil {
			return 0, fmt.Errorf("get: %w", err)
		}
		l = readLetter(raw.Sequence, raw.Subject, raw.Time, raw.Header, raw.Data)
	}
	ev, err := messages.Decode(l.data)
	if err != nil {
		return 0, fmt.Errorf("payload is not an event (%v); left in the dead-letter stream", err)
	}
	msg := nats.NewMsg(l.origSubject)
	msg.Header = worker.RequeueHeader(l.header)
	seqText := strconv.FormatUint(l.seq, 10)
	msg.Header.Set(worker.HeaderRequeuedFrom, seqText)
	msg.Data = l.data
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ack, err := o.js.PublishMsg(pctx, msg,
		jetstream.WithMsgID(worker.RequeueMsgID(ev.Key, l.seq)),
		jetstream.WithExpectStream(o.sc.Events))
	if err != nil {
		return 0, fmt.Errorf("publish to %s: %w", l.origSubject, err)
	}
	if err := st.DeleteMsg(pctx, l.seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return ack.Sequence, fmt.Errorf("stored as %s seq %d, but not deleted from %s: %w", o.sc.Events, ack.Sequence, o.sc.DLQ, err)
	}
	return ack.Sequence, nil
}

func newDLQPurgeCmd() *cobra.Command {
	var f dlqFilter
	var yes bool
	cmd := &cobra.Command{
		Use:   "purge [seq]...",
		Short: "Delete dead letters for good (needs --yes)",
		Long: `Delete dead letters from the dead-letter stream for good. Select by sequence
(arguments), or with --all, --subject, --key, --reason. Without --yes the
selected dead letters are listed and nothing is deleted (exit status 1).`,
		Example: `  wagate dlq purge --reason "HTTP 400"          # list what would go
  wagate dlq purge --reason "HTTP 400" --yes
  wagate dlq purge --all --yes`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.parseSeqs(args); err != nil {
				return fmt.Errorf("dlq purge: %w", err)
			}
			o, err := openOps(cmd.Context(), "wagate-dlq", false)
			if err != nil {
				return err
			}
			defer o.close()
			out := cmd.OutOrStdout()
			ls, err := dlqTarget(cmd.Context(), "purge", o, &f, false, out)
			if err != nil {
				return err
			}
			if !yes {
				printLetters(out, ls, time.Now())
				return fmt.Errorf("dlq purge: %d dead letters selected, nothing deleted: confirm with --yes", len(ls))
			}
			st, err := o.stream(cmd.Context(), o.sc.DLQ)
			if err != nil {
				return err
			}
			purged, err := purge(cmd.Context(), st, &f, ls)
			fmt.Fprintf(out, "purged %d dead letters\n", purged)
			return err
		},
	}
	f.addFlags(cmd, true)
	cmd.Flags().BoolVar(&yes, "yes", false, "really delete")
	return cmd
}

// purge deletes the selected dead letters: the whole stream, or a subject, in
// one request when nothing else narrows the selection; else one by one.
func purge(ctx context.Context, st jetstream.Stream, f *dlqFilter, ls []letter) (int, error) {
	if len(f.seqs) == 0 && f.key == "" && f.reason == "" {
		var opts []jetstream.StreamPurgeOpt
		if f.subject != "" {
			opts = append(opts, jetstream.WithPurgeSubject(f.subject))
		}
		// Up to the last one listed: later dead letters were not selected.
		if len(ls) == 0 {
			return 0, nil
		}
		opts = append(opts, jetstream.WithPurgeSequence(ls[len(ls)-1].seq+1))
		if err := st.Purge(ctx, opts...); err != nil {
			return 0, fmt.Errorf("dlq purge: %w", err)
		}
		return len(ls), nil
	}
	n := 0
	for _, l := range ls {
		if err := st.DeleteMsg(ctx, l.seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return n, fmt.Errorf("dlq purge: delete %d: %w", l.seq, err)
		}
		n++
	}
	return n, nil
}
