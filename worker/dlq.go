package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/redact"
	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/messages/streams"
)

// Headers of a dead letter. A dead letter is published to
// wagate.dlq.<provider>.<kind>.<account> (the original subject's tokens after
// wagate.events) with the original payload unchanged, the original headers
// (except JetStream's own Nats-* headers) and these. Its Nats-Msg-Id is
// "dlq:<original stream sequence>", so that retries of the same dead letter
// are stored once within the duplicate window.
const (
	// HeaderError is why the event was dead-lettered: the handler's error,
	// "max deliveries reached", or why the payload is undecodable. One line,
	// at most 1024 bytes.
	HeaderError = "Wagate-Error"
	// HeaderDeliveries is JetStream's delivery count of the event, in decimal.
	HeaderDeliveries = "Wagate-Deliveries"
	// HeaderOriginalStream is the events stream's name.
	HeaderOriginalStream = "Wagate-Original-Stream"
	// HeaderOriginalSubject is the event's subject in the events stream.
	HeaderOriginalSubject = "Wagate-Original-Subject"
	// HeaderOriginalSequence is the event's sequence in the events stream, in decimal.
	HeaderOriginalSequence = "Wagate-Original-Sequence"
	// HeaderOriginalMsgID is the event's Nats-Msg-Id: its dedupe key, or for
	// an event requeued from the dead-letter stream RequeueMsgID's
	// "<key>:requeue:<dead-letter seq>" (ReadDeadLetter reads the key).
	HeaderOriginalMsgID = "Wagate-Original-Msg-Id"
	// HeaderFailedAt is when the event was dead-lettered, RFC 3339 in UTC
	// with nanoseconds.
	HeaderFailedAt = "Wagate-Failed-At"
)

// ReasonMaxDeliveries is the HeaderError of an event that JetStream stopped
// delivering because its deliveries ran out without any worker settling it
// (workers died or the handler outlived AckWait).
const ReasonMaxDeliveries = "max deliveries reached"

// maxReason bounds HeaderError.
const maxReason = 1024

// letter is one event to dead-letter.
type letter struct {
	stream     string
	subject    string
	seq        uint64
	header     nats.Header
	data       []byte
	deliveries uint64
	reason     string
}

// deadLetter publishes l to the dead-letter stream and waits for its PubAck
// (a duplicate PubAck counts: it is stored). cause labels the metric.
func (w *Worker) deadLetter(ctx context.Context, l letter, cause string) error {
	msg := nats.NewMsg(streams.DLQSubject(l.subject))
	msg.Header = copyHeader(l.header, func(string) bool { return false })
	if id := l.header.Get(nats.MsgIdHdr); id != "" {
		msg.Header.Set(HeaderOriginalMsgID, id)
	}
	msg.Header.Set(HeaderError, oneLine(redact.Text(l.reason), maxReason))
	msg.Header.Set(HeaderDeliveries, strconv.FormatUint(l.deliveries, 10))
	msg.Header.Set(HeaderOriginalStream, l.stream)
	msg.Header.Set(HeaderOriginalSubject, l.subject)
	msg.Header.Set(HeaderOriginalSequence, strconv.FormatUint(l.seq, 10))
	msg.Header.Set(HeaderFailedAt, time.Now().UTC().Format(time.RFC3339Nano))
	msg.Data = l.data
	_, err := w.js.PublishMsg(ctx, msg,
		jetstream.WithMsgID("dlq:"+strconv.FormatUint(l.seq, 10)),
		jetstream.WithExpectStream(w.cfg.Streams.DLQ))
	if err != nil {
		w.metrics.dlqErrors.Inc()
		return fmt.Errorf("worker: dead-letter seq %d: %w", l.seq, err)
	}
	w.metrics.deadLetters.WithLabelValues(cause).Inc()
	return nil
}

// oneLine makes s fit a header value and a terminal line: line breaks and
// every other control character (C0, DEL, C1: a terminal's escape
// sequences start with ESC or CSI), and the Unicode line and paragraph
// separators, become spaces, and it is cut to at most n bytes on a rune
// boundary. A downstream's answer, and any text a handler's error quotes
// (an item's, written by a WhatsApp user), reach the dead-letter header
// and wagate dlq list this way.
func oneLine(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// advisoryQueue is the queue group of the max-deliveries advisory
// subscription: each advisory is handled by one worker.
const advisoryQueue = "wagate-dlq"

// advisoryBuffer is how many advisories may wait for the watcher.
const advisoryBuffer = 4096

// watcher handles JetStream's max-deliveries advisories for the workers'
// consumer: an event whose deliveries ran out without a worker settling it
// (workers crashed, or AckWait passed with no InProgress) is fetched by its
// stream sequence and dead-lettered, unless its key is already done.
type watcher struct {
	sub    *nats.Subscription
	closed <-chan nats.SubStatus
	quit   chan struct{}
	done   chan struct{}
}

// watchMaxDeliveries subscribes to the max-deliveries advisory in the
// queue group and starts the goroutine that handles it.
func (w *Worker) watchMaxDeliveries() (*watcher, error) {
	nc := w.js.Conn()
	ch := make(chan *nats.Msg, advisoryBuffer)
	subject := w.cfg.Streams.MaxDeliveriesAdvisory()
	sub, err := nc.ChanQueueSubscribe(subject, advisoryQueue, ch)
	if err != nil {
		return nil, fmt.Errorf("worker: subscribe %s: %w", subject, err)
	}
	// Make sure the server has the interest before the first fetch.
	if err := nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("worker: subscribe %s: %w", subject, err)
	}
	a := &watcher{
		sub:    sub,
		closed: sub.StatusChanged(nats.SubscriptionClosed),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go func() {
		defer close(a.done)
		for {
			select {
			case m := <-ch:
				w.onMaxDeliveries(m)
			case <-a.quit:
				// Handle what arrived before the subscription closed.
				for {
					select {
					case m := <-ch:
						w.onMaxDeliveries(m)
					default:
						return
					}
				}
			}
		}
	}()
	return a, nil
}

// stop drains the subscription (bounded by opTimeout), handles the
// advisories already received, and waits for the goroutine.
func (a *watcher) stop() {
	if err := a.sub.Drain(); err == nil {
		t := time.NewTimer(opTimeout)
		select {
		case <-a.closed:
		case <-t.C:
		}
		t.Stop()
	}
	close(a.quit)
	<-a.done
}

// maxDeliveriesAdvisory is JetStream's io.nats.jetstream.advisory.v1.max_deliver.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// advisoryAttempts bounds the tries at dead-lettering one advisory's event.
const advisoryAttempts = 3

func (w *Worker) onMaxDeliveries(m *nats.Msg) {
	var adv maxDeliveriesAdvisory
	if err := json.Unmarshal(m.Data, &adv); err != nil || adv.StreamSeq == 0 {
		w.log.Warn("worker: unreadable max-deliveries advisory", slog.Any("error", err))
		return
	}
	if adv.Stream != w.cfg.Streams.Events || adv.Consumer != w.cfg.Streams.Consumer {
		return
	}
	log := w.log.With(slog.Uint64("seq", adv.StreamSeq), slog.Uint64("deliveries", adv.Deliveries))
	var (
		result string
		err    error
	)
	for i := range advisoryAttempts {
		if i > 0 {
			time.Sleep(time.Duration(i) * 200 * time.Millisecond)
		}
		result, err = w.deadLetterExhausted(adv, log)
		if err == nil {
			break
		}
	}
	if err != nil {
		log.Error("worker: event ran out of deliveries and could not be dead-lettered; it stays in the events stream for replay",
			slog.Any("error", err))
		result = "error"
	}
	w.metrics.advisories.WithLabelValues(result).Inc()
}

// deadLetterExhausted dead-letters the event of adv unless its key is done.
// It returns the advisory's result label, or an error worth another try.
func (w *Worker) deadLetterExhausted(adv maxDeliveriesAdvisory, log *slog.Logger) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	st, err := w.js.Stream(ctx, adv.Stream)
	if err != nil {
		return "", fmt.Errorf("worker: stream %s: %w", adv.Stream, err)
	}
	raw, err := st.GetMsg(ctx, adv.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		log.Warn("worker: event ran out of deliveries and is no longer in the stream (expired or purged)")
		return "gone", nil
	}
	if err != nil {
		return "", fmt.Errorf("worker: get seq %d: %w", adv.StreamSeq, err)
	}
	key := raw.Header.Get(nats.MsgIdHdr)
	if ev, derr := messages.Decode(raw.Data); derr == nil {
		key = ev.Key
		// Processed after all (a slow run finished): nothing to dead-letter.
		rec, lerr := w.store.Lookup(ctx, key)
		if lerr == nil && rec.State == dedupe.Done {
			log.Info("worker: event ran out of deliveries but is done", slog.String("key", key))
			w.turnSettled(raw.Subject, raw.Sequence, true)
			return "done", nil
		}
	}
	err = w.deadLetter(ctx, letter{
		stream:     adv.Stream,
		subject:    raw.Subject,
		seq:        raw.Sequence,
		header:     raw.Header,
		data:       raw.Data,
		deliveries: adv.Deliveries,
		reason:     ReasonMaxDeliveries,
	}, causeMaxDeliveries)
	if err != nil {
		return "", err
	}
	log.Error("worker: dead-lettered", slog.String("key", key), slog.String("cause", causeMaxDeliveries),
		slog.String("reason", ReasonMaxDeliveries))
	w.turnSettled(raw.Subject, raw.Sequence, true)
	return "dead_letter", nil
}
