package messages

import (
	"strconv"
	"strings"
	"time"
)

// ProviderWAHA is WAHA, the self-hosted WhatsApp HTTP API
// (waha.devlike.pro).
const ProviderWAHA = "waha"

// wahaAcks are the names of message.ack's numeric "ack", from -1 to 4, as
// its "ackName" writes them (WAHA, "Events", message.ack,
// waha.devlike.pro/docs/how-to/events/).
var wahaAcks = [...]string{"error", "pending", "server", "device", "read", "played"}

// ParseWAHA splits a WAHA webhook body into Events, in document order.
// receivedAt is stored in every Event's ReceivedAt.
//
// The body is a JSON object with a string "event", a string "session" (the
// session name), a "payload", and optionally "id" (the event's own id,
// "evt_…"), "timestamp" (Unix milliseconds), "metadata", "engine", "me" and
// "environment" (WAHA, "Webhooks", waha.devlike.pro/docs/how-to/webhooks/).
// Every event below is defined on WAHA's "Events" page
// (waha.devlike.pro/docs/how-to/events/), most also on the page of its
// feature, named:
//
//   - message, message.any ("Events", waha.devlike.pro/docs/how-to/events/):
//     one KindMessage event, the payload; Type is payload.type, else
//     payload._data.type;
//   - message.waiting ("Events"): one KindMessage event of Type
//     "message.waiting" (a message WhatsApp shows as "Waiting for this
//     message"; the message itself comes later as message);
//   - message.ack, message.ack.group ("Events"): one KindStatus event; Status
//     is ackName lowercased (error, pending, server, device, read, played),
//     else the name of the number "ack"; Type "ack";
//   - message.reaction ("Events"): one KindMessage event of Type "reaction";
//   - message.revoked ("Events"): one KindStatus event with Status "deleted"
//     and Type "revoked" for the message named by payload.revokedMessageId,
//     payload.before.id or payload.after.id;
//   - message.edited ("Events"): one KindMessage event of Type
//     "message.edited";
//   - event.response, event.response.failed ("Events"): one KindMessage
//     event of Type <event> (an answer to a WhatsApp event invitation);
//   - poll.vote, poll.vote.failed ("Polls", waha.devlike.pro/docs/how-to/polls/):
//     one KindMessage event of Type <event> for payload.vote;
//   - call.received, call.accepted, call.rejected ("Calls",
//     waha.devlike.pro/docs/how-to/calls/): one KindCall event, Status
//     received, accepted or rejected;
//   - session.status ("Sessions", waha.devlike.pro/docs/how-to/sessions/),
//     group.v2.join, group.v2.leave, group.v2.update, group.v2.participants,
//     group.join, group.leave ("Groups", waha.devlike.pro/docs/how-to/groups/),
//     label.upsert, label.deleted, label.chat.added, label.chat.deleted
//     ("Labels", waha.devlike.pro/docs/how-to/labels/), presence.update
//     ("Presence", waha.devlike.pro/docs/how-to/presence/), chat.archive
//     ("Chats", waha.devlike.pro/docs/how-to/chats/), engine.event and
//     state.change ("Events"): one KindField event of Type <event>;
//   - any other event name: one KindUnknown event whose Type is the event
//     name.
//
// The item is the payload. A body without a payload is one KindUnknown event
// of Type "<event>" whose item is the whole body; a payload of the wrong
// shape for its event becomes a KindUnknown event of Type "<event>", and a
// member of the envelope not listed above one of Type "envelope.<name>".
// Account is the session name; Context.Field is the event name and
// Context.Metadata the envelope's "metadata" object, when present. From is
// the other party as a phone number when its address is a phone JID (…@c.us,
// …@s.whatsapp.net), else the address written. Timestamp is the payload's
// timestamp, else the envelope's, in Unix seconds.
//
// A WAHA message id is serialised as "<fromMe>_<chat>_<id>[_<participant>]",
// for example "false_11111111111@c.us_AAAAA": it embeds the chat's address,
// which WhatsApp writes as a phone JID (…@c.us) or as a LID (…@lid), so one
// message can arrive under two serialised ids. Identities are therefore built
// from the stable parts only, as in the gateway identities table (see the
// file gateway.go): the session, the chat when it is a group, broadcast or
// newsletter ("direct" otherwise), the direction and the id the sending
// device chose: <session>|<chat>|<in|out>|<id>. A status adds its value and
// its own time (payload.timestamp; its "participant", which WAHA writes as a
// @lid or a @c.us address, and the participant suffix of its serialised id
// are not part of it), a deletion "deleted", a reaction "reaction", the
// target's inner id and the emoji, an edit "message.edited" and the edited
// message's id, an event response or a poll vote its event name (and the
// poll's inner id). A call is its id and status. A field event is its event
// name, its subject (the group, chat or label it names), its own time
// (payload.timestamp, or for session.status the time of the last of
// payload.statuses) and the hash of its payload; without an own time it is
// Transient. The envelope's id and timestamp are not part of any identity:
// WAHA sends each delivery attempt as a new request (X-Webhook-Request-Id),
// and does not document the envelope's id or time as kept across attempts.
// An id not in the serialised form is used whole. A message or status
// without a string id, or a status without a value, gets the fallback
// identity, with Fallback set. message and message.any of one message share
// one identity.
//
// A body with a payload but without a string "event" (missing, null or of
// another type) is one KindUnknown event of Type "" whose item is the
// payload; one with a payload but without a string "session" is read under
// the session "default".
//
// ParseWAHA returns an error wrapping ErrNotWebhook, with the reason, when
// body is empty, not JSON, not a JSON object, or has no "payload" and lacks
// a string "event" or a string "session"; no events are returned then. It never panics, its work
// is linear in len(body), and it is safe for concurrent use. Items are
// sub-slices of body, which must not be modified while they are in use.
func ParseWAHA(body []byte, receivedAt time.Time) ([]Event, error) {
	return parseWAHA(body, receivedAt, 0)
}

// parseWAHA is ParseWAHA making at most max events (0: no bound); past it,
// it panics with errTooMany (see ParseMax).
func parseWAHA(body []byte, receivedAt time.Time, max int) ([]Event, error) {
	env, event, err := gatewayEnvelope(body, "payload")
	if err != nil {
		return nil, err
	}
	session, ok := decodeString(lookup(env, "session"))
	if !ok {
		if lookup(env, "payload") == nil {
			return nil, notWebhook(`no string "session" member`)
		}
		// WAHA's payload without its session name: kept, under "default".
		session = "default"
	}
	g := gateway{provider: ProviderWAHA, event: event, receivedAt: receivedAt, session: session, account: session, body: body, max: max}
	if md := lookup(env, "metadata"); isObject(md) {
		g.metadata = md
	}
	g.timestamp = unixTime(lookup(env, "timestamp"))
	g.envelopeUnknowns(env, []string{"id", "timestamp", "session", "metadata", "engine", "event", "payload", "me", "environment"})

	payload := lookup(env, "payload")
	if payload == nil {
		// Nothing to read: the whole body is kept.
		g.unknown(event, whole(body))
		return g.finish(), nil
	}
	ms, isObj := members(payload)
	w := waha{gateway: &g}
	switch {
	case !isObj && event != "engine.event", event == "":
		// A payload of the wrong shape, or of no event: which of WAHA's
		// payloads it is cannot be known (a message and its ack share id,
		// from and fromMe).
		g.unknown(event, payload)
	case event == "message" || event == "message.any":
		w.message(ms, payload)
	case event == "message.waiting" || event == "event.response" || event == "event.response.failed":
		w.message(ms, payload, event)
	case event == "message.edited":
		edited, _ := decodeString(lookup(ms, "editedMessageId"))
		w.message(ms, payload, event, edited)
	case event == "message.ack" || event == "message.ack.group":
		w.ack(ms, payload)
	case event == "message.reaction":
		w.reaction(ms, payload)
	case event == "message.revoked":
		w.revoked(ms, payload)
	case event == "poll.vote" || event == "poll.vote.failed":
		w.vote(ms, payload)
	case strings.HasPrefix(event, "call."):
		w.call(ms, payload)
	case wahaFields[event]:
		w.field(ms, payload)
	default:
		g.unknown(event, payload)
	}
	return g.finish(), nil
}

// wahaFields are the WAHA events that are KindField events.
var wahaFields = map[string]bool{
	"session.status": true, "state.change": true, "engine.event": true,
	"group.v2.join": true, "group.v2.leave": true, "group.v2.update": true, "group.v2.participants": true,
	"group.join": true, "group.leave": true,
	"label.upsert": true, "label.deleted": true, "label.chat.added": true, "label.chat.deleted": true,
	"presence.update": true, "chat.archive": true,
}

// waha reads the payload of one WAHA body.
type waha struct{ *gateway }

// splitWAHAID splits a serialised message id "<true|false>_<chat>_<id>[_…]".
// ok is false when s is not in that form.
func splitWAHAID(s string) (fromMe bool, chat, id string, ok bool) {
	rest, found := strings.CutPrefix(s, "true_")
	if found {
		fromMe = true
	} else if rest, found = strings.CutPrefix(s, "false_"); !found {
		return false, "", "", false
	}
	chat, rest, found = strings.Cut(rest, "_")
	id, _, _ = strings.Cut(rest, "_")
	if !found || chat == "" || id == "" {
		return false, "", "", false
	}
	return fromMe, chat, id, true
}

// wahaID reads a message id: a string, or an object with "_serialized".
func wahaID(v []byte) (string, bool) {
	if ms, ok := members(v); ok {
		return decodeString(lookup(ms, "_serialized"))
	}
	return decodeString(v)
}

// wahaKey returns the key of the message whose serialised id is s (decoded
// with ok); ms is the object holding it, read for fromMe and the chat when s
// is not in the serialised form.
func wahaKey(s string, ok bool, ms []member) msgKey {
	if fromMe, chat, id, split := splitWAHAID(s); ok && split {
		return msgKey{id: id, idOK: usableID(id, true), fromMe: fromMe, chat: chat}
	}
	k := msgKey{id: s, idOK: usableID(s, ok), fromMe: boolOf(lookup(ms, "fromMe"))}
	k.chat = stringOf(lookup(ms, "chatId"))
	if k.chat == "" {
		if k.fromMe {
			k.chat = stringOf(lookup(ms, "to"))
		} else {
			k.chat = stringOf(lookup(ms, "from"))
		}
	}
	return k
}

// wahaFrom returns the other party of a message or status object.
func wahaFrom(ms []member, fromMe bool) string {
	s := func(name string) string { return stringOf(lookup(ms, name)) }
	if fromMe {
		return party(s("participant"), s("to"), s("chatId"))
	}
	return party(s("participant"), s("from"), s("chatId"))
}

// message reads a message payload; extra parts (the event name of a
// message.waiting, message.edited or event.response, an edited message's
// id) follow the id in its identity and the first names its Type.
func (w waha) message(ms []member, raw []byte, extra ...string) {
	id, ok := wahaID(lookup(ms, "id"))
	k := wahaKey(id, ok, ms)
	ev := w.newEvent(KindMessage, raw)
	ev.ID = id
	ev.Type = stringOf(lookup(ms, "type"))
	if ev.Type == "" {
		data, _ := members(lookup(ms, "_data"))
		ev.Type = stringOf(lookup(data, "type"))
	}
	if len(extra) > 0 {
		ev.Type = extra[0]
	}
	ev.From = wahaFrom(ms, k.fromMe)
	if ts := unixTime(lookup(ms, "timestamp")); ts > 0 {
		ev.Timestamp = ts
		k.own = ts
	}
	w.gateway.message(ev, k, extra...)
}

// ack reads a message.ack payload.
func (w waha) ack(ms []member, raw []byte) {
	id, ok := wahaID(lookup(ms, "id"))
	k := wahaKey(id, ok, ms)
	ev := w.newEvent(KindStatus, raw)
	ev.ID = id
	ev.Type = "ack"
	ev.From = wahaFrom(ms, k.fromMe)
	ev.Status = strings.ToLower(strings.TrimSpace(stringOf(lookup(ms, "ackName"))))
	if ev.Status == "" {
		if n, ok := intOf(lookup(ms, "ack")); ok {
			if n >= -1 && n < int64(len(wahaAcks))-1 {
				ev.Status = wahaAcks[n+1]
			} else {
				ev.Status = strconv.FormatInt(n, 10)
			}
		}
	}
	if ts := unixTime(lookup(ms, "timestamp")); ts > 0 {
		ev.Timestamp = ts
		k.own = ts
	}
	w.status(ev, k, strconv.FormatInt(k.own, 10))
}

// reaction reads a message.reaction payload: its own id, and the reaction
// {text, messageId} (or, in some deployments, "reaction" as the emoji and
// "messageId" beside it).
func (w waha) reaction(ms []member, raw []byte) {
	id, ok := wahaID(lookup(ms, "id"))
	k := wahaKey(id, ok, ms)
	rc, isObj := members(lookup(ms, "reaction"))
	var text, target string
	var targetOK bool
	if isObj {
		text = stringOf(lookup(rc, "text"))
		target, targetOK = wahaID(lookup(rc, "messageId"))
	} else {
		text = stringOf(lookup(ms, "reaction"))
	}
	if !targetOK {
		target, targetOK = wahaID(lookup(ms, "messageId"))
	}
	tk := wahaKey(target, targetOK, ms)
	ev := w.newEvent(KindMessage, raw)
	ev.ID = id
	ev.Type = "reaction"
	ev.From = party(stringOf(lookup(ms, "participant")), stringOf(lookup(ms, "senderId")), stringOf(lookup(ms, "from")))
	if ts := unixTime(lookup(ms, "timestamp")); ts > 0 {
		ev.Timestamp = ts
		k.own = ts
	}
	k.idOK = k.idOK && tk.idOK
	w.gateway.message(ev, k, "reaction", tk.id, text)
}

// revoked reads a message.revoked payload.
func (w waha) revoked(ms []member, raw []byte) {
	id, ok := decodeString(lookup(ms, "revokedMessageId"))
	holder := ms
	for _, name := range []string{"before", "after"} {
		if ok {
			break
		}
		if m, isObj := members(lookup(ms, name)); isObj {
			if id, ok = wahaID(lookup(m, "id")); ok {
				holder = m
			}
		}
	}
	k := wahaKey(id, ok, holder)
	ev := w.newEvent(KindStatus, raw)
	ev.ID = id
	ev.Type = "revoked"
	ev.Status = "deleted"
	ev.From = wahaFrom(holder, k.fromMe)
	w.status(ev, k)
}

// vote reads a poll.vote or poll.vote.failed payload: {vote: {id, from, to,
// fromMe, selectedOptions, timestamp}, poll: {id, …}}.
func (w waha) vote(ms []member, raw []byte) {
	vote, _ := members(lookup(ms, "vote"))
	poll, _ := members(lookup(ms, "poll"))
	id, ok := wahaID(lookup(vote, "id"))
	k := wahaKey(id, ok, vote)
	pollID, pollOK := wahaID(lookup(poll, "id"))
	pk := wahaKey(pollID, pollOK, poll)
	ev := w.newEvent(KindMessage, raw)
	ev.ID = id
	ev.Type = w.event
	ev.From = wahaFrom(vote, k.fromMe)
	if ts := unixTime(lookup(vote, "timestamp")); ts > 0 {
		ev.Timestamp = ts
		k.own = ts
	}
	w.gateway.message(ev, k, w.event, pk.id)
}

// call reads a call.* payload: {id, from, timestamp, isVideo, isGroup}; its
// status is the event name after "call.".
func (w waha) call(ms []member, raw []byte) {
	id, ok := decodeString(lookup(ms, "id"))
	ev := w.newEvent(KindCall, raw)
	ev.Type = "call"
	ev.Status = strings.TrimPrefix(w.event, "call.")
	ev.From = party(stringOf(lookup(ms, "from")))
	own := unixTime(lookup(ms, "timestamp"))
	if own > 0 {
		ev.Timestamp = own
	}
	w.gateway.call(ev, id, usableID(id, ok), own)
}

// field reads the payload of a field event: its subject is the group, chat
// or label it names, its own time payload.timestamp or, for session.status,
// the time of the last of payload.statuses.
func (w waha) field(ms []member, raw []byte) {
	subject := ""
	if grp, ok := members(lookup(ms, "group")); ok {
		subject, _ = wahaID(lookup(grp, "id"))
	}
	for _, name := range []string{"chatId", "id", "labelId"} {
		if subject != "" {
			break
		}
		subject, _ = wahaID(lookup(ms, name))
	}
	own := unixTime(lookup(ms, "timestamp"))
	if own == 0 {
		statuses, _ := elements(lookup(ms, "statuses"))
		if n := len(statuses); n > 0 {
			last, _ := members(statuses[n-1])
			own = unixTime(lookup(last, "timestamp"))
		}
	}
	w.gateway.field(raw, subject, own)
}
