package worker

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/messages/streams"
)

// HeaderRequeuedFrom marks an event put back into the events stream from
// the dead-letter stream ("wagate dlq requeue"): the dead letter's sequence
// in the dead-letter stream, in decimal.
const HeaderRequeuedFrom = "Wagate-Requeued-From"

// requeueMsgID separates an event's key from the dead-letter sequence in the
// Nats-Msg-Id of a requeued event (RequeueMsgID).
const requeueMsgID = ":requeue:"

// RequeueMsgID returns the Nats-Msg-Id an event is put back into the events
// stream with from dead letter dlqSeq: "<key>:requeue:<dlqSeq>", so that
// JetStream does not drop it as a copy of the original within the duplicate
// window, while a second requeue of the same dead letter is stored once.
// ReadDeadLetter reads the key back from it.
func RequeueMsgID(key string, dlqSeq uint64) string {
	return key + requeueMsgID + strconv.FormatUint(dlqSeq, 10)
}

// deadLetterHeaders are the headers deadLetter adds to a dead letter.
var deadLetterHeaders = []string{
	HeaderError, HeaderDeliveries, HeaderOriginalStream, HeaderOriginalSubject,
	HeaderOriginalSequence, HeaderOriginalMsgID, HeaderFailedAt,
}

// DeadLetter is what a dead letter says about the event it holds, read from
// its headers (see HeaderError and the others) and, where they do not name
// the key or kind, from its payload.
type DeadLetter struct {
	// Key is the event's dedupe key: HeaderOriginalMsgID, without the
	// suffix RequeueMsgID adds when the event was requeued and failed again.
	Key string
	// Kind is the event's kind (messages.HeaderKind).
	Kind string
	// Reason is HeaderError: the handler's error or ReasonMaxDeliveries.
	Reason string
	// Deliveries is HeaderDeliveries, as written (decimal).
	Deliveries string
	// OriginalSubject is the event's subject in the events stream: from
	// HeaderOriginalSubject when that is inside the events stream, else the
	// dead letter's subject mapped back (wagate.dlq.… to wagate.events.…),
	// so that a requeue never publishes outside the events stream.
	OriginalSubject string
	// OriginalSequence is HeaderOriginalSequence, as written (decimal).
	OriginalSequence string
	// FailedAt is HeaderFailedAt, or stored when that header is missing or
	// unreadable.
	FailedAt time.Time
}

// ReadDeadLetter reads a dead letter stored on subject of the dead-letter
// stream at stored, with header h and payload data (nil when read without
// it).
func ReadDeadLetter(subject string, stored time.Time, h nats.Header, data []byte) DeadLetter {
	d := DeadLetter{
		Key:              eventKey(h.Get(HeaderOriginalMsgID)),
		Kind:             h.Get(messages.HeaderKind),
		Reason:           h.Get(HeaderError),
		Deliveries:       h.Get(HeaderDeliveries),
		OriginalSubject:  h.Get(HeaderOriginalSubject),
		OriginalSequence: h.Get(HeaderOriginalSequence),
	}
	if (d.Key == "" || d.Kind == "") && len(data) > 0 {
		if ev, err := messages.Decode(data); err == nil {
			d.Key = cmp.Or(d.Key, ev.Key)
			d.Kind = cmp.Or(d.Kind, string(ev.Kind))
		}
	}
	if t, err := time.Parse(time.RFC3339Nano, h.Get(HeaderFailedAt)); err == nil {
		d.FailedAt = t
	} else {
		d.FailedAt = stored
	}
	if !strings.HasPrefix(d.OriginalSubject, streams.EventsSubjectPrefix+".") {
		rest, _ := strings.CutPrefix(subject, streams.DLQSubjectPrefix+".")
		d.OriginalSubject = streams.EventsSubjectPrefix + "." + rest
	}
	return d
}

// eventKey returns the dedupe key a Nats-Msg-Id names: the id itself, or its
// key when RequeueMsgID made it.
func eventKey(msgID string) string {
	key, _, _ := strings.Cut(msgID, requeueMsgID)
	return key
}

// RequeueHeader returns the header an event put back from the dead-letter
// stream is published with: a copy of the dead letter's header h without
// NATS's own headers (Nats-*), the dead-letter headers and
// HeaderRequeuedFrom, so the event carries its own headers only.
func RequeueHeader(h nats.Header) nats.Header {
	return copyHeader(h, func(k string) bool {
		return k == HeaderRequeuedFrom || slices.Contains(deadLetterHeaders, k)
	})
}

// copyHeader copies h without NATS's own headers (Nats-*, in any case) and
// the names drop reports.
func copyHeader(h nats.Header, drop func(string) bool) nats.Header {
	out := nats.Header{}
	for k, vs := range h {
		if len(k) >= 5 && strings.EqualFold(k[:5], "Nats-") || drop(k) {
			continue
		}
		out[k] = append([]string(nil), vs...)
	}
	return out
}
