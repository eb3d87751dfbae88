package messages

import (
	"strings"
	"time"
)

// ProviderEvolution is Evolution API (doc.evolution-api.com), the open-source
// WhatsApp gateway on a Baileys (WhatsApp Web) session.
const ProviderEvolution = "evolution"

// evolutionStatuses are the message statuses of messages.update, as Evolution
// API writes them (Baileys' WAMessageStatus names).
var evolutionStatuses = map[string]string{
	"ERROR": "error", "PENDING": "pending", "SERVER_ACK": "sent", "DELIVERY_ACK": "delivered",
	"READ": "read", "PLAYED": "played", "DELETED": "deleted",
}

// evolutionAliases are the dotted forms of Evolution API's upper-case event
// names (as its webhook settings list them) whose body name differs.
var evolutionAliases = map[string]string{
	"group.participants.update": "group-participants.update",
	"group.update":              "groups.update",
	"new.jwt.token":             "new.jwt",
	"typebot.change.status":     "typebot.change-status",
}

// ParseEvolution splits an Evolution API webhook body into Events, in
// document order. receivedAt is stored in every Event's ReceivedAt.
//
// The body is a JSON object with a string "event" (for example
// "messages.upsert"; the upper-case form MESSAGES_UPSERT is read the same),
// "instance" (the instance name), "data", and "destination", "date_time",
// "sender", "server_url" and "apikey" (Evolution API, "Webhooks",
// doc.evolution-api.com/v2/en/configuration/webhooks, which lists the
// events). Events:
//
//   - messages.upsert, send.message, messages.set, messages.edited: one
//     KindMessage event per message (data, data.messages, or the elements of
//     either); Type is data.messageType, else the first member of
//     data.message; Direction "outbound" when key.fromMe;
//   - messages.update: one KindStatus event per update ({keyId, remoteJid,
//     fromMe, status} as Evolution API v2 writes it, or Baileys' {key,
//     update: {status}}); Status is the status lowercased, with SERVER_ACK,
//     DELIVERY_ACK written sent, delivered; Type "update";
//   - messages.delete: one KindStatus event with Status "deleted" and Type
//     "delete" per deleted key;
//   - call: one KindCall event per call (Baileys' {id, from, status, date});
//   - qrcode.updated, connection.update, application.startup,
//     contacts.set, contacts.upsert, contacts.update, presence.update,
//     chats.set, chats.upsert, chats.update, chats.delete, groups.upsert,
//     groups.update, group-participants.update, labels.edit,
//     labels.association, new.jwt, logout.instance, remove.instance,
//     typebot.start, typebot.change-status: KindField events of Type
//     <event>, one per element when data is an array;
//   - any other event name: one KindUnknown event.
//
// A body whose "event" is missing, null or not a string but which holds
// "data" is read too, with event "": each item (data, data.messages, or the
// elements of either) that holds both "key" and "message" (the shape of a
// WAMessage) is a KindMessage event, any other a KindUnknown event.
//
// Account is the instance name. Context.Field is the event name in its
// dotted lower-case form. Items are taken from data and never hold the
// envelope: the envelope's "apikey", the instance's API key, which lets its
// holder drive the instance, is therefore never stored, logged or forwarded
// (an application that calls Evolution API back holds its own key). A body
// without data is one KindUnknown event of the whole body with the apikey's
// value replaced by "[redacted]" (the only item that is not a sub-slice of
// body); in every event's Context.Frame, from which a provider format
// forward writes the body back, the apikey's value reads "[redacted]" too.
//
// Identities are those of the gateway identities table (see the file
// gateway.go), from Baileys' message key: <instance>|<chat>|<in|out>|<key.id>
// for a message (the one-to-one chat's remoteJid flips between a phone JID
// and a @lid, and Evolution API writes the other form in remoteJidAlt, so
// neither is part of it), with the status added for a status, "deleted" for
// a deletion, "edited" and the hash of the new message for an edit (two edits
// of one message may carry its key), "reaction", the target's id and the
// emoji for a message holding a reactionMessage (a removal's emoji is ""); a call is its id and status; a field
// event is its event name, its subject (the remoteJid, id or jid it names)
// and the hash of its item, and is Transient. The envelope's date_time
// (when Evolution API built the webhook, not a time of the item), sender,
// server_url and apikey are not part of any identity.
//
// ParseEvolution returns an error wrapping ErrNotWebhook, with the reason,
// when body is empty, not JSON, not a JSON object, or has neither a string
// "event" nor a "data" member; no events are returned then. It never panics, its work is linear
// in len(body), and it is safe for concurrent use.
func ParseEvolution(body []byte, receivedAt time.Time) ([]Event, error) {
	return parseEvolution(body, receivedAt, 0)
}

// parseEvolution is ParseEvolution making at most max events (0: no
// bound); past it, it panics with errTooMany (see ParseMax).
func parseEvolution(body []byte, receivedAt time.Time, max int) ([]Event, error) {
	env, event, err := gatewayEnvelope(body, "data")
	if err != nil {
		return nil, err
	}
	event = strings.ReplaceAll(strings.ToLower(strings.TrimSpace(event)), "_", ".")
	if alias, ok := evolutionAliases[event]; ok {
		event = alias
	}
	instance := stringOf(lookup(env, "instance"))
	if instance == "" {
		instance = "default"
	}
	g := gateway{provider: ProviderEvolution, event: event, receivedAt: receivedAt, session: instance, account: instance, body: body, max: max}
	// Every apikey member, a repeated one too, is known: none becomes an
	// unknown event holding the key.
	rest := make([]member, 0, len(env))
	for _, m := range env {
		if !m.is("apikey") {
			rest = append(rest, m)
		} else {
			g.secrets = append(g.secrets, m.value)
		}
	}
	g.envelopeUnknowns(rest, []string{"event", "instance", "data", "destination", "date_time",
		"sender", "server_url"})
	data := lookup(env, "data")
	if data == nil {
		g.unknown(event, redactAPIKey(body, env))
		return g.finish(), nil
	}
	before := len(g.events)
	e := evolution{gateway: &g}
	switch event {
	case "messages.upsert", "send.message", "messages.set", "messages.edited":
		e.each(e.messageItems(data), e.message)
	case "":
		// No event name: a message by its documented shape (a WAMessage
		// holds both "key" and "message"; an update, a deletion or a call
		// does not), anything else unknown.
		e.each(e.messageItems(data), e.bare)
	case "messages.update":
		els, _ := objects(data)
		e.each(els, e.update)
	case "messages.delete":
		els, _ := objects(data)
		e.each(els, e.deleted)
	case "call":
		els, _ := objects(data)
		e.each(els, e.baileysCall)
	case "qrcode.updated", "connection.update", "application.startup", "contacts.set",
		"contacts.upsert", "contacts.update", "presence.update", "chats.set", "chats.upsert",
		"chats.update", "chats.delete", "groups.upsert", "groups.update", "group-participants.update",
		"labels.edit", "labels.association", "new.jwt", "logout.instance", "remove.instance",
		"typebot.start", "typebot.change-status":
		els, _ := objects(data)
		e.each(els, e.field)
	default:
		g.unknown(event, data)
	}
	if len(g.events) == before {
		g.unknown(event, data)
	}
	return g.finish(), nil
}

// redactAPIKey returns the envelope env of body with the value of every
// "apikey" member replaced by "[redacted]", as a new compact object (members
// in document order, names and other values as received); body itself
// (trimmed) when it has none.
func redactAPIKey(body []byte, env []member) []byte {
	if lookup(env, "apikey") == nil {
		return whole(body)
	}
	out := make([]byte, 0, len(body))
	out = append(out, '{')
	for i, m := range env {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, m.rawName...)
		out = append(out, ':')
		if m.is("apikey") {
			out = append(out, `"[redacted]"`...)
		} else {
			out = append(out, m.value...)
		}
	}
	out = append(out, '}')
	return out[:len(out):len(out)]
}

// evolution reads the items of one Evolution API body.
type evolution struct{ *gateway }

// messageItems returns the messages of data: data.messages, or data (an
// object or an array).
func (e evolution) messageItems(data []byte) [][]byte {
	if ms, ok := members(data); ok {
		if m := lookup(ms, "messages"); m != nil {
			els, _ := objects(m)
			return els
		}
	}
	els, _ := objects(data)
	return els
}

// bare reads one item of a body without an event name: a message when it
// holds a "key" and a "message", else an unknown event.
func (e evolution) bare(ms []member, raw []byte) {
	if lookup(ms, "key") == nil || lookup(ms, "message") == nil {
		e.unknown(e.event, raw)
		return
	}
	e.message(ms, raw)
}

// message reads one Baileys WAMessage: key, message, messageType,
// messageTimestamp.
func (e evolution) message(ms []member, raw []byte) {
	key, _ := members(lookup(ms, "key"))
	k := wasenderKey(key)
	ev := e.newEvent(KindMessage, raw)
	ev.ID = k.id
	ev.Type = stringOf(lookup(ms, "messageType"))
	if ev.Type == "" {
		ev.Type = messageType(lookup(ms, "message"))
	}
	ev.From = evolutionParty(key)
	if ts := unixTime(lookup(ms, "messageTimestamp")); ts > 0 {
		ev.Timestamp = ts
		k.own = ts
	}
	extra := reactionParts(lookup(ms, "message"))
	if e.event == "messages.edited" {
		// Two edits of one message may carry its key: the new content
		// tells them apart.
		extra = []string{"edited", contentHash(lookup(ms, "message"))}
	}
	e.gateway.message(ev, k, extra...)
}

// evolutionParty returns the other party of a key: a phone number when the
// key gives one (participantAlt, remoteJidAlt, participant, remoteJid), else
// the address written.
func evolutionParty(key []member) string {
	var addrs []string
	for _, name := range []string{"participantAlt", "participant", "remoteJidAlt", "remoteJid"} {
		addrs = append(addrs, stringOf(lookup(key, name)))
	}
	return party(addrs...)
}

// update reads one messages.update item.
func (e evolution) update(ms []member, raw []byte) {
	var k msgKey
	var status string
	if key, ok := members(lookup(ms, "key")); ok {
		k = wasenderKey(key)
		upd, _ := members(lookup(ms, "update"))
		status = wasenderStatus(lookup(upd, "status"))
	} else {
		id, ok := decodeString(lookup(ms, "keyId"))
		k = msgKey{id: id, idOK: usableID(id, ok), fromMe: boolOf(lookup(ms, "fromMe")), chat: stringOf(lookup(ms, "remoteJid"))}
		status = stringOf(lookup(ms, "status"))
	}
	if s, ok := evolutionStatuses[strings.ToUpper(status)]; ok {
		status = s
	}
	ev := e.newEvent(KindStatus, raw)
	ev.ID = k.id
	ev.Type = "update"
	ev.Status = strings.ToLower(status)
	ev.From = party(stringOf(lookup(ms, "participant")), k.chat)
	e.status(ev, k)
}

// deleted reads one messages.delete item: a key, or an object holding one.
func (e evolution) deleted(ms []member, raw []byte) {
	if key, ok := members(lookup(ms, "key")); ok {
		ms = key
	}
	k := wasenderKey(ms)
	ev := e.newEvent(KindStatus, raw)
	ev.ID = k.id
	ev.Type = "delete"
	ev.Status = "deleted"
	ev.From = evolutionParty(ms)
	e.status(ev, k)
}

// field reads one element of a field event; its subject is the remoteJid,
// id or jid it names.
func (e evolution) field(ms []member, raw []byte) {
	subject := ""
	for _, name := range []string{"remoteJid", "id", "jid"} {
		if subject = stringOf(lookup(ms, name)); subject != "" {
			break
		}
	}
	e.gateway.field(raw, subject, 0)
}
