package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wagate/wagate/messages/streams"
)

// Order says whether the events of one conversation wait for each other.
type Order string

// The orders of Config.Order.
const (
	// OrderNone runs every event as soon as a worker has room for it: the
	// events of one conversation may run at the same time and finish in any
	// order.
	OrderNone Order = "none"
	// OrderConversation runs the events of one conversation (see
	// messages.Event.Conversation) one at a time, in stream order, which is
	// the order the ingress stored them in; the events of different
	// conversations run in parallel across every worker and its Concurrency.
	// A failed event holds the later events of its conversation until it
	// succeeds or is dead-lettered.
	OrderConversation Order = "conversation"
)

// DefaultOrderBucket is Config.OrderBucket's default.
const DefaultOrderBucket = "WAGATE_ORDER"

// How order works (OrderConversation). The subject of an event carries its
// conversation's token (messages.ConversationToken), so the stream itself
// knows the order of every conversation: the lowest stream sequence on the
// conversation's subjects (wagate.events.<provider>.*.<account>.<token>)
// above its last settled event is the one whose turn it is. The worker
// records the last settled sequence of each conversation in a JetStream
// key-value bucket (OrderBucket, one key per conversation token, written
// with compare-and-set) when it acknowledges the event (done or a duplicate)
// or dead-letters it, before the Ack or Term. A delivered event whose turn has
// not come waits, holding its message with InProgress, until the one before
// it is settled, by this worker (woken at once) or another (seen through a
// watch of the bucket, and by a look every orderPollMax at least). Events below the consumer's ack floor are settled whatever the
// bucket says, so an event acknowledged before order was turned on, or
// whose record has expired, never holds one after it.
//
// Nothing is owned by a worker: there are no partitions to assign or
// rebalance, a crash only brings JetStream's redelivery of the event whose
// turn it was, and workers come and go as before (one durable consumer, which
// KEDA reads). Events of no conversation (field changes, errors, unknown
// items, events stored before subjects carried a conversation) never wait.

// orderPollMax bounds the wait between two looks at a conversation's record
// while an event waits for its turn.
const orderPollMax = 500 * time.Millisecond

// floorMaxAge is how long the consumer's ack floor is reused before it is
// read again.
const floorMaxAge = time.Second

// sequencer keeps the events of each conversation in order. Its methods are
// safe for concurrent use.
type sequencer struct {
	kv        jetstream.KeyValue
	stream    jetstream.Stream
	cons      jetstream.Consumer
	heartbeat time.Duration
	log       *slog.Logger
	waited    prometheus.Histogram

	mu      sync.Mutex
	queues  map[string]*turnQueue  // conversation token → its events waiting here
	records map[string]orderRecord // conversation token → its record as last read here

	floorMu sync.Mutex
	floor   uint64
	floorAt time.Time
}

// newSequencer creates or opens the order bucket and returns a sequencer for
// the events stream's workers' consumer.
func newSequencer(ctx context.Context, js jetstream.JetStream, cfg Config, cons jetstream.Consumer, m *metrics) (*sequencer, error) {
	sc := cfg.Streams.WithDefaults()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.OrderBucket,
		Description: "wagate: the last settled stream sequence of each conversation",
		History:     1,
		TTL:         sc.MaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    sc.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("worker: order bucket %s: %w", cfg.OrderBucket, err)
	}
	st, err := js.Stream(ctx, sc.Events)
	if err != nil {
		return nil, fmt.Errorf("worker: stream %s: %w", sc.Events, err)
	}
	return &sequencer{kv: kv, stream: st, cons: cons, heartbeat: cfg.Heartbeat, log: cfg.Logger,
		waited: m.orderWait, queues: map[string]*turnQueue{}, records: map[string]orderRecord{}}, nil
}

// conversationOf returns the filter matching every event of the
// conversation of an event subject, and the conversation's token; ok is
// false for an event of no conversation.
func conversationOf(subject string) (filter, token string, ok bool) {
	t := strings.Split(subject, ".")
	if len(t) != 6 || t[0]+"."+t[1] != streams.EventsSubjectPrefix || t[5] == "_" || t[5] == "" {
		return "", "", false
	}
	return streams.EventsSubjectPrefix + "." + t[2] + ".*." + t[4] + "." + t[5], t[5], true
}

// turnQueue holds the events of one conversation that wait in this worker.
type turnQueue struct {
	seqs []uint64      // stream sequences of the waiting events, in order
	ch   chan struct{} // closed when something about the conversation changed
}

// changed wakes every waiter of q.
func (q *turnQueue) changed() {
	close(q.ch)
	q.ch = make(chan struct{})
}

// waitTurn returns once the event at stream sequence seq on subject is the
// first unsettled event of its conversation, true; or false when stop is
// closed first. Of the events of one conversation waiting in this worker,
// only the first looks at the stream and the order bucket; the others wait
// for it. A look happens when the conversation's record changes (this
// worker's pass or the bucket's watch) and at least every orderPollMax. While
// it waits it tells JetStream the message is in progress every Heartbeat. A
// store it cannot read (NATS unreachable) makes it wait and try again: the
// event never runs out of turn.
func (s *sequencer) waitTurn(stop <-chan struct{}, m inProgresser, subject string, seq uint64, log *slog.Logger) bool {
	filter, token, ok := conversationOf(subject)
	if !ok {
		return true
	}
	start := time.Now()
	s.mu.Lock()
	q := s.queues[token]
	if q == nil {
		q = &turnQueue{ch: make(chan struct{})}
		s.queues[token] = q
	}
	at, _ := slices.BinarySearch(q.seqs, seq)
	q.seqs = slices.Insert(q.seqs, at, seq)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if at, found := slices.BinarySearch(q.seqs, seq); found {
			q.seqs = slices.Delete(q.seqs, at, at+1)
		}
		q.changed()
		if len(q.seqs) == 0 && s.queues[token] == q {
			delete(s.queues, token)
		}
		s.mu.Unlock()
	}()

	beat := start
	warned := false
	for {
		s.mu.Lock()
		ch, front := q.ch, q.seqs[0] == seq
		s.mu.Unlock()
		if front {
			first, err := s.first(filter, token)
			if err == nil && first >= seq {
				s.waited.Observe(time.Since(start).Seconds())
				return true
			}
			if err != nil && !warned {
				warned = true
				log.Warn("worker: conversation order unreadable; the event waits", slog.Any("error", err))
			}
		}
		t := time.NewTimer(orderPollMax)
		select {
		case <-ch:
		case <-t.C:
		case <-stop:
			t.Stop()
			return false
		}
		t.Stop()
		if time.Since(beat) >= s.heartbeat {
			beat = time.Now()
			if err := m.InProgress(); err != nil {
				log.Warn("worker: in-progress signal failed while the event waits for its turn", slog.Any("error", err))
			}
		}
	}
}

// isTurn reports whether the event at seq on subject may run now: it
// belongs to no conversation, or it is its conversation's first unsettled
// event and no other event of the conversation waits in this worker before
// it. An error reading the order counts as not yet.
func (s *sequencer) isTurn(subject string, seq uint64) bool {
	filter, token, ok := conversationOf(subject)
	if !ok {
		return true
	}
	s.mu.Lock()
	q := s.queues[token]
	ahead := q != nil && len(q.seqs) > 0 && q.seqs[0] < seq
	s.mu.Unlock()
	if ahead {
		return false
	}
	first, err := s.first(filter, token)
	return err == nil && first >= seq
}

// wakeUp wakes the waiters of the conversation token.
func (s *sequencer) wakeUp(token string) {
	s.mu.Lock()
	if q := s.queues[token]; q != nil {
		q.changed()
	}
	s.mu.Unlock()
}

// watch wakes the waiters of every conversation whose record another worker
// changes, until ctx ends. Without it waiters still look every orderPollMax.
func (s *sequencer) watch(ctx context.Context) {
	for ctx.Err() == nil {
		wt, err := s.kv.WatchAll(ctx, jetstream.UpdatesOnly(), jetstream.IgnoreDeletes())
		if err == nil {
			for e := range wt.Updates() {
				if e != nil {
					s.wakeUp(e.Key())
				}
			}
			_ = wt.Stop()
		}
		t := time.NewTimer(retryWait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// first returns the stream sequence of the first unsettled event of the
// conversation (filter, token), or math.MaxUint64 when there is none.
func (s *sequencer) first(filter, token string) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	settled, rev, err := s.settled(ctx, token)
	if err != nil {
		return 0, err
	}
	s.remember(token, settled, rev)
	floor, err := s.ackFloor(ctx)
	if err != nil {
		return 0, err
	}
	raw, err := s.stream.GetMsg(ctx, max(settled, floor)+1, jetstream.WithGetMsgSubject(filter))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return math.MaxUint64, nil
	}
	if err != nil {
		return 0, fmt.Errorf("worker: next event of the conversation: %w", err)
	}
	return raw.Sequence, nil
}

// orderRecord is a conversation's record in the order bucket: its last settled
// sequence and the entry's revision (0 when there is none).
type orderRecord struct{ seq, rev uint64 }

// maxRecords bounds the records a sequencer remembers; past it they are
// forgotten (and read again when needed).
const maxRecords = 100_000

// remember keeps a conversation's record as just read, for record.
func (s *sequencer) remember(token string, seq, rev uint64) {
	s.mu.Lock()
	if len(s.records) >= maxRecords {
		clear(s.records)
	}
	s.records[token] = orderRecord{seq: seq, rev: rev}
	s.mu.Unlock()
}

// settled returns the last settled sequence of a conversation and its
// record's revision (0, 0 when none).
func (s *sequencer) settled(ctx context.Context, token string) (seq, rev uint64, err error) {
	e, err := s.kv.Get(ctx, token)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("worker: order record: %w", err)
	}
	seq, err = strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("worker: order record %q: %w", e.Value(), err)
	}
	return seq, e.Revision(), nil
}

// ackFloor returns the consumer's ack floor: every stream sequence up to it
// is acknowledged. It is read again at most every floorMaxAge.
func (s *sequencer) ackFloor(ctx context.Context) (uint64, error) {
	s.floorMu.Lock()
	defer s.floorMu.Unlock()
	if time.Since(s.floorAt) < floorMaxAge {
		return s.floor, nil
	}
	info, err := s.cons.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("worker: consumer ack floor: %w", err)
	}
	s.floor, s.floorAt = info.AckFloor.Stream, time.Now()
	return s.floor, nil
}

// pass records that the event at seq on subject is settled (acknowledged or
// dead-lettered), so that the next event of its conversation may run, and
// wakes this worker's events of that conversation. A failure is logged: the
// next event then runs once the consumer's ack floor passes seq.
func (s *sequencer) pass(subject string, seq uint64, log *slog.Logger) {
	_, token, ok := conversationOf(subject)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := s.record(ctx, token, seq); err != nil {
		log.Warn("worker: recording the conversation's turn failed; its next event waits for the ack floor", slog.Any("error", err))
	}
	s.wakeUp(token)
}

// record raises a conversation's last settled sequence to seq with
// compare-and-set; a record already at or past seq is left alone.
func (s *sequencer) record(ctx context.Context, token string, seq uint64) error {
	val := []byte(strconv.FormatUint(seq, 10))
	s.mu.Lock()
	last, cached := s.records[token]
	delete(s.records, token)
	s.mu.Unlock()
	for {
		// The record as this worker last read it, when the event's turn was
		// checked, is almost always still current: only the event whose
		// turn it is writes it. A stale one fails the compare-and-set.
		cur, rev, err := last.seq, last.rev, error(nil)
		if !cached {
			cur, rev, err = s.settled(ctx, token)
		}
		cached = false
		switch {
		case err != nil:
			return err
		case cur >= seq:
			return nil
		case rev == 0:
			_, err = s.kv.Create(ctx, token, val)
		default:
			_, err = s.kv.Update(ctx, token, val, rev)
		}
		if err == nil {
			return nil
		}
		var apiErr *jetstream.APIError
		if !errors.Is(err, jetstream.ErrKeyExists) && !(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence) {
			return fmt.Errorf("worker: order record: %w", err)
		}
		// Another worker wrote first: read again.
	}
}

// passTurn lets the next event of the conversation of the event at seq on
// subject run (see sequencer.pass); without order it does nothing.
func (w *Worker) passTurn(subject string, seq uint64, log *slog.Logger) {
	if w.order != nil {
		w.order.pass(subject, seq, log)
	}
}

// awaitTurn holds m, which turns found must wait, until its conversation's
// turn comes (OrderConversation; at once otherwise). It is called holding
// one of slots, the worker's
// Concurrency slots: an event that must wait gives its slot back meanwhile,
// so that waiting events never keep other conversations from running, and
// takes one again when its turn comes. It returns false, with the message
// Nak'd for another worker and no slot held, when stop is closed first.
func (w *Worker) awaitTurn(stop <-chan struct{}, m jetstream.Msg, slots chan struct{}) bool {
	if w.order == nil {
		return true
	}
	meta, err := m.Metadata()
	if err != nil {
		return true // process reports it
	}
	log := w.log.With(slog.String("subject", m.Subject()), slog.Uint64("seq", meta.Sequence.Stream),
		slog.Uint64("delivery", meta.NumDelivered))
	interrupted := func() bool {
		w.settle(m, meta, outcome{action: actNak, label: outcomeInterrupted,
			reason: "shutdown while the event waited for its conversation's turn"}, nil, log)
		return false
	}
	<-slots
	if !w.order.waitTurn(stop, m, m.Subject(), meta.Sequence.Stream, log) {
		return interrupted()
	}
	beat := time.NewTicker(w.cfg.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case slots <- struct{}{}:
			return true
		case <-stop:
			return interrupted()
		case <-beat.C:
			if err := m.InProgress(); err != nil {
				log.Warn("worker: in-progress signal failed while the event waits for a handler", slog.Any("error", err))
			}
		}
	}
}

// turns splits a fetched group into the messages that may run now and those
// that must wait for an earlier event of their conversation (all may run
// with OrderNone). The looks for the group's messages go out together.
func (w *Worker) turns(group []jetstream.Msg) (ready, waiting []jetstream.Msg) {
	if w.order == nil {
		return group, nil
	}
	now := make([]bool, len(group))
	var looks sync.WaitGroup
	for i, m := range group {
		looks.Go(func() {
			meta, err := m.Metadata()
			now[i] = err != nil || w.order.isTurn(m.Subject(), meta.Sequence.Stream)
		})
	}
	looks.Wait()
	for i, m := range group {
		if now[i] {
			ready = append(ready, m)
		} else {
			waiting = append(waiting, m)
		}
	}
	return ready, waiting
}

// consumerStreams is the streams configuration the durable consumer is
// created with. With OrderConversation JetStream never gives up on a message
// (MaxDeliver -1): an event waiting for its turn is delivered again each time
// the worker holding it dies, so the worker counts an event's runs (its
// fencing number, which every dedupe backend raises by one per run begun)
// against MaxDeliver instead, and dead-letters it itself.
// Every worker on one consumer must use the same Order.
func (w *Worker) consumerStreams() streams.Config {
	sc := w.cfg.Streams
	if w.cfg.Order == OrderConversation {
		sc.MaxDeliver = -1
	}
	return sc
}
