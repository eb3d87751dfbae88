package messages

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
)

// placedIdentity is the identity of an item without an id of its own (a
// field change, a value-level error, an unknown item): its kind, the fields
// that place it (field, entry id, entry time, account), where for unknown
// items, and the hash of its bytes.
//
//	cloud|<kind>|<field>|<entry id>|<entry time>|<account>|<hash>
//	cloud|unknown|<field>|<entry id>|<entry time>|<account>|<where>|<hash>
func placedIdentity(ev *Event, where string) string {
	c := &ev.Context
	parts := []string{ProviderCloud, string(ev.Kind), c.Field, c.EntryID,
		strconv.FormatInt(c.EntryTime, 10), ev.Account}
	if ev.Kind == KindUnknown {
		parts = append(parts, where)
	}
	return Identity(append(parts, contentHash(ev.Item))...)
}

// fallbackIdentity is the identity of a message, status or call whose
// provider id is unusable: sender, timestamp, status and the hash of its
// bytes.
//
//	cloud|<kind>|<account>|<field>|fallback|<from>|<timestamp>|<status>|<hash>
func fallbackIdentity(ev *Event) string {
	return Identity(ProviderCloud, string(ev.Kind), ev.Account, ev.Context.Field, "fallback", ev.From,
		strconv.FormatInt(ev.Timestamp, 10), ev.Status, contentHash(ev.Item))
}

// contentHash is the hex SHA-256 of raw after json.Compact: insignificant
// whitespace does not change it, any other byte does.
func contentHash(raw []byte) string {
	var buf bytes.Buffer
	buf.Grow(len(raw))
	data := raw
	if err := json.Compact(&buf, raw); err == nil {
		data = buf.Bytes()
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
