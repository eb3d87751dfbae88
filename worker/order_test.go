package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/messages/streams"
)

func TestConversationToken(t *testing.T) {
	for _, c := range []struct{ header, token string }{
		{"c0123456789abcdef", "c0123456789abcdef"},
		{"_", ""}, // no conversation
		{"", ""},  // stored without one
	} {
		m := &headerMsg{h: nats.Header{}}
		if c.header != "" {
			m.h.Set(messages.HeaderConversation, c.header)
		}
		if got := conversationToken(m); got != c.token {
			t.Errorf("conversationToken(header %q) = %q, want %q", c.header, got, c.token)
		}
	}
}

// headerMsg is a jetstream.Msg with headers only.
type headerMsg struct {
	jetstream.Msg
	h nats.Header
}

func (m *headerMsg) Headers() nats.Header { return m.h }

func TestSlotPartition(t *testing.T) {
	cases := []struct {
		subject string
		p       int
		ok      bool
	}{
		{"wagate.events.cloud.message.106.17", 17, true},
		{"wagate.events.cloud.message.106.31", 31, true},
		{"wagate.events.cloud.message.106.0", 0, true},
		{"wagate.events.cloud.message.106.cab", 0, false}, // stored before subjects carried a slot
		{"wagate.events.cloud.message.106.-1", 0, false},
	}
	for _, c := range cases {
		if p, ok := slotPartition(c.subject); p != c.p || ok != c.ok {
			t.Errorf("slotPartition(%q) = %d, %v; want %d, %v", c.subject, p, ok, c.p, c.ok)
		}
	}
}

// Rendezvous hashing: every member list gives each partition one owner, the
// same in every worker; a member joining takes partitions from the others
// and moves no other; a member leaving moves only its own.
func TestOwner(t *testing.T) {
	three := []string{"a", "b", "c"}
	four := []string{"a", "b", "c", "d"}
	count := map[string]int{}
	for p := range streams.Partitions {
		o3, o4 := owner(three, p), owner(four, p)
		if o3 != owner([]string{"c", "a", "b"}, p) {
			t.Errorf("partition %d: owner depends on the list's order", p)
		}
		if o4 != o3 && o4 != "d" {
			t.Errorf("partition %d moved from %s to %s when d joined", p, o3, o4)
		}
		count[o4]++
	}
	for _, m := range four {
		if count[m] == 0 {
			t.Errorf("member %s owns none of %d partitions: %v", m, streams.Partitions, count)
		}
	}
	if owner(nil, 0) != "" {
		t.Error("no member, an owner")
	}
}

func TestMemberKey(t *testing.T) {
	for in, want := range map[string]string{
		"wagate-worker-7c9f-x2:8081": "wagate-worker-7c9f-x2_8081",
		"host.example.com:9000":      "host.example.com_9000",
		"a b*c>":                     "a_b_c_",
	} {
		if got := memberKey(in); got != want {
			t.Errorf("memberKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConfigOrder(t *testing.T) {
	c, err := Config{}.withDefaults()
	if err != nil || c.Order != OrderNone || c.MemberBucket != DefaultMemberBucket {
		t.Errorf("defaults: %q %q %v", c.Order, c.MemberBucket, err)
	}
	if _, err := (Config{Order: "sequential"}).withDefaults(); err == nil {
		t.Error("Order \"sequential\" accepted")
	}
}

// With order, runs (the fencing number), not deliveries, count against
// MaxDeliver: an event delivered again and again while it waited is not
// dead-lettered for it, and one whose runs all died is.
func TestVerdictCountsRuns(t *testing.T) {
	sc := streams.Config{MaxDeliver: 3, BackOff: []time.Duration{time.Second, 5 * time.Second, time.Minute}}
	fail := errors.New("downstream 503")
	cases := []struct {
		name  string
		a     attempt
		want  action
		delay time.Duration // of a Nak
	}{
		{"many deliveries, first run fails", attempt{runs: true, delivered: 9, fence: 1, handlerErr: fail}, actNak, time.Second},
		{"second run fails", attempt{runs: true, delivered: 9, fence: 2, handlerErr: fail}, actNak, 5 * time.Second},
		{"third run fails", attempt{runs: true, delivered: 3, fence: 3, handlerErr: fail}, actDeadLetter, 0},
		{"runs past MaxDeliver died", attempt{runs: true, delivered: 4, fence: 4, exhausted: true}, actDeadLetter, 0},
		{"busy, many deliveries", attempt{runs: true, delivered: 9, beginErr: dedupe.ErrBusy}, actNak, time.Second},
		{"without order: deliveries count", attempt{delivered: 3, fence: 1, handlerErr: fail}, actDeadLetter, 0},
		{"without order: the delivery's backoff", attempt{delivered: 2, fence: 1, handlerErr: fail}, actNak, 5 * time.Second},
	}
	for _, c := range cases {
		got := verdict(c.a, sc)
		if got.action != c.want {
			t.Errorf("%s: action %d (%s), want %d", c.name, got.action, got.reason, c.want)
		}
		if got.action == actNak && got.delay != c.delay {
			t.Errorf("%s: Nak delay %v, want %v", c.name, got.delay, c.delay)
		}
	}
}

// orderLog records, per conversation, the events a handler saw in the order
// it saw them, and how many of one conversation ran at once.
type orderLog struct {
	mu      sync.Mutex
	seen    map[string][]string // conversation → event ids
	running map[string]int
	overlap int // the most events of one conversation running at once
}

func (o *orderLog) enter(ev messages.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.seen == nil {
		o.seen, o.running = map[string][]string{}, map[string]int{}
	}
	o.seen[ev.Conversation] = append(o.seen[ev.Conversation], ev.ID)
	o.running[ev.Conversation]++
	o.overlap = max(o.overlap, o.running[ev.Conversation])
}

func (o *orderLog) leave(ev messages.Event) {
	o.mu.Lock()
	o.running[ev.Conversation]--
	o.mu.Unlock()
}

// Two workers with OrderConversation run every conversation's events one at
// a time, in stream order, while a retried event and a dead-lettered one
// hold only their own conversation's later events.
func TestOrderConversation(t *testing.T) {
	e := newEnv(t, testStreams(), "")
	const convs, perConv = 24, 12
	var want = map[string][]string{}
	var all []messages.Event
	for i := range perConv {
		for c := range convs {
			ev := e.event()
			ev.From = fmt.Sprintf("1555%07d", c)
			ev.Conversation = "cloud|106540352242922|user:" + ev.From
			ev.ID = fmt.Sprintf("c%02d-m%02d", c, i)
			all = append(all, ev)
		}
	}
	// Conversation 0's third event fails twice, conversation 1's fifth event
	// fails for good; every event of conversation 2 fails once.
	const retried, dead = "c00-m02", "c01-m04"
	var (
		mu       sync.Mutex
		failures = map[string]int{}
		log      orderLog
	)
	h := HandlerFunc(func(ctx context.Context, ev messages.Event) error {
		log.enter(ev)
		defer log.leave(ev)
		time.Sleep(time.Millisecond) // let other events of the conversation try to overtake
		mu.Lock()
		defer mu.Unlock()
		failures[ev.ID]++
		switch {
		case ev.ID == retried && failures[ev.ID] <= 2,
			ev.ID[:3] == "c02" && failures[ev.ID] == 1:
			return errors.New("try again")
		case ev.ID == dead:
			return Permanent(errors.New("never"))
		}
		return nil
	})
	cfg := Config{Order: OrderConversation, Concurrency: 4}
	e.start(cfg, h)
	e.start(cfg, h)
	for _, ev := range all {
		e.publish(ev)
		if ev.ID != dead {
			want[ev.Conversation] = append(want[ev.Conversation], ev.ID)
		}
	}
	testenv.Eventually(t, 60*time.Second, e.settled, "consumer not settled")
	cons, err := e.js.Consumer(e.ctx(), e.sc.WithDefaults().Events, e.sc.PartitionConsumer(0))
	if err != nil {
		t.Fatal(err)
	}
	if md := cons.CachedInfo().Config.MaxDeliver; md != -1 {
		t.Errorf("partition consumer MaxDeliver %d, want -1: the workers count runs", md)
	}

	log.mu.Lock()
	defer log.mu.Unlock()
	if log.overlap != 1 {
		t.Errorf("%d events of one conversation ran at once", log.overlap)
	}
	for conv, ids := range want {
		got := slices.DeleteFunc(slices.Clone(log.seen[conv]), func(id string) bool { return id == dead })
		got = slices.CompactFunc(got, func(a, b string) bool { return a == b }) // retries of one event
		if !slices.Equal(got, ids) {
			t.Errorf("%s: handled %v, want %v", conv, got, ids)
		}
	}
	if n := len(e.dlq()); n != 1 {
		t.Errorf("%d dead letters, want 1", n)
	}
}
