package messages

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
)

// Header names carried by every stream message besides Nats-Msg-Id (= Key).
const (
	HeaderProvider   = "Wagate-Provider"
	HeaderKind       = "Wagate-Kind"
	HeaderReceivedAt = "Wagate-Received-At" // RFC 3339 with nanoseconds
	// HeaderConversation carries ConversationToken of an event that belongs
	// to a conversation (absent otherwise): what the workers keep order by.
	HeaderConversation = "Wagate-Conversation"
)

// HeaderCarrier adapts a stream message's NATS header to OpenTelemetry's
// TextMapCarrier (Get, Set, Keys), so that the W3C trace context
// (traceparent, tracestate) travels with each event from the ingress to the
// handler. NATS header names are case-sensitive: names are kept exactly as
// the propagator writes them.
type HeaderCarrier nats.Header

// Get returns the first value of key.
func (h HeaderCarrier) Get(key string) string { return nats.Header(h).Get(key) }

// Set sets key to value.
func (h HeaderCarrier) Set(key, value string) { nats.Header(h).Set(key, value) }

// Keys returns the header names.
func (h HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}

// SubjectPrefix starts every event subject.
const SubjectPrefix = "wagate.events"

// maxToken bounds one subject token; a longer account is cut and marked.
const maxToken = 64

// Subject returns the stream subject of ev:
// wagate.events.<provider>.<kind>.<account>.<slot>, where <slot> is Slot(ev)
// in decimal, each other token reduced to [A-Za-z0-9_-] (other bytes become
// '_', an empty token is "_", and a token is cut at 64 bytes).
// Attacker-controlled text never adds a subject level or a wildcard. The
// conversation travels in HeaderConversation, not in the subject, so that
// the stream's subjects stay few (providers × kinds × accounts × Slots),
// whatever the number of conversations.
func Subject(ev Event) string {
	subject, _ := Route(ev)
	return subject
}

// Route returns Subject(ev) and ConversationToken(ev), hashing once.
func Route(ev Event) (subject, conversation string) {
	token, slot := conversationSlot(ev)
	return SubjectPrefix + "." + Token(ev.Provider) + "." + Token(string(ev.Kind)) + "." + Token(ev.Account) + "." +
		strconv.Itoa(slot), token
}

// Token reduces s to one safe NATS subject token.
func Token(s string) string {
	if s == "" {
		return "_"
	}
	if len(s) > maxToken {
		s = s[:maxToken]
	}
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			b[i] = '_'
		}
	}
	return string(b)
}

// Encode returns ev's JSON with Item written exactly as received: no
// re-escaping, no compaction, so that a consumer can check it byte for byte.
// (json.Marshal of an Event gives the same document with Item compacted.)
// The other fields are written as encoding/json writes them, with HTML
// characters unescaped, and Context's raw members compacted. It returns an
// error when Item or a raw member of Context is not valid JSON, or ReceivedAt
// has no RFC 3339 form (a year outside 0–9999).
//
// The document is appended field by field into one buffer sized up front:
// Encode runs once per event on the ingress's hot path.
func (ev Event) Encode() ([]byte, error) {
	if ev.Item != nil && !json.Valid(ev.Item) {
		return nil, errors.New("messages: event item is not valid JSON")
	}
	c := &ev.Context
	b := make([]byte, 0, 320+len(ev.Identity)+len(ev.Conversation)+len(ev.Item)+len(c.Metadata)+len(c.Contact))
	b = appendField(b, `{"key":`, ev.Key)
	b = appendField(b, `,"identity":`, ev.Identity)
	b = appendField(b, `,"provider":`, ev.Provider)
	b = appendField(b, `,"kind":`, string(ev.Kind))
	b = appendField(b, `,"account":`, ev.Account)
	b = appendField(b, `,"id":`, ev.ID)
	if ev.Type != "" {
		b = appendField(b, `,"type":`, ev.Type)
	}
	if ev.Status != "" {
		b = appendField(b, `,"status":`, ev.Status)
	}
	b = appendField(b, `,"from":`, ev.From)
	if ev.Conversation != "" {
		b = appendField(b, `,"conversation":`, ev.Conversation)
	}
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, ev.Timestamp, 10)
	b = append(b, `,"received_at":"`...)
	b, err := ev.ReceivedAt.AppendText(b)
	if err != nil {
		return nil, fmt.Errorf("messages: encode event: received_at: %w", err)
	}
	b = append(b, '"')
	if ev.Fallback {
		b = append(b, `,"fallback":true`...)
	}
	if ev.Transient {
		b = append(b, `,"transient":true`...)
	}
	if ev.Direction != "" {
		b = appendField(b, `,"direction":`, ev.Direction)
	}
	if len(ev.Errors) > 0 {
		b = append(b, `,"errors":[`...)
		for i, e := range ev.Errors {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"code":`...)
			b = strconv.AppendInt(b, int64(e.Code), 10)
			b = appendOptional(b, `,"title":`, e.Title)
			b = appendOptional(b, `,"message":`, e.Message)
			b = appendOptional(b, `,"details":`, e.Details)
			b = appendOptional(b, `,"href":`, e.Href)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"item":`...)
	if ev.Item == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, ev.Item...)
	}
	b = append(b, `,"context":{`...)
	sep := ""
	if c.Object != "" {
		b = appendField(b, `"object":`, c.Object)
		sep = ","
	}
	if c.EntryID != "" {
		b = appendField(append(b, sep...), `"entry_id":`, c.EntryID)
		sep = ","
	}
	if c.EntryTime != 0 {
		b = append(append(b, sep...), `"entry_time":`...)
		b = strconv.AppendInt(b, c.EntryTime, 10)
		sep = ","
	}
	if c.Field != "" {
		b = appendField(append(b, sep...), `"field":`, c.Field)
		sep = ","
	}
	if len(c.Metadata) > 0 {
		if b, err = appendCompact(append(append(b, sep...), `"metadata":`...), c.Metadata); err != nil {
			return nil, fmt.Errorf("messages: encode event: context metadata: %w", err)
		}
		sep = ","
	}
	if len(c.Contact) > 0 {
		if b, err = appendCompact(append(append(b, sep...), `"contact":`...), c.Contact); err != nil {
			return nil, fmt.Errorf("messages: encode event: context contact: %w", err)
		}
		sep = ","
	}
	if !c.Frame.isZero() {
		if b, err = c.Frame.appendJSON(append(append(b, sep...), `"frame":`...)); err != nil {
			return nil, fmt.Errorf("messages: encode event: context frame %w", err)
		}
	}
	b = append(b, "}}"...)
	return b, nil
}

// Fixed parts of Encode's output, in bytes, rounded up: every member name,
// separator and quote an event can have (with its frame's), the digits of
// its times and the RFC 3339 received_at; and those of one element of
// "errors".
const (
	encodedFixed = 512
	encodedError = 96
)

// EncodedSize returns an upper bound on len(ev.Encode()): exact but for the
// insignificant spaces Encode removes from the raw members of Context, and
// for the fixed parts (member names, numbers), counted at their longest.
// Its work is linear in the length of ev's strings, and independent of the
// length of its raw members; it allocates nothing. It lets a caller bound
// the bytes a body's events make before encoding any of them (events of one
// body share its metadata, contact and frame: the sum of their sizes is not
// bounded by the body's).
func (ev *Event) EncodedSize() int64 {
	c := &ev.Context
	n := int64(encodedFixed + len(ev.Item) + len(c.Metadata) + len(c.Contact))
	for _, s := range [...]string{ev.Key, ev.Identity, ev.Provider, string(ev.Kind), ev.Account, ev.ID, ev.Type,
		ev.Status, ev.From, ev.Conversation, ev.Direction, c.Object, c.EntryID, c.Field} {
		n += stringSize(s)
	}
	for _, e := range ev.Errors {
		n += encodedError + stringSize(e.Title) + stringSize(e.Message) + stringSize(e.Details) + stringSize(e.Href)
	}
	f := &c.Frame
	n += int64(len(f.Object) + len(f.EntryID) + len(f.EntryTime) + len(f.Field) + len(f.MessagingProduct) + len(f.Array))
	n += int64(base64.StdEncoding.EncodedLen(len(f.Before)) + base64.StdEncoding.EncodedLen(len(f.After)))
	return n
}

// stringSize returns the length of appendString's output for s, quotes
// included.
func stringSize(s string) int64 {
	n := int64(2 + len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c >= 0x20 && c != '"' && c != '\\':
			case c == '"', c == '\\', c == '\b', c == '\f', c == '\n', c == '\r', c == '\t':
				n++ // a backslash before one letter
			default:
				n += 5 // \u00XX for one byte
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			n += 5 // \ufffd for one byte
		case r == '\u2028' || r == '\u2029':
			n += 3 // \u202X for three bytes
		}
		i += size
	}
	return n
}

// appendField appends name (the member's separator, name and colon) and s
// as a JSON string.
func appendField(b []byte, name, s string) []byte {
	return appendString(append(b, name...), s)
}

// appendOptional appends name and s as appendField does, unless s is empty.
func appendOptional(b []byte, name, s string) []byte {
	if s == "" {
		return b
	}
	return appendField(b, name, s)
}

// isZero reports whether f is its zero value, which Encode leaves out (the
// omitzero of Context.Frame): every slice nil, every flag false.
func (f *Frame) isZero() bool {
	return f.Object == nil && f.EntryID == nil && f.EntryTime == nil && f.Field == nil &&
		f.MessagingProduct == nil && f.Array == nil && !f.Body && f.Before == nil && f.After == nil && !f.Covered
}

// appendJSON appends f as encoding/json writes it: raw members compacted,
// Before and After in standard base64, empty members left out.
func (f *Frame) appendJSON(b []byte) ([]byte, error) {
	b = append(b, '{')
	first := len(b)
	var err error
	for _, raw := range [...]struct {
		name string
		v    json.RawMessage
	}{
		{`"object":`, f.Object}, {`"entry_id":`, f.EntryID}, {`"entry_time":`, f.EntryTime},
		{`"field":`, f.Field}, {`"messaging_product":`, f.MessagingProduct}, {`"array":`, f.Array},
	} {
		if len(raw.v) == 0 {
			continue
		}
		b = comma(b, first)
		if b, err = appendCompact(append(b, raw.name...), raw.v); err != nil {
			return b, fmt.Errorf("%s %w", raw.name, err)
		}
	}
	if f.Body {
		b = append(comma(b, first), `"body":true`...)
	}
	for _, bytes := range [...]struct {
		name string
		v    []byte
	}{{`"before":"`, f.Before}, {`"after":"`, f.After}} {
		if len(bytes.v) == 0 {
			continue
		}
		b = base64.StdEncoding.AppendEncode(append(comma(b, first), bytes.name...), bytes.v)
		b = append(b, '"')
	}
	if f.Covered {
		b = append(comma(b, first), `"covered":true`...)
	}
	return append(b, '}'), nil
}

// comma appends a comma unless b ends at first, where an object's members
// start.
func comma(b []byte, first int) []byte {
	if len(b) > first {
		return append(b, ',')
	}
	return b
}

// appendCompact appends the valid JSON raw with the insignificant spaces
// removed, as encoding/json writes a json.RawMessage. Raw JSON without any
// space byte (as providers send it) is only checked, then copied.
func appendCompact(b []byte, raw []byte) ([]byte, error) {
	if !hasSpace(raw) {
		if !json.Valid(raw) {
			return b, errors.New("is not valid JSON")
		}
		return append(b, raw...), nil
	}
	buf := bytes.NewBuffer(b)
	if err := json.Compact(buf, raw); err != nil {
		return b, err
	}
	return buf.Bytes(), nil
}

// hasSpace reports whether raw holds a JSON space byte anywhere.
func hasSpace(raw []byte) bool {
	for _, c := range raw {
		if c <= ' ' && isSpace(c) {
			return true
		}
	}
	return false
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as encoding/json escapes
// it with HTML escaping off: quote, backslash and control characters,
// U+2028 and U+2029; each byte of invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Decode parses an event as Encode wrote it. It returns an error when data is
// not an event: not JSON, or without a key.
//
// It reads the members Encode writes directly from the bytes (one check of
// the JSON, no reflection), and hands anything else (a member Encode never
// writes, a null, a name written twice) to encoding/json, whose result it
// gives: the fast path only ever returns what json.Unmarshal would.
func Decode(data []byte) (Event, error) {
	ev, ok := decodeEncoded(data)
	if !ok {
		ev = Event{}
		if err := json.Unmarshal(data, &ev); err != nil {
			return Event{}, fmt.Errorf("messages: decode event: %w", err)
		}
	}
	if ev.Key == "" || !strings.HasPrefix(ev.Key, KeyPrefix) {
		return Event{}, errors.New("messages: decode event: no key")
	}
	return ev, nil
}

// Member bits of decodeEncoded, to find a name written twice.
const (
	mKey = 1 << iota
	mIdentity
	mProvider
	mKind
	mAccount
	mID
	mType
	mStatus
	mFrom
	mTimestamp
	mReceivedAt
	mFallback
	mTransient
	mDirection
	mErrors
	mItem
	mContext
	mObject
	mEntryID
	mEntryTime
	mField
	mMetadata
	mContact
	mFrame
	mFrameObject
	mFrameEntryID
	mFrameEntryTime
	mFrameField
	mFrameMessagingProduct
	mFrameArray
	mFrameBody
	mFrameBefore
	mFrameAfter
	mFrameCovered
	mConversation
)

// decodeEncoded reads an event in the form Encode writes. ok is false when
// data is not valid JSON or holds anything that form does not (see Decode).
// The event shares no bytes with data: its strings are parts of one copy of
// data, its raw members parts of another (each cut to its length, so that
// appending to one never writes into the next).
func decodeEncoded(data []byte) (ev Event, ok bool) {
	if !json.Valid(data) {
		return ev, false
	}
	d := &decoder{data: data}
	seen := 0
	ok = eachMember(data, func(name []byte, m member) (ok bool) {
		var bit int
		switch string(name) {
		case "key":
			bit, ok = mKey, d.str(&ev.Key, m.value)
		case "identity":
			bit, ok = mIdentity, d.str(&ev.Identity, m.value)
		case "provider":
			bit, ok = mProvider, d.str(&ev.Provider, m.value)
		case "kind":
			bit, ok = mKind, d.str((*string)(&ev.Kind), m.value)
		case "account":
			bit, ok = mAccount, d.str(&ev.Account, m.value)
		case "id":
			bit, ok = mID, d.str(&ev.ID, m.value)
		case "type":
			bit, ok = mType, d.str(&ev.Type, m.value)
		case "status":
			bit, ok = mStatus, d.str(&ev.Status, m.value)
		case "from":
			bit, ok = mFrom, d.str(&ev.From, m.value)
		case "conversation":
			bit, ok = mConversation, d.str(&ev.Conversation, m.value)
		case "direction":
			bit, ok = mDirection, d.str(&ev.Direction, m.value)
		case "timestamp":
			bit, ok = mTimestamp, decodeInt(&ev.Timestamp, m.value)
		case "received_at":
			bit, ok = mReceivedAt, m.value[0] == '"' && ev.ReceivedAt.UnmarshalJSON(m.value) == nil
		case "fallback":
			bit, ok = mFallback, decodeBool(&ev.Fallback, m.value)
		case "transient":
			bit, ok = mTransient, decodeBool(&ev.Transient, m.value)
		case "errors":
			bit, ok = mErrors, m.value[0] == '[' && json.Unmarshal(m.value, &ev.Errors) == nil
		case "item":
			bit, ok = mItem, d.raw(&ev.Item, m.value)
		case "context":
			bit, ok = mContext, d.context(&ev.Context, m.value, &seen)
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	})
	return ev, ok
}

// context reads the context member of an event as Encode writes it.
func (d *decoder) context(c *Context, v []byte, seen *int) bool {
	if v[0] != '{' {
		return false
	}
	return eachMember(v, func(name []byte, m member) (ok bool) {
		var bit int
		switch string(name) {
		case "object":
			bit, ok = mObject, d.str(&c.Object, m.value)
		case "entry_id":
			bit, ok = mEntryID, d.str(&c.EntryID, m.value)
		case "entry_time":
			bit, ok = mEntryTime, decodeInt(&c.EntryTime, m.value)
		case "field":
			bit, ok = mField, d.str(&c.Field, m.value)
		case "metadata":
			bit, ok = mMetadata, d.raw(&c.Metadata, m.value)
		case "contact":
			bit, ok = mContact, d.raw(&c.Contact, m.value)
		case "frame":
			bit, ok = mFrame, d.frame(&c.Frame, m.value, seen)
		}
		if !ok || *seen&bit != 0 {
			return false
		}
		*seen |= bit
		return true
	})
}

// frame reads the frame member of an event's context as Encode
// writes it.
func (d *decoder) frame(f *Frame, v []byte, seen *int) bool {
	if v[0] != '{' {
		return false
	}
	return eachMember(v, func(name []byte, m member) (ok bool) {
		var bit int
		switch string(name) {
		case "object":
			bit, ok = mFrameObject, d.raw(&f.Object, m.value)
		case "entry_id":
			bit, ok = mFrameEntryID, d.raw(&f.EntryID, m.value)
		case "entry_time":
			bit, ok = mFrameEntryTime, d.raw(&f.EntryTime, m.value)
		case "field":
			bit, ok = mFrameField, d.raw(&f.Field, m.value)
		case "messaging_product":
			bit, ok = mFrameMessagingProduct, d.raw(&f.MessagingProduct, m.value)
		case "array":
			bit, ok = mFrameArray, d.raw(&f.Array, m.value)
		case "body":
			bit, ok = mFrameBody, decodeBool(&f.Body, m.value)
		case "before":
			bit, ok = mFrameBefore, decodeBase64(&f.Before, m.value)
		case "after":
			bit, ok = mFrameAfter, decodeBase64(&f.After, m.value)
		case "covered":
			bit, ok = mFrameCovered, decodeBool(&f.Covered, m.value)
		}
		if !ok || *seen&bit != 0 {
			return false
		}
		*seen |= bit
		return true
	})
}

// decodeBase64 sets *b to the bytes of the JSON string v in standard
// base64, as encoding/json fills a []byte; false for anything else.
func decodeBase64(b *[]byte, v []byte) bool {
	if v[0] != '"' {
		return false
	}
	s, ok := decodeString(v)
	if !ok {
		return false
	}
	out, err := base64.StdEncoding.AppendDecode([]byte{}, []byte(s))
	*b = out
	return err == nil
}

// eachMember calls f with each member of the JSON object b (valid JSON) and
// its name, in document order (each a sub-slice of b, with the capacity of
// b's rest), and reports whether b is an object whose
// every name is plain (see member) and f returned true for each member. It
// stops at the first false.
func eachMember(b []byte, f func(name []byte, m member) bool) bool {
	b = trimSpace(b)
	if len(b) < 2 || b[0] != '{' {
		return false
	}
	i := skipSpace(b, 1)
	if b[i] == '}' {
		return true
	}
	for {
		ke := stringEnd(b, i)
		if ke < 0 || b[i] != '"' {
			return false
		}
		m := member{rawName: b[i:ke]}
		if !plainString(m.rawName) {
			return false
		}
		i = skipSpace(b, skipSpace(b, ke)+1) // past the colon
		ve := valueEnd(b, i)
		if ve < 0 {
			return false
		}
		m.value = b[i:ve] // not cut: decoder.offset reads its place from its capacity
		if !f(m.rawName[1:len(m.rawName)-1], m) {
			return false
		}
		i = skipSpace(b, ve)
		if i >= len(b) || b[i] != ',' {
			return i == len(b)-1 && b[i] == '}'
		}
		i = skipSpace(b, i+1)
	}
}

// decoder holds the payload decodeEncoded reads and the two copies of it
// that the event's strings and raw members are parts of, each made on first
// use: an event holds a few allocations instead of one per member.
type decoder struct {
	data  []byte
	text  string // string(data)
	bytes []byte // a copy of data
}

// offset returns where v, a sub-slice of d.data whose capacity runs to the
// end of d.data, starts in it.
func (d *decoder) offset(v []byte) int { return cap(d.data) - cap(v) }

// str sets *s to the JSON string v; false when v is not a string.
func (d *decoder) str(s *string, v []byte) bool {
	if v[0] != '"' {
		return false
	}
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') >= 0 || !utf8.Valid(inner) {
		var ok bool
		*s, ok = decodeString(v)
		return ok
	}
	if d.text == "" {
		d.text = string(d.data)
	}
	off := d.offset(inner)
	*s = d.text[off : off+len(inner)]
	return true
}

// decodeInt sets *n to the JSON integer v, as encoding/json reads it into
// an int64; false for anything else (a fraction, an exponent, a string).
func decodeInt(n *int64, v []byte) bool {
	if v[0] != '-' && (v[0] < '0' || v[0] > '9') {
		return false
	}
	i, err := strconv.ParseInt(string(v), 10, 64)
	*n = i
	return err == nil
}

// decodeBool sets *b to the JSON boolean v; false for anything else.
func decodeBool(b *bool, v []byte) bool {
	switch string(v) {
	case "true":
		*b = true
	case "false":
		*b = false
	default:
		return false
	}
	return true
}

// raw sets *r to a copy of the JSON value v, as encoding/json fills a
// json.RawMessage; false for null, which it leaves to encoding/json.
func (d *decoder) raw(r *json.RawMessage, v []byte) bool {
	if v[0] == 'n' {
		return false
	}
	if d.bytes == nil {
		d.bytes = bytes.Clone(d.data)
	}
	off := d.offset(v)
	*r = json.RawMessage(d.bytes[off : off+len(v) : off+len(v)])
	return true
}

// MaxEventSize is an upper bound, in bytes, on the length of Encode's
// output for any event parsed from a body of at most bodyLimit bytes: 5 ×
// bodyLimit + 64 KiB (0 for a bodyLimit ≤ 0). A NATS server storing the
// events of such bodies needs a max_payload of at least this much, or an
// accepted webhook is answered 503 on every retry.
//
// The worst case is an event whose item is a part I of the body and whose
// frame holds the rest R = bodyLimit − I in base64 (4/3 R). Besides the
// item, written as received, an event carries strings decoded from the body
// and written again: its ID, From, Type and Status (from the item), its
// Account and Context.Field (from the rest); a byte of invalid UTF-8 decodes
// to U+FFFD, three bytes, so each copy is at most three times its source,
// and the raw metadata and contact (from the rest) once. So an event is at
// most I + 3I + 4/3 R + 3R ≤ 13/3 × bodyLimit bytes of body-derived data;
// the 5 × gives margin, and the 64 KiB cover the fixed fields, the key and
// the identity (whose long parts are hashed, see MaxIdentityPart).
func MaxEventSize(bodyLimit int64) int64 {
	if bodyLimit <= 0 {
		return 0
	}
	return 5*bodyLimit + 64<<10
}
