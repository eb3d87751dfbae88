package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
)

// Header names carried by every stream message besides Nats-Msg-Id (= Key).
const (
	HeaderProvider   = "Wagate-Provider"
	HeaderKind       = "Wagate-Kind"
	HeaderReceivedAt = "Wagate-Received-At" // RFC 3339 with nanoseconds
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
// wagate.events.<provider>.<kind>.<account>, each token reduced to
// [A-Za-z0-9_-] (other bytes become '_', an empty token is "_", and a token
// is cut at 64 bytes). Attacker-controlled text never adds a subject level or
// a wildcard.
func Subject(ev Event) string {
	return SubjectPrefix + "." + Token(ev.Provider) + "." + Token(string(ev.Kind)) + "." + Token(ev.Account)
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
// The item comes before Context in the document, and no string field can hold
// the placeholder it replaces, since Encode escapes every quote in them.
func (ev Event) Encode() ([]byte, error) {
	if ev.Item != nil && !json.Valid(ev.Item) {
		return nil, errors.New("messages: event item is not valid JSON")
	}
	type plain Event // no methods: no recursion
	p := plain(ev)
	item := p.Item
	p.Item = nil
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return nil, fmt.Errorf("messages: encode event: %w", err)
	}
	out := bytes.TrimRight(buf.Bytes(), "\n")
	// Replace the placeholder "item":null with the raw bytes.
	const placeholder = `"item":null`
	i := bytes.Index(out, []byte(placeholder))
	if i < 0 {
		return nil, errors.New("messages: encode event: no item field")
	}
	if item == nil {
		item = json.RawMessage("null")
	}
	res := make([]byte, 0, len(out)+len(item))
	res = append(res, out[:i]...)
	res = append(res, `"item":`...)
	res = append(res, item...)
	res = append(res, out[i+len(placeholder):]...)
	return res, nil
}

// Decode parses an event as Encode wrote it. It returns an error when data is
// not an event: not JSON, or without a key.
func Decode(data []byte) (Event, error) {
	var ev Event
	if err := json.Unmarshal(data, &ev); err != nil {
		return Event{}, fmt.Errorf("messages: decode event: %w", err)
	}
	if ev.Key == "" || !strings.HasPrefix(ev.Key, KeyPrefix) {
		return Event{}, errors.New("messages: decode event: no key")
	}
	return ev, nil
}
