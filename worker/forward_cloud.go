package worker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/wagate/wagate/messages"
)

// The arrays of a change's value that hold items, by the kind of event they
// give (Meta, "Webhooks reference: messages", "Status messages webhook
// reference"; Calling API, "API and Webhook Reference").
var cloudArrays = map[messages.Kind]string{
	messages.KindMessage: "messages",
	messages.KindStatus:  "statuses",
	messages.KindCall:    "calls",
	messages.KindError:   "errors",
}

// cloudValueArrays are the arrays of a change's value that messages.Parse
// reads element by element: an unknown "value.<name>[]" is an element of one.
var cloudValueArrays = map[string]bool{"contacts": true, "messages": true, "statuses": true, "calls": true, "errors": true}

// cloudBody writes a Cloud API event as a complete, minimal webhook body
// around its one item (see FormatProvider). Parts are copied from
// ev.Context.Frame as received; for an event stored without them, from the
// decoded Context.
func cloudBody(ev messages.Event) ([]byte, error) {
	if !json.Valid(ev.Item) {
		return nil, errors.New("item is not valid JSON")
	}
	w := cloudWriter{ev: ev}
	switch ev.Kind {
	case messages.KindMessage, messages.KindStatus, messages.KindCall, messages.KindError:
		w.value(w.item, ev.Kind != messages.KindError)
	case messages.KindField:
		w.entry(func() { w.open("changes"); w.raw(`[`); w.buf.Write(ev.Item); w.raw(`]`) })
	case messages.KindUnknown:
		if err := w.unknown(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown kind %q", ev.Kind)
	}
	return w.buf.Bytes(), nil
}

// cloudWriter builds one Cloud API body by byte concatenation.
type cloudWriter struct {
	ev  messages.Event
	buf bytes.Buffer
}

func (w *cloudWriter) raw(s string) { w.buf.WriteString(s) }

// item writes the value's member that holds the item alone in its array: the
// member it came in (Frame.Array, with the element around it in
// Frame.Before and Frame.After), else the array of its kind.
func (w *cloudWriter) item() {
	fr := w.ev.Context.Frame
	if fr.Array == nil {
		w.member(cloudArrays[w.ev.Kind], w.array(w.ev.Item))
		return
	}
	if b := w.buf.Bytes(); len(b) > 0 && b[len(b)-1] != '{' {
		w.buf.WriteByte(',')
	}
	w.buf.Write(fr.Array)
	w.raw(`:[`)
	w.buf.Write(fr.Before)
	w.buf.Write(w.ev.Item)
	w.buf.Write(fr.After)
	w.raw(`]`)
}

// array returns item as the only element of an array.
func (w *cloudWriter) array(item []byte) []byte {
	a := make([]byte, 0, len(item)+2)
	a = append(a, '[')
	a = append(a, item...)
	return append(a, ']')
}

// open writes "name": preceded by a comma unless it opens an object.
func (w *cloudWriter) open(name string) {
	if b := w.buf.Bytes(); len(b) > 0 && b[len(b)-1] != '{' {
		w.buf.WriteByte(',')
	}
	w.buf.Write(jsonString(name))
	w.buf.WriteByte(':')
}

// member writes "name":value, preceded by a comma unless it opens an object.
func (w *cloudWriter) member(name string, value []byte) {
	w.open(name)
	w.buf.Write(value)
}

// envelope writes {"object":…, then inner, then }.
func (w *cloudWriter) envelope(inner func()) {
	w.raw(`{`)
	w.member("object", w.or(w.ev.Context.Frame.Object, w.ev.Context.Object, "whatsapp_business_account"))
	inner()
	w.raw(`}`)
}

// entry writes the envelope with one entry: {"id":…,"time":…, inner}.
func (w *cloudWriter) entry(inner func()) {
	w.envelope(func() {
		w.raw(`,"entry":[{`)
		c := w.ev.Context
		if id := w.or(c.Frame.EntryID, c.EntryID, ""); id != nil {
			w.member("id", id)
		}
		if t := c.Frame.EntryTime; t != nil {
			w.member("time", t)
		} else if c.EntryTime != 0 {
			w.member("time", []byte(strconv.FormatInt(c.EntryTime, 10)))
		}
		inner()
		w.raw(`}]`)
	})
}

// value writes the envelope with one entry and one change:
// {"value":{…, inner},"field":…}. The value opens with messaging_product and
// metadata, and the matching contact when withContact.
func (w *cloudWriter) value(inner func(), withContact bool) {
	c := w.ev.Context
	w.entry(func() {
		w.open("changes")
		w.raw(`[{"value":{`)
		if mp := c.Frame.MessagingProduct; mp != nil {
			w.member("messaging_product", mp)
		}
		if len(c.Metadata) > 0 {
			w.member("metadata", c.Metadata)
		}
		if withContact && len(c.Contact) > 0 {
			w.member("contacts", w.array(c.Contact))
		}
		inner()
		w.raw(`}`)
		if f := w.or(c.Frame.Field, c.Field, ""); f != nil {
			w.member("field", f)
		}
		w.raw(`}]`)
	})
}

// unknown writes an item messages.Parse did not recognise where it was
// found, by its Type: "envelope.<name>", "entry", "entry.<name>", "change",
// "change.<name>", "value.<name>" or "value.<name>[]".
func (w *cloudWriter) unknown() error {
	item := []byte(w.ev.Item)
	where := w.ev.Type
	switch {
	case where == "entry":
		w.envelope(func() { w.raw(`,"entry":[`); w.buf.Write(item); w.raw(`]`) })
	case where == "change":
		w.entry(func() { w.open("changes"); w.raw(`[`); w.buf.Write(item); w.raw(`]`) })
	case strings.HasPrefix(where, "envelope."):
		name := strings.TrimPrefix(where, "envelope.")
		w.envelope(func() { w.raw(`,"entry":[]`); w.member(name, item) })
	case strings.HasPrefix(where, "entry."):
		name := strings.TrimPrefix(where, "entry.")
		// An entry without a changes array would be an unknown entry.
		w.entry(func() { w.open("changes"); w.raw(`[]`); w.member(name, item) })
	case strings.HasPrefix(where, "change."):
		name := strings.TrimPrefix(where, "change.")
		w.value(func() {}, false)
		// The member goes into the change, after its field: reopen it.
		b := w.buf.Bytes()
		tail := `}]}]}` // closes change, changes, entry, entry array, envelope
		if !bytes.HasSuffix(b, []byte(tail)) {
			return errors.New("internal: unexpected change tail")
		}
		w.buf.Truncate(len(b) - len(tail))
		w.member(name, item)
		w.raw(tail)
	case strings.HasPrefix(where, "value."):
		name := strings.TrimPrefix(where, "value.")
		value := item
		if base, ok := strings.CutSuffix(name, "[]"); ok && cloudValueArrays[base] {
			name, value = base, w.array(item)
		}
		if name == "messaging_product" || name == "metadata" {
			// Not a string or not an object: the value holds it instead.
			w.ev.Context.Frame.MessagingProduct = nil
			w.ev.Context.Metadata = nil
		}
		w.value(func() { w.member(name, value) }, false)
	default:
		return fmt.Errorf("unknown item at %q", where)
	}
	return nil
}

// or returns raw when set, else s as a JSON string when set, else def as a
// JSON string when set, else nil.
func (w *cloudWriter) or(raw []byte, s, def string) []byte {
	switch {
	case raw != nil:
		return raw
	case s != "":
		return jsonString(s)
	case def != "":
		return jsonString(def)
	}
	return nil
}

// jsonString returns s as a JSON string literal.
func jsonString(s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return b
}
