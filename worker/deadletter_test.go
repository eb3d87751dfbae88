package worker

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wagate/wagate/messages"
)

func TestReadDeadLetter(t *testing.T) {
	stored := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h := nats.Header{}
	h.Set(HeaderOriginalMsgID, "wa:k")
	h.Set(messages.HeaderKind, "status")
	h.Set(HeaderError, "boom")
	h.Set(HeaderDeliveries, "10")
	h.Set(HeaderOriginalSubject, "wagate.events.cloud.status.1")
	h.Set(HeaderOriginalSequence, "42")
	h.Set(HeaderFailedAt, "2026-01-01T00:00:00Z")
	d := ReadDeadLetter("wagate.dlq.cloud.status.1", stored, h, nil)
	want := DeadLetter{Key: "wa:k", Kind: "status", Reason: "boom", Deliveries: "10",
		OriginalSubject: "wagate.events.cloud.status.1", OriginalSequence: "42",
		FailedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	if d != want {
		t.Errorf("got %+v, want %+v", d, want)
	}

	// A subject header outside the events stream is not trusted; a missing
	// failed-at is the stored time; key and kind come from the payload.
	ev := messages.Event{Provider: "cloud", Kind: messages.KindMessage, Key: "wa:p", Item: []byte(`{}`)}
	data, err := ev.Encode()
	if err != nil {
		t.Fatal(err)
	}
	h = nats.Header{}
	h.Set(HeaderOriginalSubject, "elsewhere.x")
	d = ReadDeadLetter("wagate.dlq.cloud.message.1", stored, h, data)
	if d.OriginalSubject != "wagate.events.cloud.message.1" || !d.FailedAt.Equal(stored) || d.Key != "wa:p" || d.Kind != "message" {
		t.Errorf("got %+v", d)
	}
}

// A requeued event that fails again is dead-lettered with the Nats-Msg-Id it
// was requeued with: the dead letter still names the event's key, so that
// "wagate dlq list --key" finds it and its KEY column is the key.
func TestReadDeadLetterRequeued(t *testing.T) {
	id := RequeueMsgID("wa:IajYXqYyUOjKvugZZYdmOQ", 3)
	if id != "wa:IajYXqYyUOjKvugZZYdmOQ:requeue:3" {
		t.Errorf("RequeueMsgID = %q", id)
	}
	h := nats.Header{}
	h.Set(HeaderOriginalMsgID, id)
	h.Set(messages.HeaderKind, "message")
	if d := ReadDeadLetter("wagate.dlq.cloud.message.1.22", time.Now(), h, nil); d.Key != "wa:IajYXqYyUOjKvugZZYdmOQ" {
		t.Errorf("Key = %q, want the event's key", d.Key)
	}
}

func TestRequeueHeader(t *testing.T) {
	h := nats.Header{}
	h.Set("Nats-Msg-Id", "wa:k")
	h.Set("nats-expected-stream", "X")
	h.Set(messages.HeaderKind, "message")
	h.Set("traceparent", "00-1-2-01")
	h.Set(HeaderRequeuedFrom, "3")
	for _, k := range deadLetterHeaders {
		h.Set(k, "v")
	}
	got := RequeueHeader(h)
	if len(got) != 2 || got.Get(messages.HeaderKind) != "message" || got.Get("traceparent") != "00-1-2-01" {
		t.Errorf("RequeueHeader = %v, want the event's own two headers", got)
	}
	got.Set(messages.HeaderKind, "changed")
	if h.Get(messages.HeaderKind) != "message" {
		t.Error("RequeueHeader shares values with its input")
	}
}
