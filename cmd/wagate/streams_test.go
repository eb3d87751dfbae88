package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/messages"
)

func TestStreams(t *testing.T) {
	e := newOpsEnv(t, false)
	out := e.mustWagate("streams")
	for _, want := range []string{
		"stream WAGATE_EVENTS: missing (create it with: wagate streams create)",
		"stream WAGATE_DLQ: missing",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("streams before create lacks %q:\n%s", want, out)
		}
	}

	out = e.mustWagate("streams", "create")
	if !strings.Contains(out, "streams WAGATE_EVENTS and WAGATE_DLQ and consumer wagate-workers are in place") {
		t.Errorf("streams create:\n%s", out)
	}
	// Idempotent.
	e.mustWagate("streams", "create")

	e.publish(e.event(messages.KindMessage))
	e.publish(e.event(messages.KindStatus))
	out = e.mustWagate("streams")
	for _, want := range []string{
		"stream WAGATE_EVENTS\n  subjects          wagate.events.>\n",
		"file, replicas 1, max age 168h0m0s, duplicate window 2m0s",
		"  messages          2 (",
		"  first             seq 1,",
		"  last              seq 2,",
		"  consumer wagate-workers\n    ack wait        5s, max deliver 3, max ack pending 1000\n    pending         2\n    ack pending     0\n    redelivered     0\n",
		"    lag             2\n",
		"stream WAGATE_DLQ\n  subjects          wagate.dlq.>\n",
		"max age unlimited",
		"  messages          0 (0 B)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("streams lacks %q:\n%s", want, out)
		}
	}
}

// With order on, the workers read the partition consumers: streams create
// makes those (not the workers' consumer, which nobody would read), and
// streams shows them.
func TestStreamsOrdered(t *testing.T) {
	e := newOpsEnv(t, false)
	t.Setenv("WAGATE_ORDER", "conversation")
	out := e.mustWagate("streams", "create")
	if !strings.Contains(out, "streams WAGATE_EVENTS and WAGATE_DLQ and partition consumers wagate-workers-p0 … wagate-workers-p31 are in place") {
		t.Errorf("streams create:\n%s", out)
	}
	if _, err := e.js.Consumer(e.ctx(), "WAGATE_EVENTS", "wagate-workers"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("streams create with order on made the workers' consumer: %v", err)
	}

	e.publish(e.event(messages.KindMessage))
	out = e.mustWagate("streams")
	for _, want := range []string{
		"  consumer wagate-workers: none (the workers keep order: WAGATE_ORDER=conversation)\n",
		"  partition consumers wagate-workers-p0 … wagate-workers-p31 (WAGATE_ORDER=conversation): 32 of 32\n",
		"    total           pending 1, ack pending 0, redelivered 0, lag 1\n",
		"    wagate-workers-p0  pending ",
		"    wagate-workers-p31 pending ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("streams lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "create it with") {
		t.Errorf("streams tells to create the workers' consumer beside ordered workers:\n%s", out)
	}
}

func TestSizeOf(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := sizeOf(n); got != want {
			t.Errorf("sizeOf(%d) = %q, want %q", n, got, want)
		}
	}
}
