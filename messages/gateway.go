package messages

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// This file holds what the parsers of WhatsApp gateways share. Gateways such
// as WASenderApi and WAHA drive a WhatsApp Web client (Baileys,
// whatsapp-web.js, whatsmeow) and pass on its view of a message: a key made of
// the chat's address (a JID), the direction (fromMe) and the id that the
// sending device chose, plus the message itself.
//
// Identities of gateway events (parts joined with Identity):
//
//	message   <provider>|message|<session>|<chat>|<dir>|<message id>[|<extra>…]
//	status    <provider>|status|<session>|<chat>|<dir>|<message id>|<status>[|<extra>…]
//	call      <provider>|call|<session>|<call id>|<call status>
//	field     <provider>|field|<session>|<event>|<subject>|<time>|<hash>
//	unknown   <provider>|unknown|<session>|<event>|<where>|<hash>
//	fallback  <provider>|<kind>|<session>|fallback|<from>|<time>|<status>|<hash>
//
// <chat> is the stable part of the chat (see stableChat): a group, broadcast
// or newsletter address as written, or "direct" for a one-to-one chat, whose
// address flips between a phone form and a @lid form. <dir> is "in" or "out"
// (fromMe). <subject> is what a field event is about when it names it (a
// group, a chat, a label), else empty. <time> is the item's own time in Unix
// seconds (0 when it has none) and <hash> the hex SHA-256 of the item (see
// contentHash). Nothing a gateway changes between two deliveries of one item
// is part of an identity: not the one-to-one chat's address, not a
// participant's or receipt user's address (both flip between a phone JID and
// a LID), not a transport request id, and neither the envelope's id nor its
// time. A field, unknown or fallback event without a time of its own is
// Transient: its identity gets the repeat window (see Window).
//
// A group member's receipt names its member only by an address that may
// arrive in either form, so the member is not part of a gateway status
// identity; the receipt's own time is (WASenderApi's readTimestamp,
// receiptTimestamp, playedTimestamp). Two members' receipts of one status
// written in the same second share an identity: a lost receipt, which
// wagate prefers to a receipt processed twice under two addresses.

// chatDirect is the chat part of the identity of a message in a one-to-one
// chat.
const chatDirect = "direct"

// stableChat returns the part of a chat address that is the same in every
// delivery of a message. A one-to-one chat is addressed by the user's phone
// JID (…@s.whatsapp.net, …@c.us) or by their LID (…@lid), and a gateway may
// send one message once in each form (WASenderApi, "Webhook: Message Upsert":
// remoteJid "can be a LID … depending on the addressing mode"), so its address
// is left out: "direct". Group (…@g.us), broadcast (…@broadcast) and
// newsletter (…@newsletter) addresses never change and are kept, lowercased.
//
// Leaving the one-to-one address out is safe because WhatsApp message ids are
// chosen at random by the sending device (16 to 32 hexadecimal digits):
// within one session and one direction, two messages share an id only by a
// collision of at least 64 random bits.
func stableChat(jid string) string {
	jid = strings.ToLower(strings.TrimSpace(jid))
	at := strings.LastIndexByte(jid, '@')
	if at < 0 {
		return chatDirect
	}
	switch jid[at+1:] {
	case "g.us", "broadcast", "newsletter":
		return jid
	}
	return chatDirect
}

// direction is the direction part of a message's identity.
func direction(fromMe bool) string {
	if fromMe {
		return "out"
	}
	return "in"
}

// jidUser returns a JID without its device part ("15550000001:12@s.whatsapp.net"
// → "15550000001@s.whatsapp.net"), lowercased: one user's address whichever
// of their devices is named.
func jidUser(jid string) string {
	jid = strings.ToLower(strings.TrimSpace(jid))
	at := strings.LastIndexByte(jid, '@')
	if at < 0 {
		return jid
	}
	user, server := jid[:at], jid[at:]
	if c := strings.IndexByte(user, ':'); c >= 0 {
		user = user[:c]
	}
	return user + server
}

// phoneOf returns the phone number of a phone JID (…@s.whatsapp.net, …@c.us),
// without device part; "" for any other address.
func phoneOf(jid string) string {
	jid = jidUser(jid)
	at := strings.LastIndexByte(jid, '@')
	if at <= 0 {
		return ""
	}
	switch jid[at+1:] {
	case "s.whatsapp.net", "c.us":
		return jid[:at]
	}
	return ""
}

// party returns who an item is from or to, as a phone number when known,
// else as the address written.
func party(addresses ...string) string {
	for _, a := range addresses {
		if p := phoneOf(a); p != "" {
			return p
		}
	}
	for _, a := range addresses {
		if a != "" {
			return a
		}
	}
	return ""
}

// unixTime reads a time written in Unix seconds or milliseconds, as a number
// or a string of digits, and returns it in seconds; 0 when absent or
// malformed. Gateways use both units (WASenderApi writes 1633456789 in one
// sample and 1747775431467 in another); a value of 10^11 or more (after the
// year 5000 in seconds) is read as milliseconds.
func unixTime(v []byte) int64 {
	n := unixSeconds(v)
	if n == 0 {
		// A fraction of a second (WAHA writes 1710481111.853) is dropped.
		if f, err := strconv.ParseFloat(string(trimSpace(v)), 64); err == nil && f >= 1 && f < 1e15 {
			n = int64(f)
		}
	}
	if n >= 1e11 {
		n /= 1000
	}
	return n
}

// boolOf reads a JSON boolean, or the strings "true" and "false"; false for
// anything else.
func boolOf(v []byte) bool {
	v = trimSpace(v)
	if string(v) == "true" {
		return true
	}
	s, ok := decodeString(v)
	return ok && s == "true"
}

// usableID reports whether a decoded id can be part of an identity: present,
// a string, not empty and without U+FFFD (which invalid UTF-8 and lone
// surrogates decode to, and which would let two ids meet).
func usableID(id string, ok bool) bool {
	return ok && id != "" && !strings.ContainsRune(id, '\uFFFD')
}

// sessionRef returns a short, fixed-length reference to a session name that
// must not be written anywhere as it is (WASenderApi's "sessionId" may be the
// session's API key): "s-" and the first 64 bits of its SHA-256 in hex.
func sessionRef(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "s-" + hex.EncodeToString(sum[:8])
}

// msgKey is what a gateway identifies a message by.
type msgKey struct {
	id     string // the id the sending device chose
	idOK   bool   // id is usable (see usableID)
	fromMe bool
	chat   string // the chat's address as written
	own    int64  // the item's own time, Unix seconds; 0 when none
}

// gateway collects the events of one gateway webhook body.
type gateway struct {
	provider   string
	session    string // the session part of identities
	account    string // Event.Account
	event      string // the gateway's event name: Context.Field
	timestamp  int64  // the envelope's time, Unix seconds; 0 when absent
	receivedAt time.Time
	metadata   []byte   // Context.Metadata; nil when none
	body       []byte   // the body, around whose items finish sets the frames
	secrets    [][]byte // values in body (sub-slices) no frame may hold: Evolution API's apikey
	events     []Event
	max        int // most events; 0: no bound
}

// gatewayEnvelope checks that body is a JSON object holding a string event,
// and returns its members and the event. A body whose event is missing, null
// or not a string but which holds the provider's data member (dataName:
// "data", "payload") is accepted too, with event "": it is the provider's
// envelope, and refusing an authenticated body loses it for good (the
// provider stops retrying it, or retries it forever). Errors wrap
// ErrNotWebhook.
func gatewayEnvelope(body []byte, dataName string) (env []member, event string, err error) {
	switch {
	case len(trimSpace(body)) == 0:
		return nil, "", notWebhook("empty body")
	case !json.Valid(body):
		return nil, "", notWebhook("body is not JSON")
	}
	env, ok := members(body)
	if !ok {
		return nil, "", notWebhook("body is not a JSON object")
	}
	raw := lookup(env, "event")
	event, ok = decodeString(raw)
	switch {
	case ok:
		return env, event, nil
	case lookup(env, dataName) != nil:
		// No event name (absent, null as a serialiser writes an unset one,
		// or of another type), but the provider's data: read it.
		return env, "", nil
	case raw == nil:
		return nil, "", notWebhook(`no "event" member`)
	default:
		return nil, "", notWebhook(`"event" is not a string`)
	}
}

// notWebhook returns an error wrapping ErrNotWebhook with reason.
func notWebhook(reason string) error { return fmt.Errorf("%w: %s", ErrNotWebhook, reason) }

// envelopeUnknowns adds an unknown event "envelope.<name>" for every member
// of env not in known, and for every earlier duplicate of one (the last one
// is read, as encoding/json does). Its work is linear in len(env).
func (g *gateway) envelopeUnknowns(env []member, known []string) {
	last := make([]int, len(known))
	for i, m := range env {
		for k, name := range known {
			if m.is(name) {
				last[k] = i + 1
			}
		}
	}
next:
	for i, m := range env {
		for k, name := range known {
			if m.is(name) && last[k] == i+1 {
				continue next
			}
		}
		g.unknown("envelope."+m.name(), m.value)
	}
}

// newEvent returns an event of kind for raw, without identity.
func (g *gateway) newEvent(kind Kind, raw []byte) Event {
	return Event{
		Provider:   g.provider,
		Kind:       kind,
		Account:    g.account,
		Timestamp:  g.timestamp,
		ReceivedAt: g.receivedAt,
		Item:       raw,
		Context:    Context{Field: g.event, Metadata: g.metadata},
	}
}

// message adds ev as a KindMessage event of key k; extra parts (a reaction's
// target and text) follow the id in its identity.
func (g *gateway) message(ev Event, k msgKey, extra ...string) {
	ev.Kind = KindMessage
	ev.Conversation = gatewayConversation(g.provider, g.session, k.chat, ev.From)
	if k.fromMe {
		ev.Direction = "outbound"
	}
	if !k.idOK {
		g.fallback(ev, k.own)
		return
	}
	parts := append([]string{g.provider, string(KindMessage), g.session, stableChat(k.chat), direction(k.fromMe), k.id}, extra...)
	ev.Identity = Identity(parts...)
	g.add(ev)
}

// reactionParts returns the identity parts that tell a Baileys message
// (WASenderApi, Evolution API) that is a reaction apart from another
// reaction with the same key: "reaction", the target's id and the emoji (""
// for a removal), as messages.reaction writes them; nil when message holds
// no reactionMessage.
func reactionParts(message []byte) []string {
	m, ok := members(message)
	if !ok {
		return nil
	}
	r, ok := members(lookup(m, "reactionMessage"))
	if !ok {
		return nil
	}
	target, _ := members(lookup(r, "key"))
	return []string{"reaction", stringOf(lookup(target, "id")), stringOf(lookup(r, "text"))}
}

// status adds ev as a KindStatus event of key k with status ev.Status; extra
// parts (the user a receipt is from) follow the status in its identity. A
// status without a value gets a fallback identity.
func (g *gateway) status(ev Event, k msgKey, extra ...string) {
	ev.Kind = KindStatus
	ev.Conversation = gatewayConversation(g.provider, g.session, k.chat, ev.From)
	if !k.idOK || ev.Status == "" {
		g.fallback(ev, k.own)
		return
	}
	parts := append([]string{g.provider, string(KindStatus), g.session, stableChat(k.chat), direction(k.fromMe), k.id, ev.Status}, extra...)
	ev.Identity = Identity(parts...)
	g.add(ev)
}

// fallback adds ev with the identity of an item whose id is unusable:
// sender, own time, status and the hash of its bytes. Without an own time
// (own 0) the event is transient.
func (g *gateway) fallback(ev Event, own int64) {
	ev.Fallback = true
	ev.Transient = own == 0
	ev.Identity = Identity(g.provider, string(ev.Kind), g.session, "fallback", ev.From,
		strconv.FormatInt(own, 10), ev.Status, contentHash(ev.Item))
	g.add(ev)
}

// field adds a KindField event of raw whose Type is the event name, about
// subject (may be empty), with its own time own in Unix seconds (0: none,
// the event is transient).
func (g *gateway) field(raw []byte, subject string, own int64) {
	ev := g.newEvent(KindField, raw)
	ev.Type = g.event
	if own > 0 {
		ev.Timestamp = own
	}
	ev.Transient = own == 0
	ev.Identity = Identity(g.provider, string(KindField), g.session, g.event, subject,
		strconv.FormatInt(own, 10), contentHash(raw))
	g.add(ev)
}

// each calls read for every element of els; an element that is not an
// object becomes an unknown event.
func (g *gateway) each(els [][]byte, read func(ms []member, raw []byte)) {
	for _, el := range els {
		ms, ok := members(el)
		if !ok {
			g.unknown(g.event, el)
			continue
		}
		read(ms, el)
	}
}

// baileysCall reads one Baileys call object (id, from, status, date as
// RFC 3339), the form both WASenderApi ("call") and Evolution API
// ("call") send.
func (g *gateway) baileysCall(ms []member, raw []byte) {
	id, ok := decodeString(lookup(ms, "id"))
	ev := g.newEvent(KindCall, raw)
	ev.Type = "call"
	ev.Status = strings.ToLower(strings.TrimSpace(stringOf(lookup(ms, "status"))))
	ev.From = party(stringOf(lookup(ms, "from")))
	var own int64
	if t, err := time.Parse(time.RFC3339, stringOf(lookup(ms, "date"))); err == nil {
		own = t.Unix()
		ev.Timestamp = own
	}
	g.call(ev, id, usableID(id, ok), own)
}

// call adds ev as a KindCall event of call id and status ev.Status; a call
// without a usable id gets the fallback identity.
func (g *gateway) call(ev Event, id string, idOK bool, own int64) {
	ev.Kind = KindCall
	ev.ID = id
	if !idOK {
		g.fallback(ev, own)
		return
	}
	ev.Identity = Identity(g.provider, string(KindCall), g.session, id, ev.Status)
	g.add(ev)
}

// unknown adds a KindUnknown event of raw, found at where. It is transient:
// an unknown item has no id or time wagate can read.
func (g *gateway) unknown(where string, raw []byte) {
	ev := g.newEvent(KindUnknown, raw)
	ev.Type = where
	ev.Transient = true
	ev.Identity = Identity(g.provider, string(KindUnknown), g.session, g.event, where, contentHash(raw))
	g.add(ev)
}

// finish returns the events of the body, the transient ones with the
// default repeat window (see Window; the ingress applies its configured one
// in its place), each with its frame: the body around its item (see
// frameGateway).
func (g *gateway) finish() []Event {
	Window(g.events, DefaultRepeatWindow)
	frameGateway(g.body, g.events)
	if len(g.secrets) > 0 {
		redactFrames(g.body, g.secrets, g.events)
	}
	return g.events
}

// redactFrames replaces, in the Before and After of every event's frame,
// each of secrets (sub-slices of body, JSON values) by "[redacted]", so that
// neither the stored event nor the body written back from it (a provider
// format forward) holds them. The item itself is not touched: secrets lie
// outside every item. Events share their Before and After, so each distinct
// part is rewritten once: the work is linear in len(body) plus the number of
// events.
func redactFrames(body []byte, secrets [][]byte, evs []Event) {
	type span struct{ off, n int }
	var at []span
	for _, s := range secrets {
		if off := offsetIn(body, s); off >= 0 {
			at = append(at, span{off, len(s)})
		}
	}
	done := map[span][]byte{}
	redact := func(part []byte, base int) []byte {
		key := span{base, len(part)}
		if out, ok := done[key]; ok {
			return out
		}
		out := part
		var b []byte
		last := 0
		for _, s := range at {
			lo, hi := s.off-base, s.off-base+s.n
			if lo < last || hi > len(part) {
				continue
			}
			b = append(append(b, part[last:lo]...), `"[redacted]"`...)
			last = hi
		}
		if b != nil {
			out = append(b, part[last:]...)
			out = out[:len(out):len(out)]
		}
		done[key] = out
		return out
	}
	for i := range evs {
		f := &evs[i].Context.Frame
		if f.Before != nil {
			f.Before = redact(f.Before, 0)
		}
		if f.After != nil {
			f.After = redact(f.After, len(body)-len(f.After))
		}
	}
}

// add sets ev's key from its identity and appends it.
func (g *gateway) add(ev Event) {
	over(g.max, len(g.events))
	ev.Key = KeyOf(ev.Identity)
	g.events = append(g.events, ev)
}

// objects returns the elements of v when it is an array, or v alone when it
// is an object; ok is false otherwise.
func objects(v []byte) (els [][]byte, ok bool) {
	if isObject(v) {
		v = trimSpace(v)
		return [][]byte{v[:len(v):len(v)]}, true
	}
	return elements(v)
}

// whole returns body as an item: without surrounding whitespace, its capacity
// cut to its length.
func whole(body []byte) []byte {
	body = trimSpace(body)
	return body[:len(body):len(body)]
}
