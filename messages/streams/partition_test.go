package streams_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages/streams"
)

func connect(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// Turning order on: the partition consumers start one past the ack floor of
// the workers' consumer, each filtered to its slot, pinned, never giving up;
// ensuring them again keeps where they started.
func TestEnsurePartitionConsumers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := connect(t, testenv.NATSURL(t))
	sc := streams.Config{}
	if err := streams.Ensure(ctx, js, sc); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := js.Publish(ctx, fmt.Sprintf("wagate.events.cloud.message.106.%d", i%streams.Partitions), []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	main, err := streams.EnsureConsumer(ctx, js, sc)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := main.Fetch(4)
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := streams.EnsurePartitionConsumers(ctx, js, sc)
	if err != nil {
		t.Fatal(err)
	}
	if len(cons) != streams.Partitions {
		t.Fatalf("%d partition consumers, want %d", len(cons), streams.Partitions)
	}
	for p, c := range cons {
		cfg := c.CachedInfo().Config
		want := fmt.Sprintf("wagate-workers-p%d", p)
		switch {
		case cfg.Durable != want:
			t.Errorf("partition %d: durable %q, want %q", p, cfg.Durable, want)
		case cfg.FilterSubject != fmt.Sprintf("wagate.events.*.*.*.%d", p) || len(cfg.FilterSubjects) != 0:
			t.Errorf("%s: filter %q %v", want, cfg.FilterSubject, cfg.FilterSubjects)
		case cfg.DeliverPolicy != jetstream.DeliverByStartSequencePolicy || cfg.OptStartSeq != 5:
			t.Errorf("%s: starts %v at %d, want by start sequence at 5 (ack floor 4 + 1)", want, cfg.DeliverPolicy, cfg.OptStartSeq)
		case cfg.MaxDeliver != -1 || cfg.PriorityPolicy != jetstream.PriorityPolicyPinned || cfg.PinnedTTL != streams.DefaultAckWait:
			t.Errorf("%s: MaxDeliver %d, policy %v, pinned TTL %v", want, cfg.MaxDeliver, cfg.PriorityPolicy, cfg.PinnedTTL)
		}
	}
	// Partition 1 holds seq 2 (acked by the workers' consumer) and 12 (new).
	// Its consumer counts none before 12, and 12 once the server has told
	// it of the new message (it counts a publish after its PubAck).
	pending := func() uint64 {
		info, err := cons[1].Info(ctx)
		if err != nil {
			t.Fatalf("partition 1: %v", err)
		}
		return info.NumPending
	}
	if n := pending(); n != 0 {
		t.Errorf("partition 1: %d pending before the new event, want 0: seq 2 is below the floor", n)
	}
	if _, err := js.Publish(ctx, "wagate.events.cloud.message.106.1", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	var n uint64
	testenv.Eventually(t, 10*time.Second, func() bool { n = pending(); return n != 0 }, "partition 1 never counted the new event")
	if n != 1 {
		t.Errorf("partition 1: %d pending, want 1: the event above the floor", n)
	}

	// Again, after the workers' consumer moved on: nothing changes.
	batch, _ = main.Fetch(6)
	for m := range batch.Messages() {
		_ = m.DoubleAck(ctx)
	}
	again, err := streams.EnsurePartitionConsumers(ctx, js, sc)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := again[0].CachedInfo().Config; cfg.OptStartSeq != 5 {
		t.Errorf("ensured again: starts at %d, want 5 still", cfg.OptStartSeq)
	}
}

// A fresh stream: the partition consumers read all of it.
func TestEnsurePartitionConsumersFresh(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := connect(t, testenv.NATSURL(t))
	if err := streams.Ensure(ctx, js, streams.Config{}); err != nil {
		t.Fatal(err)
	}
	cons, err := streams.EnsurePartitionConsumers(ctx, js, streams.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg := cons[0].CachedInfo().Config; cfg.DeliverPolicy != jetstream.DeliverAllPolicy {
		t.Errorf("deliver policy %v, want all", cfg.DeliverPolicy)
	}
}

// The machine's own nats-server (127.0.0.1:4222, Debian's 2.9): a server
// without priority groups is refused with ErrNoPinning, naming its version,
// before anything is created on it; one with them (2.11 or later) goes on
// (here to a stream that does not exist).
func TestEnsurePartitionConsumersNeedPinning(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := connect(t, "nats://127.0.0.1:4222")
	version := js.Conn().ConnectedServerVersion()
	_, err := streams.EnsurePartitionConsumers(ctx, js, streams.Config{Events: "WAGATE_TEST_NO_SUCH_STREAM"})
	var major, minor int
	if _, serr := fmt.Sscanf(version, "%d.%d", &major, &minor); serr != nil {
		t.Fatalf("server version %q: %v", version, serr)
	}
	if major > 2 || major == 2 && minor >= 11 {
		if errors.Is(err, streams.ErrNoPinning) || !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Fatalf("nats-server %s: %v, want the stream not found", version, err)
		}
		return
	}
	if !errors.Is(err, streams.ErrNoPinning) || !strings.Contains(err.Error(), version) {
		t.Fatalf("nats-server %s: %v, want ErrNoPinning naming the version", version, err)
	}
}

func TestAtLeast(t *testing.T) {
	for _, c := range []struct {
		v    string
		want bool
	}{{"2.9.10", false}, {"2.10.22", false}, {"2.11.0", true}, {"2.15.2", true}, {"3.0.0", true}, {"1.99.0", false}, {"", true}} {
		if got := streams.AtLeast(c.v, 2, 11); got != c.want {
			t.Errorf("AtLeast(%q, 2, 11) = %v, want %v", c.v, got, c.want)
		}
	}
}

func TestWorkerConsumers(t *testing.T) {
	names := streams.Config{Consumer: "w"}.WorkerConsumers()
	if len(names) != 1+streams.Partitions || names[0] != "w" || names[1] != "w-p0" || names[streams.Partitions] != fmt.Sprintf("w-p%d", streams.Partitions-1) {
		t.Errorf("WorkerConsumers = %v", names)
	}
}

// Ensure leaves a live stream that already has its settings alone (no
// update, so none to race a consumer's creation): a limit set by an operator
// outside Ensure's settings survives it. A stream whose settings differ is
// updated.
func TestEnsureUpdatesOnlyWhatDiffers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := connect(t, testenv.NATSURL(t))
	sc := streams.Config{}
	if err := streams.Ensure(ctx, js, sc); err != nil {
		t.Fatal(err)
	}
	tuned := sc.EventsStream()
	tuned.MaxMsgs = 12345
	if _, err := js.UpdateStream(ctx, tuned); err != nil {
		t.Fatal(err)
	}
	if err := streams.Ensure(ctx, js, sc); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, streams.DefaultEvents)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxMsgs; got != 12345 {
		t.Errorf("MaxMsgs %d after Ensure, want 12345: Ensure updated a stream that had its settings", got)
	}
	// Another MaxAge: Ensure puts its own back.
	tuned.MaxAge = time.Hour
	if _, err := js.UpdateStream(ctx, tuned); err != nil {
		t.Fatal(err)
	}
	if err := streams.Ensure(ctx, js, sc); err != nil {
		t.Fatal(err)
	}
	if st, err = js.Stream(ctx, streams.DefaultEvents); err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxAge; got != streams.DefaultMaxAge {
		t.Errorf("MaxAge %v after Ensure, want %v", got, streams.DefaultMaxAge)
	}
}
