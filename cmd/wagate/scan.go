package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// scanRange selects messages of a stream by subject, sequence and time. The
// zero value selects every message stored when the scan starts.
type scanRange struct {
	// subject filters by subject (wildcards allowed); "" means all.
	subject string
	// subjects, when set, filters by any of several subjects in subject's
	// place.
	subjects []string
	// fromSeq and toSeq bound the stream sequence, both included; 0 means
	// no bound. Messages stored after the scan started are never selected.
	fromSeq, toSeq uint64
	// since and until bound the time the message was stored, both
	// included; zero means no bound.
	since, until time.Time
	// headersOnly reads the headers without the payload (Nats-Msg-Size
	// carries its size).
	headersOnly bool
}

// errStopScan, returned by a scan's callback, ends the scan without error.
var errStopScan = errors.New("stop scan")

// scanIdle is how long a scan waits for the next message before checking
// whether any is left (messages may expire while it runs).
const scanIdle = 5 * time.Second

// scanInactive is when the server deletes a scan's consumer if the command
// died without deleting it.
const scanInactive = 5 * time.Minute

// scan reads the messages r selects from the named stream, in stream order,
// through an ephemeral consumer without acknowledgements (deleted at the
// end). It first calls begin with the number of messages that match the
// subject from the start position (an upper bound of what fn will see), then
// fn for each selected message, until fn returns an error (errStopScan ends
// the scan with nil) or the selection is done. It returns ctx's error when ctx
// ends first.
func scan(ctx context.Context, js jetstream.JetStream, stream string, r scanRange,
	begin func(total uint64), fn func(m jetstream.Msg, meta *jetstream.MsgMetadata) error) error {
	st, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("stream %s does not exist (create it with: wagate streams create)", stream)
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	last := info.State.LastSeq
	if r.toSeq != 0 && r.toSeq < last {
		last = r.toSeq
	}
	if info.State.Msgs == 0 || last == 0 || r.fromSeq > last || (!r.until.IsZero() && r.until.Before(r.since)) {
		begin(0)
		return nil
	}

	cc := jetstream.ConsumerConfig{
		Description:       "wagate command line scan",
		AckPolicy:         jetstream.AckNonePolicy,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		FilterSubject:     r.subject,
		FilterSubjects:    r.subjects,
		HeadersOnly:       r.headersOnly,
		MemoryStorage:     true,
		InactiveThreshold: scanInactive,
	}
	switch {
	case r.fromSeq > 0:
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, r.fromSeq
	case !r.since.IsZero():
		since := r.since
		cc.DeliverPolicy, cc.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := st.CreateConsumer(ctx, cc)
	if err != nil {
		return fmt.Errorf("stream %s: scan consumer: %w", stream, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = st.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	pending := cons.CachedInfo().NumPending
	begin(pending)
	if pending == 0 {
		return nil
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(64))
	if err != nil {
		return fmt.Errorf("stream %s: scan: %w", stream, err)
	}
	defer it.Stop()

	for seen := uint64(0); seen < pending; {
		nctx, cancel := context.WithTimeout(ctx, scanIdle)
		m, err := it.Next(jetstream.NextContext(nctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, context.DeadlineExceeded) {
				// Nothing came: done if nothing is left (messages the count
				// included may have expired since).
				ci, ierr := cons.Info(ctx)
				if ierr == nil && ci.NumPending == 0 {
					return nil
				}
				continue
			}
			return fmt.Errorf("stream %s: scan: %w", stream, err)
		}
		seen++
		meta, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("stream %s: scan: %w", stream, err)
		}
		if meta.Sequence.Stream > last || (!r.until.IsZero() && meta.Timestamp.After(r.until)) {
			return nil
		}
		if !r.since.IsZero() && meta.Timestamp.Before(r.since) {
			continue
		}
		if err := fn(m, meta); err != nil {
			if errors.Is(err, errStopScan) {
				return nil
			}
			return err
		}
	}
	return nil
}
