package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/connect"
	"github.com/wagate/wagate/internal/forward"
	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/worker"
)

// replayOptions are the flags of "wagate replay".
type replayOptions struct {
	since, until     string
	fromSeq, toSeq   uint64
	subject          string
	keys, wamids     []string
	ref              eventRef
	all              bool
	dryRun, force    bool
	rate             float64
	concurrency      int
	verbose          bool
	progressInterval time.Duration
}

// replaySelection is what the flags select, resolved.
type replaySelection struct {
	r    scanRange
	keys map[string]bool // nil: every event in r
}

func newReplayCmd() *cobra.Command {
	var opts replayOptions
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Run stored events through the worker's handler again, under the lock",
		Long: `Run events stored in the events stream (WAGATE_EVENTS_STREAM) through the
configured handler again (WAGATE_HANDLER, WAGATE_FORWARD_URL), with the
worker's own code: the event's lock is taken with a new fencing number, kept
alive while the handler runs, and the key is marked done on success.

By default only events that never completed run: a key already done is
skipped. --force runs done keys again, each with a fencing number higher
than any earlier run's (the handler sees Wagate-Delivery 0). A key locked by a
live worker is reported busy and not run, so replay is safe while traffic
flows. Each key runs at most once per replay, even if it was stored twice.

Select events with one or more of (they combine):
  --since T, --until T        stored at or after / at or before T: an RFC 3339
                              time or a duration before now ("90m", "48h")
  --from-seq N, --to-seq N    stream sequence range, both included
  --subject S                 subject filter, wildcards allowed, for example
                              wagate.events.cloud.status.> (default every event)
  --key K (repeatable)        dedupe keys ("wa:…")
  --wamid ID (repeatable)     Cloud API ids, with --account, and --kind/--status
                              as for "wagate key"
  --all                       every stored event (needed when nothing else is given)
Only events stored when the replay starts are selected: the stream keeps
events for WAGATE_STREAM_MAX_AGE (default 7 days).

Other flags:
  --dry-run          list the selected events, their state and what replay
                     would do; run nothing
  --force            run done keys again
  --rate R           at most R events per second (default 0: no limit)
  --concurrency N    events run at once (default 1)
  -v, --verbose      a line per event, and the worker's logs on stderr

Output: a progress bar when stdout is a terminal, else a progress line every
few seconds; a line per event that did not complete (busy, failed); a summary:
selected, ran, skipped done, busy, failed.

Exit status: 0 when no selected event failed (busy events are reported, not
failures: run the replay again later); 1 when an event failed, on bad flags,
or when interrupted (Ctrl-C cancels the running handlers and releases their
locks).`,
		Example: `  wagate replay --since 2h --dry-run
  wagate replay --since 2025-01-31T08:00:00Z --until 2025-01-31T09:00:00Z --rate 50
  wagate replay --subject 'wagate.events.cloud.message.>' --from-seq 1200 --to-seq 1800
  wagate replay --wamid wamid.HBgLMTU1NTAwMDAwMDEVAgASGBQzQUI= --account 106540352242922 --force`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sel, err := opts.selection(time.Now())
			if err != nil {
				return fmt.Errorf("replay: %w", err)
			}
			return runReplay(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), opts, sel)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.since, "since", "", "events stored at or after this time: RFC 3339, or a duration before now (2h)")
	f.StringVar(&opts.until, "until", "", "events stored at or before this time: RFC 3339, or a duration before now")
	f.Uint64Var(&opts.fromSeq, "from-seq", 0, "first stream sequence (included)")
	f.Uint64Var(&opts.toSeq, "to-seq", 0, "last stream sequence (included)")
	f.StringVar(&opts.subject, "subject", "", "subject filter, for example 'wagate.events.cloud.status.>' (default every event)")
	f.StringArrayVar(&opts.keys, "key", nil, "dedupe key to replay (repeatable)")
	f.StringArrayVar(&opts.wamids, "wamid", nil, "Cloud API id to replay, with --account (repeatable)")
	opts.ref.addFlags(cmd)
	f.BoolVar(&opts.all, "all", false, "every stored event")
	f.BoolVar(&opts.dryRun, "dry-run", false, "list what would run; run nothing")
	f.BoolVar(&opts.force, "force", false, "run keys that are already done again")
	f.Float64Var(&opts.rate, "rate", 0, "at most this many events per second (0: no limit)")
	f.IntVar(&opts.concurrency, "concurrency", 1, "events run at once")
	f.BoolVarP(&opts.verbose, "verbose", "v", false, "a line per event, and the worker's logs")
	opts.progressInterval = 2 * time.Second
	return cmd
}

// selection checks the flags and resolves them.
func (o replayOptions) selection(now time.Time) (replaySelection, error) {
	var sel replaySelection
	var err error
	if o.since != "" {
		if sel.r.since, err = parseWhen(o.since, now); err != nil {
			return sel, fmt.Errorf("--since: %w", err)
		}
	}
	if o.until != "" {
		if sel.r.until, err = parseWhen(o.until, now); err != nil {
			return sel, fmt.Errorf("--until: %w", err)
		}
	}
	if !sel.r.since.IsZero() && !sel.r.until.IsZero() && sel.r.until.Before(sel.r.since) {
		return sel, errors.New("--until is before --since")
	}
	if o.toSeq != 0 && o.toSeq < o.fromSeq {
		return sel, fmt.Errorf("--to-seq %d is below --from-seq %d", o.toSeq, o.fromSeq)
	}
	sel.r.fromSeq, sel.r.toSeq = o.fromSeq, o.toSeq
	if o.concurrency < 1 {
		return sel, fmt.Errorf("--concurrency %d: want 1 or more", o.concurrency)
	}
	if o.rate < 0 {
		return sel, fmt.Errorf("--rate %g: want 0 (no limit) or more", o.rate)
	}
	sel.r.subject = o.subject
	if len(o.keys)+len(o.wamids) > 0 {
		sel.keys = map[string]bool{}
		sel.r.headersOnly = true // match Nats-Msg-Id, then fetch the payload
	}
	for _, k := range o.keys {
		key, _, err := resolveKey(k, eventRef{})
		if err != nil {
			return sel, fmt.Errorf("--key: %w", err)
		}
		sel.keys[key] = true
	}
	for _, id := range o.wamids {
		key, _, err := resolveKey(id, o.ref)
		if err != nil {
			return sel, fmt.Errorf("--wamid: %w", err)
		}
		sel.keys[key] = true
	}
	if o.subject == "" && len(o.keys) == 0 && len(o.wamids) > 0 {
		// Every wamid lives on the subjects of its provider, kind and
		// account: with a slot, with a conversation token (events stored by
		// earlier versions), or with neither.
		account := messages.SubjectPrefix + "." + messages.Token(messages.ProviderCloud) + "." + messages.Token(o.ref.kind) + "." + messages.Token(o.ref.account)
		sel.r.subjects = []string{account, account + ".*"}
	}
	if !o.all && o.since == "" && o.until == "" && o.fromSeq == 0 && o.toSeq == 0 && o.subject == "" && sel.keys == nil {
		return sel, errors.New("select events with --since, --until, --from-seq, --to-seq, --subject, --key or --wamid, or pass --all for every stored event")
	}
	return sel, nil
}

// replayTally counts what became of the selected events.
type replayTally struct {
	mu                                   sync.Mutex
	selected, ran, skipped, busy, failed int
	interrupted, repeated, undecodable   int
	firstSeq, lastSeq                    uint64
}

func (t *replayTally) line(dryRun bool) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var s string
	if dryRun {
		s = fmt.Sprintf("dry run: selected %d, would run %d, would skip %d (done), busy %d, undecodable %d",
			t.selected, t.ran, t.skipped, t.busy, t.undecodable)
	} else {
		s = fmt.Sprintf("replay: selected %d, ran %d, skipped done %d, busy %d, failed %d",
			t.selected, t.ran, t.skipped, t.busy, t.failed+t.undecodable)
		if t.interrupted > 0 {
			s += fmt.Sprintf(", interrupted %d", t.interrupted)
		}
	}
	if t.repeated > 0 {
		s += fmt.Sprintf(" (%d stored copies of a key already selected were left out)", t.repeated)
	}
	if t.selected > 0 {
		s += fmt.Sprintf("; stream sequences %d to %d", t.firstSeq, t.lastSeq)
	}
	return s
}

// replayProgress shows how far a replay is: a bar on a terminal, else a line
// every interval. Its methods are safe for concurrent use.
type replayProgress struct {
	mu       sync.Mutex
	w        io.Writer
	bar      *progressbar.ProgressBar // nil: plain lines
	total    int64
	done     int64
	interval time.Duration
	next     time.Time
	tally    *replayTally
}

func newReplayProgress(w io.Writer, total uint64, interval time.Duration, tally *replayTally) *replayProgress {
	p := &replayProgress{w: w, total: int64(total), interval: interval, next: time.Now().Add(interval), tally: tally}
	if isTerminal(w) {
		p.bar = progressbar.NewOptions64(int64(total),
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("replay"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("events"),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionFullWidth(),
			progressbar.OptionClearOnFinish(),
		)
	}
	return p
}

// step counts one message read.
func (p *replayProgress) step() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	if p.bar != nil {
		_ = p.bar.Add(1)
		return
	}
	if now := time.Now(); now.After(p.next) {
		p.next = now.Add(p.interval)
		fmt.Fprintf(p.w, "progress: %d/%d read; %s\n", p.done, p.total, p.tally.line(false))
	}
}

// println writes one line above the bar.
func (p *replayProgress) println(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_, _ = progressbar.Bprintln(p.bar, s)
		return
	}
	fmt.Fprintln(p.w, s)
}

// finish removes the bar.
func (p *replayProgress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

func runReplay(ctx context.Context, out, errOut io.Writer, opts replayOptions, sel replaySelection) error {
	o, err := openOps(ctx, "wagate-replay", true)
	if err != nil {
		return err
	}
	defer o.close()
	stopTracing, err := connect.Tracing(ctx, o.cfg, "wagate-replay", o.log)
	if err != nil {
		return err
	}
	defer stopTracing()

	var w *worker.Worker
	if !opts.dryRun {
		level := slog.LevelWarn
		if opts.verbose {
			level = slog.LevelInfo
		}
		h, herr := forward.Handler(o.cfg, o.log) // the handler the worker would run
		if herr != nil {
			return herr
		}
		w, err = worker.New(worker.Config{
			Streams: o.sc,
			LockTTL: o.cfg.LockTTL,
			Logger:  slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: level})),
		}, o.js, o.store, h)
		if err != nil {
			return err
		}
	}
	st, err := o.stream(ctx, o.sc.Events)
	if err != nil {
		return err
	}

	var (
		tally   replayTally
		prog    *replayProgress
		seen    = map[string]bool{}
		limiter = rate.NewLimiter(rate.Inf, 1)
		g       errgroup.Group
	)
	if opts.rate > 0 {
		limiter = rate.NewLimiter(rate.Limit(opts.rate), 1)
	}
	g.SetLimit(opts.concurrency)
	if opts.dryRun {
		fmt.Fprintf(out, "%-8s %-20s %-25s %-8s %-8s %-10s %s\n", "SEQ", "STORED", "KEY", "KIND", "STATE", "ACTION", "SUBJECT")
	}

	scanErr := scan(ctx, o.js, o.sc.Events, sel.r, func(total uint64) {
		prog = newReplayProgress(out, total, opts.progressInterval, &tally)
	}, func(m jetstream.Msg, meta *jetstream.MsgMetadata) error {
		prog.step()
		seq := meta.Sequence.Stream
		key := m.Headers().Get(nats.MsgIdHdr)
		data := m.Data()
		if sel.keys != nil {
			if !sel.keys[key] {
				return nil
			}
			raw, err := st.GetMsg(ctx, seq)
			if err != nil {
				return fmt.Errorf("replay: get seq %d: %w", seq, err)
			}
			data = raw.Data
		}
		ev, derr := messages.Decode(data)
		if derr == nil {
			key = ev.Key
		}
		if seen[key] {
			tally.mu.Lock()
			tally.repeated++
			tally.mu.Unlock()
			return nil
		}
		seen[key] = true
		tally.mu.Lock()
		tally.selected++
		if tally.firstSeq == 0 {
			tally.firstSeq = seq
		}
		tally.lastSeq = seq
		tally.mu.Unlock()

		if derr != nil {
			tally.mu.Lock()
			tally.undecodable++
			tally.mu.Unlock()
			prog.println(fmt.Sprintf("seq %d: %s: not an event, not run: %v", seq, key, derr))
		} else if opts.dryRun {
			if err := replayPlan(ctx, o.store, prog, &tally, opts.force, seq, meta.Timestamp, m.Subject(), ev); err != nil {
				return err
			}
		} else {
			if err := limiter.Wait(ctx); err != nil {
				return err
			}
			g.Go(func() error {
				replayOne(ctx, w, prog, &tally, opts, seq, ev)
				return nil
			})
		}
		if sel.keys != nil && len(seen) == len(sel.keys) {
			return errStopScan
		}
		return nil
	})
	_ = g.Wait()
	if prog != nil {
		prog.finish()
	}
	fmt.Fprintln(out, tally.line(opts.dryRun))
	if sel.keys != nil && len(seen) < len(sel.keys) && scanErr == nil {
		for k := range sel.keys {
			if !seen[k] {
				fmt.Fprintf(out, "not found in stream %s: %s\n", o.sc.Events, k)
			}
		}
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("replay: interrupted: %w", ctx.Err())
	case scanErr != nil:
		return fmt.Errorf("replay: %w", scanErr)
	case !opts.dryRun && tally.failed+tally.undecodable+tally.interrupted > 0:
		return fmt.Errorf("replay: %d of %d events failed", tally.failed+tally.undecodable+tally.interrupted, tally.selected)
	}
	return nil
}

// replayOne runs one event through the worker and counts the outcome.
func replayOne(ctx context.Context, w *worker.Worker, prog *replayProgress, tally *replayTally, opts replayOptions, seq uint64, ev messages.Event) {
	res, err := w.Replay(ctx, ev, worker.ReplayOptions{Force: opts.force})
	tally.mu.Lock()
	switch res.Outcome {
	case worker.OutcomeDone:
		tally.ran++
	case worker.OutcomeSkipped:
		tally.skipped++
	case worker.OutcomeBusy:
		tally.busy++
	case worker.OutcomeInterrupted:
		tally.interrupted++
	default:
		tally.failed++
	}
	tally.mu.Unlock()
	switch {
	case err != nil:
		prog.println(fmt.Sprintf("seq %d: %s %s: %s: %v", seq, ev.Key, ev.Kind, res.Outcome, err))
	case opts.verbose:
		prog.println(fmt.Sprintf("seq %d: %s %s: %s fence %d", seq, ev.Key, ev.Kind, res.Outcome, res.Fence))
	}
}

// replayPlan prints what replay would do with one event.
func replayPlan(ctx context.Context, store dedupe.Store, prog *replayProgress, tally *replayTally, force bool, seq uint64, stored time.Time, subject string, ev messages.Event) error {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	rec, err := store.Lookup(lctx, ev.Key)
	cancel()
	if err != nil {
		return fmt.Errorf("replay: lookup %s: %w", ev.Key, err)
	}
	action := "run"
	tally.mu.Lock()
	switch {
	case rec.Locked:
		action = "busy"
		tally.busy++
	case rec.State == dedupe.Done && !force:
		action = "skip"
		tally.skipped++
	case rec.State == dedupe.Done:
		action = "run-again"
		tally.ran++
	default:
		tally.ran++
	}
	tally.mu.Unlock()
	prog.println(fmt.Sprintf("%-8d %-20s %-25s %-8s %-8s %-10s %s", seq, stored.UTC().Format(time.RFC3339), ev.Key, ev.Kind, rec.State, action, subject))
	return nil
}
