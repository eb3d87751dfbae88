package messages

import (
	"encoding/json"
	"strings"
	"unsafe"
)

// Frame is the rest of a webhook around one item, kept as received, so that
// the item can be sent on in its provider's own webhook format, one item per
// request, without re-serialising anything (see worker.Forward's provider
// format). Every slice is a sub-slice of the body the item came in, except
// an Evolution API Before or After, which is a copy with the envelope's
// "apikey" value written "[redacted]".
//
// For the Cloud API, the raw JSON values of the members that place the item
// (Meta, "Webhooks reference: messages"); each is nil when the member was
// absent. For a gateway (WASenderApi, WAHA), Before and After: the body is
// Before + Item + After, with the other items of the array that held the item
// left out when the body held several.
type Frame struct {
	// Object is the envelope's "object" (Cloud API).
	Object json.RawMessage `json:"object,omitempty"`
	// EntryID is entry[].id (Cloud API).
	EntryID json.RawMessage `json:"entry_id,omitempty"`
	// EntryTime is entry[].time (Cloud API; only some fields have one).
	EntryTime json.RawMessage `json:"entry_time,omitempty"`
	// Field is changes[].field (Cloud API).
	Field json.RawMessage `json:"field,omitempty"`
	// MessagingProduct is value.messaging_product (Cloud API), "whatsapp".
	MessagingProduct json.RawMessage `json:"messaging_product,omitempty"`
	// Array is the name of the value's member whose array held the item
	// (Cloud API: "messages", "statuses", "calls", "message_echoes",
	// "history", …), as received, quotes included; nil for an item outside
	// one. For the Cloud API, Before and After, when set, wrap the item
	// inside that array's element (a history thread:
	// {"metadata":…,"threads":[{"id":…,"messages":[ITEM]}]}).
	Array json.RawMessage `json:"array,omitempty"`

	// Body is true for a gateway item whose body is Before + Item + After.
	Body bool `json:"body,omitempty"`
	// Before is the gateway body's bytes before the item; nil when none.
	// (Cloud API: see Array.)
	Before []byte `json:"before,omitempty"`
	// After is the gateway body's bytes after the item; nil when none.
	After []byte `json:"after,omitempty"`
	// Covered is true for a gateway item that reaches an app inside the body
	// of another event of the same webhook: an unknown member of the envelope
	// ("envelope.<name>"), which Before or After of every other event holds.
	Covered bool `json:"covered,omitempty"`
}

// frameGateway sets the Frame of each event of a gateway body, in document
// order:
//
//   - an unknown member of the envelope is Covered when the body gave any other
//     event;
//   - when one event remains, its frame is the whole body around its item;
//   - when several remain and an item is an element of an array whose every
//     element is an item, its frame is the body with that array holding the
//     item alone;
//   - any other item (one nested inside an array element, never produced by
//     the documented bodies) gets no frame.
//
// Its work is linear in len(body) plus the number of events.
func frameGateway(body []byte, evs []Event) {
	main := 0
	for i := range evs {
		if isEnvelopeMember(evs[i]) {
			continue
		}
		main++
	}
	offs := make([]int, len(evs))
	for i := range evs {
		offs[i] = offsetIn(body, evs[i].Item)
	}
	for i := range evs {
		ev := &evs[i]
		switch {
		case main > 0 && isEnvelopeMember(*ev):
			ev.Context.Frame.Covered = true
		case offs[i] < 0:
		case main == 1:
			end := offs[i] + len(ev.Item)
			ev.Context.Frame.setBody(body[:offs[i]], body[end:])
		}
	}
	if main <= 1 {
		return
	}
	// Runs of items that are consecutive elements of one array.
	for i := 0; i < len(evs); {
		if offs[i] < 0 || isEnvelopeMember(evs[i]) {
			i++
			continue
		}
		open := prevByte(body, offs[i])
		if open < 0 || body[open] != '[' {
			i++
			continue
		}
		j := i
		for j+1 < len(evs) && offs[j+1] >= 0 {
			c := nextByte(body, offs[j]+len(evs[j].Item))
			if c < 0 || body[c] != ',' || skipSpace(body, c+1) != offs[j+1] {
				break
			}
			j++
		}
		closing := nextByte(body, offs[j]+len(evs[j].Item))
		if closing >= 0 && body[closing] == ']' {
			for k := i; k <= j; k++ {
				evs[k].Context.Frame.setBody(body[:open+1], body[closing:])
			}
		}
		i = j + 1
	}
}

// isEnvelopeMember reports whether ev is the unknown event of a member of a
// gateway's envelope.
func isEnvelopeMember(ev Event) bool {
	return ev.Kind == KindUnknown && strings.HasPrefix(ev.Type, "envelope.")
}

// setBody sets f to the gateway body before + item + after; an empty part is
// nil, as it reads back from JSON. Each part's capacity is cut to its length.
func (f *Frame) setBody(before, after []byte) {
	f.Body = true
	f.Before, f.After = nil, nil
	if len(before) > 0 {
		f.Before = before[:len(before):len(before)]
	}
	if len(after) > 0 {
		f.After = after[:len(after):len(after)]
	}
}

// prevByte returns the index of the last byte before i in b that is not
// JSON whitespace, or -1.
func prevByte(b []byte, i int) int {
	for i--; i >= 0; i-- {
		if !isSpace(b[i]) {
			return i
		}
	}
	return -1
}

// nextByte returns the index of the first byte at or after i in b that is not
// JSON whitespace, or -1.
func nextByte(b []byte, i int) int {
	i = skipSpace(b, i)
	if i >= len(b) {
		return -1
	}
	return i
}

// offsetIn returns the index in body at which sub, a sub-slice of body,
// starts; -1 when sub is empty or not a sub-slice of body. The address
// arithmetic only finds a candidate; the answer is checked by comparing
// element addresses.
func offsetIn(body, sub []byte) int {
	if len(sub) == 0 || len(sub) > len(body) {
		return -1
	}
	d := uintptr(unsafe.Pointer(unsafe.SliceData(sub))) - uintptr(unsafe.Pointer(unsafe.SliceData(body)))
	if d > uintptr(len(body)-len(sub)) {
		return -1
	}
	off := int(d)
	if &body[off] != &sub[0] {
		return -1
	}
	return off
}
