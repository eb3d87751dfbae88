package worker

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/messages/streams"
)

// checkLetter checks a dead letter against the event it holds.
func checkLetter(t *testing.T, dl *jetstream.RawStreamMsg, ev messages.Event, payload []byte, seq uint64, deliveries int, errPart string) {
	t.Helper()
	if !bytes.Equal(dl.Data, payload) {
		t.Errorf("dead letter payload differs from the original:\n got %s\nwant %s", dl.Data, payload)
	}
	wantSubject := "wagate.dlq.cloud.message." + ev.Account + "." + strconv.Itoa(messages.Slot(ev))
	if dl.Subject != wantSubject {
		t.Errorf("subject %q, want %q", dl.Subject, wantSubject)
	}
	h := dl.Header
	for name, want := range map[string]string{
		HeaderDeliveries:          strconv.Itoa(deliveries),
		HeaderOriginalSubject:     messages.Subject(ev),
		HeaderOriginalSequence:    strconv.FormatUint(seq, 10),
		HeaderOriginalStream:      streams.DefaultEvents,
		HeaderOriginalMsgID:       ev.Key,
		nats.MsgIdHdr:             "dlq:" + strconv.FormatUint(seq, 10),
		messages.HeaderProvider:   ev.Provider,
		messages.HeaderKind:       string(ev.Kind),
		messages.HeaderReceivedAt: ev.ReceivedAt.Format(time.RFC3339Nano),
	} {
		if got := h.Get(name); got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	if got := h.Get(HeaderError); !strings.Contains(got, errPart) {
		t.Errorf("header %s = %q, want it to contain %q", HeaderError, got, errPart)
	}
	if _, err := time.Parse(time.RFC3339Nano, h.Get(HeaderFailedAt)); err != nil {
		t.Errorf("header %s = %q: %v", HeaderFailedAt, h.Get(HeaderFailedAt), err)
	}
}

// C: a permanent error dead-letters the event at once, with its payload
// byte for byte and the error, and terminates the message.
func TestPermanentDeadLetters(t *testing.T) {
	e := newEnv(t, testStreams(), "")
	var ran atomic.Int32
	r := e.start(Config{}, HandlerFunc(func(context.Context, messages.Event) error {
		ran.Add(1)
		return Permanent(errors.New("template not found"))
	}))
	ev := e.event()
	payload, seq := e.publish(ev)

	testenv.Eventually(t, wait, func() bool { return len(e.dlq()) == 1 && e.settled() }, "no dead letter")
	checkLetter(t, e.dlq()[0], ev, payload, seq, 1, "template not found")
	if n := ran.Load(); n != 1 {
		t.Errorf("handler ran %d times, want 1", n)
	}
	info := e.consumer()
	if info.NumAckPending != 0 || info.NumPending != 0 || info.NumRedelivered != 0 {
		t.Errorf("consumer: ack pending %d, pending %d, redelivered %d; want 0, 0, 0",
			info.NumAckPending, info.NumPending, info.NumRedelivered)
	}
	if rec := e.record(ev.Key); rec.State == dedupe.Done || rec.Locked {
		t.Errorf("record %+v: want not done, unlocked", rec)
	}
	if got := value(r.w.metrics.deadLetters.WithLabelValues(causePermanent)); got != 1 {
		t.Errorf("permanent dead letters %v, want 1", got)
	}
}

// D: a transient failure on every delivery dead-letters the event after
// MaxDeliver deliveries.
func TestExhaustedDeadLetters(t *testing.T) {
	sc := testStreams()
	sc.MaxDeliver = 3
	e := newEnv(t, sc, "")
	var c calls
	r := e.start(Config{}, HandlerFunc(func(ctx context.Context, ev messages.Event) error {
		c.add(ctx, ev.Key)
		return errors.New("HTTP 503 from downstream")
	}))
	ev := e.event()
	payload, seq := e.publish(ev)

	testenv.Eventually(t, wait, func() bool { return len(e.dlq()) == 1 && e.settled() }, "no dead letter")
	checkLetter(t, e.dlq()[0], ev, payload, seq, 3, "HTTP 503 from downstream")
	if runs := c.of(ev.Key); len(runs) != 3 {
		t.Errorf("handler ran %d times, want 3", len(runs))
	}
	if got := value(r.w.metrics.deadLetters.WithLabelValues(causeExhausted)); got != 1 {
		t.Errorf("exhausted dead letters %v, want 1", got)
	}
	if got := r.outcomes(outcomeRetry); got != 2 {
		t.Errorf("retry outcomes %v, want 2", got)
	}
}

// A payload that is not an event is dead-lettered with the reason.
func TestUndecodableDeadLetters(t *testing.T) {
	e := newEnv(t, testStreams(), "")
	var ran atomic.Int32
	e.start(Config{}, HandlerFunc(func(context.Context, messages.Event) error {
		ran.Add(1)
		return nil
	}))
	payload := []byte(`{"not":"an event"`)
	msg := nats.NewMsg("wagate.events.cloud.message.123")
	msg.Data = payload
	msg.Header.Set(nats.MsgIdHdr, "wa:garbage")
	ack, err := e.js.PublishMsg(e.ctx(), msg)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func() bool { return len(e.dlq()) == 1 && e.settled() }, "no dead letter")
	dl := e.dlq()[0]
	if !bytes.Equal(dl.Data, payload) {
		t.Errorf("payload %q, want %q", dl.Data, payload)
	}
	if got := dl.Header.Get(HeaderError); !strings.HasPrefix(got, "undecodable: ") {
		t.Errorf("error header %q", got)
	}
	if got := dl.Header.Get(HeaderOriginalSequence); got != strconv.FormatUint(ack.Sequence, 10) {
		t.Errorf("sequence header %q, want %d", got, ack.Sequence)
	}
	if n := ran.Load(); n != 0 {
		t.Errorf("handler ran %d times", n)
	}
}

// A dead letter whose publish fails is Nak'd, not terminated; once the
// dead-letter stream is back it lands there.
func TestDeadLetterPublishFailureNaks(t *testing.T) {
	e := newEnv(t, testStreams(), "")
	dlqName := e.sc.WithDefaults().DLQ
	if err := e.js.DeleteStream(e.ctx(), dlqName); err != nil {
		t.Fatal(err)
	}
	// Run ensures the streams at start; delete the dead-letter stream again
	// once the worker runs, so the first dead letter cannot be stored.
	r := e.start(Config{}, HandlerFunc(func(context.Context, messages.Event) error {
		return Permanent(errors.New("bad request"))
	}))
	testenv.Eventually(t, wait, func() bool {
		_, err := e.js.Stream(e.ctx(), dlqName)
		return err == nil
	}, "dead-letter stream not created by Run")
	if err := e.js.DeleteStream(e.ctx(), dlqName); err != nil {
		t.Fatal(err)
	}
	ev := e.event()
	payload, seq := e.publish(ev)
	testenv.Eventually(t, wait, func() bool { return r.outcomes(outcomeDLQError) >= 1 }, "dead-letter failure not seen")
	if info := e.consumer(); info.NumAckPending+int(info.NumPending) == 0 && info.NumRedelivered == 0 {
		t.Fatalf("message settled although its dead letter was not stored: %+v", info)
	}
	if err := streams.Ensure(e.ctx(), e.js, e.sc); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func() bool { return len(e.dlq()) == 1 && e.settled() }, "no dead letter after the stream came back")
	checkLetter(t, e.dlq()[0], ev, payload, seq, int(mustAtoi(t, e.dlq()[0].Header.Get(HeaderDeliveries))), "bad request")
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil || n < 2 {
		t.Fatalf("deliveries %q: want a number above 1", s)
	}
	return n
}

// fetchOne fetches one delivery from cons for a client that never
// acknowledges it, and returns it.
func fetchOne(t *testing.T, cons jetstream.Consumer, i int) jetstream.Msg {
	t.Helper()
	b, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []jetstream.Msg
	for m := range b.Messages() {
		got = append(got, m)
	}
	if len(got) != 1 {
		t.Fatalf("fetch %d: %d messages, want 1 (err %v)", i, len(got), b.Error())
	}
	return got[0]
}

// hold keeps m in progress, as its client would while still alive, until
// release is called (at the latest when the test ends); then m's AckWait
// runs as for a client that crashed.
func (e *env) hold(m jetstream.Msg) (release func()) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if err := m.InProgress(); err != nil {
				e.t.Errorf("in progress: %v", err)
				return
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	release = sync.OnceFunc(func() { close(stop); <-done })
	e.t.Cleanup(release)
	return release
}

// waitWatching waits until the max-deliveries advisory subscription of the
// worker the test started has reached the server. The advisory is a core
// NATS message, lost when nobody listens: a test lets the last delivery's
// AckWait run only once the worker listens, since a worker may take longer
// than AckWait to start on a busy machine.
func (e *env) waitWatching() {
	e.t.Helper()
	subject := e.sc.MaxDeliveriesAdvisory()
	testenv.Eventually(e.t, wait, func() bool {
		sz, err := e.nats.Server().Subsz(&server.SubszOptions{Subscriptions: true, Test: subject})
		if err != nil {
			e.t.Fatal(err)
		}
		for _, sub := range sz.Subs {
			if sub.Queue == advisoryQueue {
				return true
			}
		}
		return false
	}, "the worker did not subscribe to %s", subject)
}

// An event whose deliveries run out without any worker settling it (here a
// client that fetches and never acks, as a crashed worker) is dead-lettered
// from JetStream's max-deliveries advisory.
func TestMaxDeliveriesAdvisoryDeadLetters(t *testing.T) {
	sc := testStreams()
	sc.AckWait = 500 * time.Millisecond
	sc.MaxDeliver = 2
	e := newEnv(t, sc, "")
	cons, err := streams.EnsureConsumer(e.ctx(), e.js, sc)
	if err != nil {
		t.Fatal(err)
	}
	ev := e.event()
	payload, seq := e.publish(ev)
	// Two deliveries to a "crashed worker": fetched, never acknowledged; it
	// dies holding the second once the worker listens for the advisory.
	fetchOne(t, cons, 0)
	release := e.hold(fetchOne(t, cons, 1))
	var ran atomic.Int32
	r := e.start(Config{}, HandlerFunc(func(context.Context, messages.Event) error {
		ran.Add(1)
		return nil
	}))
	e.waitWatching()
	release()
	testenv.Eventually(t, wait, func() bool { return len(e.dlq()) == 1 }, "no dead letter from the advisory")
	checkLetter(t, e.dlq()[0], ev, payload, seq, 2, ReasonMaxDeliveries)
	if n := ran.Load(); n != 0 {
		t.Errorf("handler ran %d times", n)
	}
	if got := value(r.w.metrics.deadLetters.WithLabelValues(causeMaxDeliveries)); got != 1 {
		t.Errorf("max_deliveries dead letters %v, want 1", got)
	}
}

// An advisory for an event whose key is done by then dead-letters nothing.
func TestMaxDeliveriesAdvisorySkipsDone(t *testing.T) {
	sc := testStreams()
	sc.AckWait = 500 * time.Millisecond
	sc.MaxDeliver = 1
	e := newEnv(t, sc, "")
	cons, err := streams.EnsureConsumer(e.ctx(), e.js, sc)
	if err != nil {
		t.Fatal(err)
	}
	ev := e.event()
	e.publish(ev)
	release := e.hold(fetchOne(t, cons, 0))
	// The slow run finished and marked the key done, but never acked.
	lease, err := e.store.Begin(e.ctx(), ev.Key, dedupe.BeginOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.Finish(e.ctx(), lease); err != nil {
		t.Fatal(err)
	}
	r := e.start(Config{}, HandlerFunc(func(context.Context, messages.Event) error { return nil }))
	e.waitWatching()
	release()
	// The advisory comes once AckWait passes.
	testenv.Eventually(t, wait, func() bool { return value(r.w.metrics.advisories.WithLabelValues("done")) == 1 },
		"advisory not handled")
	if got := value(r.w.metrics.deadLetters); got != 0 || len(e.dlq()) != 0 {
		t.Errorf("dead letters %v (stream %d), want 0", got, len(e.dlq()))
	}
}
