package messages

import (
	"encoding/json"
	"fmt"
	"time"
)

// Parse splits a WhatsApp Business Cloud API webhook body into Events, one per
// item, in document order. receivedAt is stored in every Event's ReceivedAt.
//
// The body is Meta's webhook envelope (Meta, "Webhooks reference: messages"):
// a JSON object with a string "object" (whatsapp_business_account) and an
// "entry" array; each entry holds "id" (the WABA id), "time" (Unix seconds,
// on some fields) and a "changes" array of {"field", "value"}. Events:
//
//   - field "messages": each value.messages[] item is a KindMessage event
//     (Meta, "Webhooks reference: messages"), each value.statuses[] item a
//     KindStatus event (Meta, "Status messages webhook reference"; a status
//     of a group message is one per group participant, "Webhooks for Groups
//     API"), each value.errors[] item a KindError event;
//   - field "smb_message_echoes": each value.message_echoes[] item is a
//     KindMessage event with Direction "outbound" (a message the business
//     sent from the WhatsApp Business app; Meta, "smb_message_echoes webhook
//     reference"); From is its recipient ("to");
//   - field "history": each message of value.history[].threads[].messages[]
//     (and of value.messages[]) is a KindMessage event with Direction
//     "history" (Meta, "history webhook reference"); errors are KindError
//     events;
//   - field "calls": each value.calls[] item is a KindCall event whose Type is
//     the call's "event" (connect, terminate), and each value.statuses[] item
//     (a call status: RINGING, ACCEPTED, REJECTED; Type "call") is a KindCall
//     event too, each value.errors[] item a KindError event (Meta, Calling
//     API: "API and Webhook Reference", "User-initiated calls",
//     "Business-initiated calls");
//   - any other field (message_template_status_update, account_update,
//     phone_number_quality_update, …): one KindField event per change, whose
//     Item is the whole change object and whose Type is the field name.
//
// Nothing inside a valid envelope is dropped and nothing there is an error:
// an entry, change or item of the wrong JSON type, an entry without a
// "changes" array, a change without an object "value", a "messages" or
// "calls" change that holds no item at all, and every object member Parse
// does not read (an unknown key of the envelope, an entry, a change or a
// value, or an earlier duplicate of a key it reads) each become one
// KindUnknown event whose Type says where it was: "envelope.<key>", "entry",
// "entry.<key>", "change", "change.<key>", "value.<key>" or "value.<key>[]"
// (an element of an array that is not an object). Where an object repeats a
// key, the last one is read, as encoding/json does.
//
// Identities (see Event.Identity; parts joined with Identity):
//
//	message      cloud|message|<account>|<field>|<wamid>[|reaction|<emoji>]
//	status       cloud|status|<account>|<field>|<wamid>|<status>[|<participant>]
//	call         cloud|call|<account>|calls|<call id>|event|<event>
//	call status  cloud|call|<account>|calls|<call id>|status|<status>
//	field, error cloud|<kind>|<field>|<entry id>|<entry time>|<account>|<hash>
//	unknown      cloud|unknown|<field>|<entry id>|<entry time>|<account>|<where>|<hash>
//	fallback     cloud|<kind>|<account>|<field>|fallback|<from>|<timestamp>|<status>|<hash>
//
// The field is part of every identity, so a call status never shares a key
// with a message status of the same id and value, and an echo or a history
// message never shares one with a message of the messages field. A reaction
// adds its emoji ("" for a removal, whether the emoji is empty or missing): a
// reaction and its removal are two events. A status about a group
// participant adds the participant (recipient_participant_id, see
// groupParticipant): Meta sends one status per participant of one message.
// <hash> is the hex SHA-256 of the item's JSON after json.Compact, with
// every string in one written form (so neither whitespace nor the choice of
// escapes matters) and <where> is the unknown event's
// Type. Items without an id are deduplicated over the whole dedupe horizon,
// which matches Meta's retry schedule (up to 7 days): none is Transient. The
// fallback identity, with Fallback set, is used for a message, status or
// call whose id is missing, empty or not a string (or decodes to U+FFFD:
// invalid UTF-8 or a lone surrogate, which would let two ids meet), a status
// without a string status, and a call without a string event.
//
// Parse returns an error wrapping ErrNotWebhook, with the reason, when body is
// empty, not JSON, not a JSON object, or lacks a string "object" or an array
// "entry"; no events are returned then. An envelope with an empty "entry"
// array gives no events and a nil error. Parse never panics, and its work is
// linear in len(body).
//
// The events' Item, Context.Metadata and Context.Contact are sub-slices of
// body (each with its capacity cut to its length): body must not be modified
// while they are in use. Parse is safe for concurrent use.
func Parse(body []byte, receivedAt time.Time) ([]Event, error) {
	return parseCloud(body, receivedAt, 0)
}

// parseCloud is Parse making at most max events (0: no bound); past it,
// it panics with errTooMany (see ParseMax).
func parseCloud(body []byte, receivedAt time.Time, max int) ([]Event, error) {
	env, object, entries, err := envelope(body)
	if err != nil {
		return nil, err
	}
	p := cloudParser{receivedAt: receivedAt, object: object, rawObject: lookup(env, "object"), max: max}
	known := []string{"object", "entry"}
	idx := lastIndexes(env, known)
	for i, m := range env {
		if k := knownAt(m, known, idx, i); k < 0 {
			p.unknown(&placement{}, "envelope."+m.name(), m.value)
		}
	}
	for _, e := range entries {
		p.entry(e)
	}
	return p.events, nil
}

// envelope checks that body is a Cloud API webhook and returns the members of
// its top-level object, its object and its entries.
func envelope(body []byte) (env []member, object string, entries [][]byte, err error) {
	fail := func(reason string) ([]member, string, [][]byte, error) {
		return nil, "", nil, fmt.Errorf("%w: %s", ErrNotWebhook, reason)
	}
	if len(trimSpace(body)) == 0 {
		return fail("empty body")
	}
	if !json.Valid(body) {
		return fail("body is not JSON")
	}
	env, ok := members(body)
	if !ok {
		return fail("body is not a JSON object")
	}
	raw := lookup(env, "object")
	if raw == nil {
		return fail(`no "object" member`)
	}
	if object, ok = decodeString(raw); !ok {
		return fail(`"object" is not a string`)
	}
	raw = lookup(env, "entry")
	if raw == nil {
		return fail(`no "entry" member`)
	}
	if entries, ok = elements(raw); !ok {
		return fail(`"entry" is not an array`)
	}
	return env, object, entries, nil
}

// cloudParser collects the events of one body.
type cloudParser struct {
	receivedAt time.Time
	object     string
	rawObject  []byte // the envelope's "object" as received
	events     []Event
	max        int // most events; 0: no bound
}

// placement is where an item sits in the body: what Context and the
// identities of items without an id of their own are made of.
type placement struct {
	entryID   string
	entryTime int64
	field     string
	account   string
	metadata  []byte
	// The members that place the item, as received (see Frame).
	rawEntryID, rawEntryTime, rawField, rawProduct []byte
	// rawArray is the name, as received, of the value's member whose array
	// holds the item; wrapBefore and wrapAfter, when set, wrap the item
	// inside that array's element (history threads).
	rawArray, wrapBefore, wrapAfter []byte
}

// entry turns one entry[] element into events: those of its changes, and an
// unknown event for each member other than id, time and changes.
func (p *cloudParser) entry(raw []byte) {
	ms, ok := members(raw)
	if !ok {
		p.unknown(&placement{}, "entry", raw)
		return
	}
	known := []string{"id", "time", "changes"}
	idx := lastIndexes(ms, known)
	at := placement{entryID: idOf(valueAt(ms, idx[0])), entryTime: unixSeconds(valueAt(ms, idx[1])),
		rawEntryID: valueAt(ms, idx[0]), rawEntryTime: valueAt(ms, idx[1])}
	at.account = at.entryID
	changes, ok := elements(valueAt(ms, idx[2]))
	if !ok {
		p.unknown(&at, "entry", raw)
		return
	}
	for i, m := range ms {
		if knownAt(m, known, idx, i) < 0 {
			p.unknown(&at, "entry."+m.name(), m.value)
		}
	}
	for _, c := range changes {
		p.change(at, c)
	}
}

// change turns one changes[] element into events, by its field.
func (p *cloudParser) change(at placement, raw []byte) {
	ms, ok := members(raw)
	if !ok {
		p.unknown(&at, "change", raw)
		return
	}
	known := []string{"field", "value"}
	idx := lastIndexes(ms, known)
	field, ok := decodeString(valueAt(ms, idx[0]))
	at.field = field
	at.rawField = valueAt(ms, idx[0])
	value, isObj := members(valueAt(ms, idx[1]))
	if !ok || field == "" || !isObj {
		p.unknown(&at, "change", raw)
		return
	}
	if mp := lookup(value, "messaging_product"); mp != nil {
		if _, ok := decodeString(mp); ok {
			at.rawProduct = mp
		}
	}
	if md := lookup(value, "metadata"); isObject(md) {
		at.metadata = md
		mdms, _ := members(md)
		if id := idOf(lookup(mdms, "phone_number_id")); id != "" {
			at.account = id
		}
	}
	switch field {
	case "messages", "calls", "smb_message_echoes", "history":
		before := len(p.events)
		for i, m := range ms {
			if knownAt(m, known, idx, i) < 0 {
				p.unknown(&at, "change."+m.name(), m.value)
			}
		}
		p.value(&at, value)
		if len(p.events) == before {
			p.unknown(&at, "change", raw)
		}
	default:
		p.field(&at, raw)
	}
}

// value turns the members of a "messages", "calls", "smb_message_echoes" or
// "history" change's value into events, in document order.
func (p *cloudParser) value(at *placement, value []member) {
	items, kind, dir := "messages", KindMessage, ""
	switch at.field {
	case "calls":
		items, kind = "calls", KindCall
	case "smb_message_echoes":
		items, dir = "message_echoes", "outbound"
	case "history":
		dir = "history"
	}
	statusKind := KindStatus
	if at.field == "calls" {
		statusKind = KindCall
	}
	known := []string{"messaging_product", "metadata", "contacts", items, "statuses", "errors"}
	if at.field == "history" {
		known = append(known, "history")
	}
	idx := lastIndexes(value, known)
	contacts := newContacts(valueAt(value, idx[2]))
	for i, m := range value {
		switch knownAt(m, known, idx, i) {
		case 0: // messaging_product
			if _, ok := decodeString(m.value); !ok {
				p.unknown(at, "value."+m.name(), m.value)
			}
		case 1: // metadata, read by change
			if !isObject(m.value) {
				p.unknown(at, "value."+m.name(), m.value)
			}
		case 2: // contacts, context of the items
			p.array(at, m, func(raw []byte) bool { return isObject(raw) })
		case 3: // messages, calls or message_echoes
			p.array(at, m, func(raw []byte) bool { return p.item(kind, dir, false, at, contacts, raw) })
		case 4: // statuses
			p.array(at, m, func(raw []byte) bool { return p.item(statusKind, "", true, at, contacts, raw) })
		case 5: // errors
			p.array(at, m, func(raw []byte) bool { return p.valueError(at, raw) })
		case 6: // history
			p.array(at, m, func(raw []byte) bool { return p.history(at, contacts, raw) })
		default:
			p.unknown(at, "value."+m.name(), m.value)
		}
	}
}

// history turns one value.history[] element of the "history" field into
// events: a KindMessage event marked "history" per threads[].messages[] item,
// a KindError event per errors[] item; its "metadata" (phase, chunk_order,
// progress) is context, and anything else is unknown (Meta, "history
// webhook reference"). It returns false, making no event, when raw is not an
// object.
func (p *cloudParser) history(at *placement, contacts *contacts, raw []byte) bool {
	ms, ok := members(raw)
	if !ok {
		return false
	}
	// wrap returns at with the item wrapped as {"metadata":…,<open>ITEM<close>}.
	md := lookup(ms, "metadata")
	history := at.rawArray // "history", before the threads array sets its own
	wrap := func(open, close string) *placement {
		w := *at
		w.rawArray = history
		w.wrapBefore = []byte("{")
		if md != nil {
			w.wrapBefore = append(append(w.wrapBefore, `"metadata":`...), md...)
			w.wrapBefore = append(w.wrapBefore, ',')
		}
		w.wrapBefore = append(w.wrapBefore, open...)
		w.wrapAfter = []byte(close + "}")
		return &w
	}
	for _, m := range ms {
		switch {
		case m.is("metadata"):
		case m.is("errors"):
			eat := wrap(`"errors":[`, `]`)
			p.array(eat, m, func(raw []byte) bool { return p.valueError(eat, raw) })
		case m.is("threads"):
			p.array(at, m, func(raw []byte) bool {
				tms, ok := members(raw)
				if !ok {
					return false
				}
				open := `"threads":[{`
				if id := lookup(tms, "id"); id != nil {
					open += `"id":` + string(id) + `,`
				}
				tat := wrap(open+`"messages":[`, `]}]`)
				for _, tm := range tms {
					switch {
					case tm.is("id"):
					case tm.is("messages"):
						p.array(tat, tm, func(raw []byte) bool { return p.item(KindMessage, "history", false, tat, contacts, raw) })
					default:
						p.unknown(at, "value.history[].threads[]."+tm.name(), tm.value)
					}
				}
				return true
			})
		default:
			p.unknown(at, "value.history[]."+m.name(), m.value)
		}
	}
	return true
}

// array calls each for every element of m's array value. A value that is not
// an array, and every element for which each returns false, becomes an
// unknown event.
func (p *cloudParser) array(at *placement, m member, each func(raw []byte) bool) {
	els, ok := elements(m.value)
	if !ok {
		p.unknown(at, "value."+m.name(), m.value)
		return
	}
	if at.wrapBefore == nil {
		outer := at.rawArray
		at.rawArray = m.rawName
		defer func() { at.rawArray = outer }()
	}
	for _, el := range els {
		if !each(el) {
			p.unknown(at, "value."+m.name()+"[]", el)
		}
	}
}

// maxKnown bounds the number of member names read from one object.
const maxKnown = 7

// indexes holds, for each name read from an object, the index of the member
// read (the last one with that name), or -1.
type indexes [maxKnown]int

// lastIndexes returns, for each of names (at most maxKnown), the index in ms
// of the last member with that name, or -1.
func lastIndexes(ms []member, names []string) indexes {
	var idx indexes
	for k := range idx {
		idx[k] = -1
	}
	for i, m := range ms {
		for k, n := range names {
			if m.is(n) {
				idx[k] = i
			}
		}
	}
	return idx
}

// knownAt returns k when m, the member at index i, is the one read for
// names[k]; -1 when it is unknown or an earlier duplicate.
func knownAt(m member, names []string, idx indexes, i int) int {
	for k, n := range names {
		if m.is(n) {
			if idx[k] == i {
				return k
			}
			return -1
		}
	}
	return -1
}

// valueAt returns the value of ms[i], or nil when i is -1.
func valueAt(ms []member, i int) []byte {
	if i < 0 {
		return nil
	}
	return ms[i].value
}
