package messages

import (
	"strconv"
	"strings"
	"time"
)

// ProviderWASender is WASenderApi (wasenderapi.com), a WhatsApp gateway on a
// WhatsApp Web session.
const ProviderWASender = "wasender"

// wasenderStatuses are the values of messages.update's numeric status
// (WASenderApi, "Webhook: Message Status Update",
// wasenderapi.com/api-docs/webhooks/webhook-message-update).
var wasenderStatuses = [...]string{"error", "pending", "sent", "delivered", "read", "played"}

// ParseWASender splits a WASenderApi webhook body into Events, in document
// order. receivedAt is stored in every Event's ReceivedAt.
//
// The body is a JSON object with a string "event", a "timestamp" (Unix
// seconds or milliseconds), an optional "sessionId" and "data"
// (WASenderApi, "Webhook Setup", wasenderapi.com/api-docs/webhooks/webhook-setup).
// A body without a string "event" (absent, null or of another type) but
// with "data" (the shape of older examples) is read too: its data as messages when it holds
// any, else one KindUnknown event. Events, each with the page that defines it (under
// wasenderapi.com/api-docs/webhooks/):
//
//   - messages.received (webhook-message-received),
//     messages-personal.received (webhook-personal-message-received),
//     messages-group.received (webhook-group-message-received),
//     messages-newsletter.received (webhook-newsletter-message-received),
//     messages.upsert (webhook-message-upsert) and message.sent
//     (webhook-message-sent): one KindMessage event per message:
//     data.messages as an array or an object, or data itself when it holds a
//     "key". Type is the first member of the message's "message" object
//     (conversation, extendedTextMessage, imageMessage, …). A message.sent
//     whose data holds no message ("success": false and an "error") is one
//     KindStatus event with Status "failed" and Type "sent";
//   - messages.update (webhook-message-update): one KindStatus event per
//     {key, update} (data as an object or an array); Status is update.status,
//     the documented numbers 0–5 written as error, pending, sent, delivered,
//     read, played; Type "update";
//   - message-receipt.update (webhook-message-receipt-update): one KindStatus
//     event per {key, receipt} (data.message, data, or the elements of data);
//     Status is receipt.status, else "played", "read" or "delivered" by which
//     of playedTimestamp, readTimestamp, receiptTimestamp is set; Type
//     "receipt"; From the user the receipt is from;
//   - messages.delete (webhook-message-deleted): one KindStatus event with
//     Status "deleted" and Type "delete" per deleted key (data.keys,
//     data.key, data, or the elements of data);
//   - messages.reaction (webhook-message-reaction): one KindMessage event of
//     Type "reaction" per {key, reaction} (data as an array or an object);
//   - call (webhook-call-received): one KindCall event per call (data.call,
//     data, or the elements of either); Status is the call's status (offer,
//     accept, reject, timeout, …), ID its id;
//   - session.status (webhook-session-status), qrcode.updated
//     (webhook-qrcode-updated), poll.results (webhook-poll-results),
//     chats.upsert, chats.update (webhook-chat-upsert, webhook-chat-update),
//     chats.delete, contacts.upsert, contacts.update (webhook-contact-upsert,
//     webhook-contact-update), groups.upsert, groups.update
//     (webhook-group-upsert, webhook-group-update) and
//     group-participants.update (webhook-group-participants-update):
//     KindField events of Type <event>, one per element when data is an
//     array, else one whose item is data;
//   - any other event name: one KindUnknown event whose Type is the event
//     name and whose item is data.
//
// A body without data is one KindUnknown event of Type "<event>" whose item
// is the whole body. Inside a known event, an element that is not an object,
// or a data value of the wrong shape, becomes a KindUnknown event of Type
// "<event>"; a member of the envelope other than event, timestamp, sessionId
// and data becomes one of Type "envelope.<name>". Other members inside data
// are not read.
//
// Every event's Account is the session: "s-" and 16 hexadecimal digits of the
// SHA-256 of sessionId (WASenderApi documents that field as the session's API
// key, which must reach no subject, log or downstream system), or "default"
// when the body has none. Context.Field is the event name. From is the other
// party as a phone number when the key gives one (cleanedSenderPn,
// participantPn, senderPn, remoteJidAlt, participant, remoteJid, in that
// order), else the address written; for a receipt, the user it is from.
// Timestamp is the message's messageTimestamp, the receipt's or reaction's
// own time, else the envelope's timestamp, in Unix seconds.
//
// Identities are those of the gateway identities table (see the file
// gateway.go): a message is <session>|<chat>|<in|out>|<key.id>, where the
// chat is "direct" for any one-to-one chat (its remoteJid flips between
// …@s.whatsapp.net and …@lid: "Message Upsert", remoteJid "can be a LID …
// depending on the addressing mode"); a status adds its value, a receipt its
// own time (its userJid flips between forms the same way, so the user is not
// part of it), a deletion "deleted"; a reaction is the message identity of
// the reaction's own key followed by "reaction", the target's id and the
// emoji (an empty emoji, a removal, is another event), and so is a message
// of the message events that holds a reactionMessage; a call is its id and
// status; a field event is its event name, subject (the group, chat or
// contact id it names; the poll's message id) and the hash of its item. So
// messages.upsert, messages.received, messages-personal.received,
// messages-group.received, messages-newsletter.received and message.sent of
// one message share one identity and dedupe to one event. WASenderApi
// documents no retry schedule and no envelope id, and whether it keeps the
// envelope's timestamp across retries is not documented: the envelope's
// timestamp is part of no identity, and every field event, which has no
// time of its own, is Transient (deduplicated within the repeat window, see
// Window). A message or status whose key.id is missing, empty or not a
// string (or a status without a value) gets the fallback identity, with
// Fallback set.
//
// ParseWASender returns an error wrapping ErrNotWebhook, with the reason, when
// body is empty, not JSON, not a JSON object, or has neither a string "event"
// nor a "data" member; no events are returned then. It never panics, its work
// is linear in len(body), and it is safe for concurrent use. Items are
// sub-slices of body, which must not be modified while they are in use.
func ParseWASender(body []byte, receivedAt time.Time) ([]Event, error) {
	return parseWASender(body, receivedAt, 0)
}

// parseWASender is ParseWASender making at most max events (0: no bound);
// past it, it panics with errTooMany (see ParseMax).
func parseWASender(body []byte, receivedAt time.Time, max int) ([]Event, error) {
	env, event, err := gatewayEnvelope(body, "data")
	if err != nil {
		return nil, err
	}
	g := gateway{provider: ProviderWASender, event: event, receivedAt: receivedAt, account: "default", body: body, max: max}
	if id := stringOf(lookup(env, "sessionId")); id != "" {
		g.account = sessionRef(id)
	}
	g.session = g.account
	g.timestamp = unixTime(lookup(env, "timestamp"))
	g.envelopeUnknowns(env, []string{"event", "timestamp", "sessionId", "data"})

	data := lookup(env, "data")
	if data == nil {
		// Nothing to read: the whole body is kept.
		g.unknown(event, whole(body))
		return g.finish(), nil
	}
	before := len(g.events)
	w := wasender{gateway: &g}
	switch event {
	case "messages.upsert", "messages.received", "messages-personal.received",
		"messages-group.received", "messages-newsletter.received", "":
		w.each(w.messageItems(data), w.message)
	case "message.sent":
		if items := w.messageItems(data); len(items) > 0 {
			w.each(items, w.message)
		} else if ms, ok := members(data); ok && lookup(ms, "success") != nil {
			w.sendFailed(ms, data)
		}
	case "messages.update":
		els, _ := objects(data)
		w.each(els, w.update)
	case "message-receipt.update":
		w.each(w.receiptItems(data), w.receipt)
	case "messages.delete":
		w.each(w.deletedKeys(data), w.deleted)
	case "messages.reaction":
		els, _ := objects(data)
		w.each(els, w.reaction)
	case "call":
		w.each(w.calls(data), w.baileysCall)
	case "session.status", "qrcode.updated", "poll.results", "group-participants.update",
		"chats.upsert", "chats.update", "chats.delete", "contacts.upsert", "contacts.update",
		"groups.upsert", "groups.update":
		els, _ := objects(data)
		w.each(els, w.field)
	default:
		g.unknown(event, data)
	}
	if len(g.events) == before {
		// A known event whose data held nothing wagate could read.
		g.unknown(event, data)
	}
	return g.finish(), nil
}

// wasender reads the items of one WASenderApi body.
type wasender struct{ *gateway }

// messageItems returns the messages of a message event's data:
// data.messages (an array or an object), or data when it holds a key.
func (w wasender) messageItems(data []byte) [][]byte {
	ms, ok := members(data)
	if !ok {
		els, _ := elements(data)
		return els
	}
	if m := lookup(ms, "messages"); m != nil {
		els, _ := objects(m)
		return els
	}
	if lookup(ms, "key") != nil {
		els, _ := objects(data)
		return els
	}
	return nil
}

// wasenderKey reads a message key: id, fromMe and remoteJid.
func wasenderKey(key []member) msgKey {
	id, ok := decodeString(lookup(key, "id"))
	return msgKey{
		id:     id,
		idOK:   usableID(id, ok),
		fromMe: boolOf(lookup(key, "fromMe")),
		chat:   stringOf(lookup(key, "remoteJid")),
	}
}

// wasenderParty returns the other party of a key: a phone number when the key
// gives one, else the address written.
func wasenderParty(key []member) string {
	if pn := stringOf(lookup(key, "cleanedSenderPn")); pn != "" {
		return pn
	}
	var addrs []string
	for _, name := range []string{"participantPn", "senderPn", "remoteJidAlt", "participant", "remoteJid", "senderLid"} {
		addrs = append(addrs, stringOf(lookup(key, name)))
	}
	return party(addrs...)
}

// messageType returns the first member name of a Baileys message object,
// skipping messageContextInfo; "" when there is none.
func messageType(v []byte) string {
	ms, _ := members(v)
	for _, m := range ms {
		if n := m.name(); n != "messageContextInfo" {
			return n
		}
	}
	return ""
}

// message reads one message item.
func (w wasender) message(ms []member, raw []byte) {
	key, _ := members(lookup(ms, "key"))
	k := wasenderKey(key)
	ev := w.newEvent(KindMessage, raw)
	ev.ID = k.id
	ev.Type = messageType(lookup(ms, "message"))
	ev.From = wasenderParty(key)
	if ts := unixTime(lookup(ms, "messageTimestamp")); ts > 0 {
		ev.Timestamp = ts
		k.own = ts
	}
	w.gateway.message(ev, k, reactionParts(lookup(ms, "message"))...)
}

// update reads one messages.update element: {key, update: {status}}.
func (w wasender) update(ms []member, raw []byte) {
	key, _ := members(lookup(ms, "key"))
	k := wasenderKey(key)
	upd, _ := members(lookup(ms, "update"))
	ev := w.newEvent(KindStatus, raw)
	ev.ID = k.id
	ev.Type = "update"
	ev.From = wasenderParty(key)
	ev.Status = wasenderStatus(lookup(upd, "status"))
	w.status(ev, k)
}

// wasenderStatus reads a status written as a documented number (0–5), as
// another integer (kept in decimal) or as a string (lowercased).
func wasenderStatus(v []byte) string {
	if s, ok := decodeString(v); ok {
		return strings.ToLower(strings.TrimSpace(s))
	}
	n, ok := intOf(v)
	if !ok {
		return ""
	}
	if n >= 0 && n < int64(len(wasenderStatuses)) {
		return wasenderStatuses[n]
	}
	return strconv.FormatInt(n, 10)
}

// receiptItems returns the {key, receipt} objects of a receipt event's data:
// data.message, data itself, or the elements of data.
func (w wasender) receiptItems(data []byte) [][]byte {
	ms, ok := members(data)
	if !ok {
		els, _ := elements(data)
		return els
	}
	if m := lookup(ms, "message"); isObject(m) {
		els, _ := objects(m)
		return els
	}
	els, _ := objects(data)
	return els
}

// receipt reads one {key, receipt} object.
func (w wasender) receipt(ms []member, raw []byte) {
	key, _ := members(lookup(ms, "key"))
	k := wasenderKey(key)
	rc, _ := members(lookup(ms, "receipt"))
	user := stringOf(lookup(rc, "userJid"))
	ev := w.newEvent(KindStatus, raw)
	ev.ID = k.id
	ev.Type = "receipt"
	ev.From = party(user)
	ev.Status = strings.ToLower(stringOf(lookup(rc, "status")))
	for _, t := range [...]struct{ field, status string }{
		{"playedTimestamp", "played"}, {"readTimestamp", "read"}, {"receiptTimestamp", "delivered"},
	} {
		ts := unixTime(lookup(rc, t.field))
		if ts == 0 {
			continue
		}
		if ev.Status == "" {
			ev.Status = t.status
		}
		if ev.Status == t.status {
			k.own = ts
		}
	}
	if ts := unixTime(lookup(rc, "t")); ts > 0 {
		k.own = ts
	}
	if k.own > 0 {
		ev.Timestamp = k.own
	}
	w.status(ev, k, strconv.FormatInt(k.own, 10))
}

// deletedKeys returns the keys of a messages.delete event's data: data.keys,
// data.key, the keys of data's elements, or data itself.
func (w wasender) deletedKeys(data []byte) [][]byte {
	if ms, ok := members(data); ok {
		if v := lookup(ms, "keys"); v != nil {
			els, _ := objects(v)
			return els
		}
		if v := lookup(ms, "key"); isObject(v) {
			els, _ := objects(v)
			return els
		}
		els, _ := objects(data)
		return els
	}
	els, _ := elements(data)
	for i, el := range els {
		if ms, ok := members(el); ok {
			if v := lookup(ms, "key"); isObject(v) {
				els[i] = v
			}
		}
	}
	return els
}

// deleted reads one deleted key.
func (w wasender) deleted(key []member, raw []byte) {
	k := wasenderKey(key)
	ev := w.newEvent(KindStatus, raw)
	ev.ID = k.id
	ev.Type = "delete"
	ev.Status = "deleted"
	ev.From = wasenderParty(key)
	w.status(ev, k)
}

// reaction reads one {key, reaction: {text, key}} object: key is the message
// reacted to, reaction.key the reaction's own key when the gateway gives it.
func (w wasender) reaction(ms []member, raw []byte) {
	target, _ := members(lookup(ms, "key"))
	tk := wasenderKey(target)
	rc, _ := members(lookup(ms, "reaction"))
	own, _ := members(lookup(rc, "key"))
	k := wasenderKey(own)
	if !k.idOK {
		k = tk
	}
	if k.chat == "" {
		k.chat = tk.chat
	}
	text := stringOf(lookup(rc, "text"))
	ev := w.newEvent(KindMessage, raw)
	ev.ID = k.id
	ev.Type = "reaction"
	ev.From = wasenderParty(own)
	if ev.From == "" {
		ev.From = wasenderParty(target)
	}
	if ts := unixTime(lookup(rc, "senderTimestampMs")); ts > 0 {
		ev.Timestamp = ts
		k.own = ts
	}
	k.idOK = k.idOK && tk.idOK
	w.gateway.message(ev, k, "reaction", tk.id, text)
}

// sendFailed reads a message.sent whose data reports a failure: {"success":
// false, "error": "…"}. It has no message id: its identity is the fallback.
func (w wasender) sendFailed(ms []member, raw []byte) {
	ev := w.newEvent(KindStatus, raw)
	ev.Type = "sent"
	ev.Status = "failed"
	if e := stringOf(lookup(ms, "error")); e != "" {
		ev.Errors = []Error{{Message: e}}
	}
	w.fallback(ev, 0)
}

// calls returns the calls of a call event's data: data.call, or data, each
// an object or an array.
func (w wasender) calls(data []byte) [][]byte {
	if ms, ok := members(data); ok {
		if c := lookup(ms, "call"); c != nil {
			els, _ := objects(c)
			return els
		}
	}
	els, _ := objects(data)
	return els
}

// field reads one element of a field event: its subject is the id, jid or
// key.id it names, when any.
func (w wasender) field(ms []member, raw []byte) {
	subject := ""
	for _, name := range []string{"id", "jid", "remoteJid"} {
		if subject = stringOf(lookup(ms, name)); subject != "" {
			break
		}
	}
	if subject == "" {
		key, _ := members(lookup(ms, "key"))
		subject = stringOf(lookup(key, "id"))
	}
	w.gateway.field(raw, subject, 0)
}
