package messages

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
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

// contentHash is the hex SHA-256 of raw after json.Compact and with every
// string written in one form (see canonicalStrings): insignificant whitespace
// and the choice of escape (\u00e9 or é, \/ or /, \u000a or \n) do not
// change it, any other byte does.
func contentHash(raw []byte) string {
	var buf bytes.Buffer
	buf.Grow(len(raw))
	data := raw
	if err := json.Compact(&buf, raw); err == nil {
		data = canonicalStrings(buf.Bytes())
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// canonicalStrings rewrites every string literal of the compact JSON b that
// holds an escape in one form: an escaped character is written as itself in
// UTF-8, except '"' and '\\' (\" and \\), the control characters (\b, \f,
// \n, \r, \t, else \u00xx) and lone surrogates (\udxxx), in lower-case hex.
// Bytes that are not escaped, invalid UTF-8 too, are kept as they are, so
// two different strings never meet. b is returned as it is when it holds no
// escape. The work is linear in len(b).
func canonicalStrings(b []byte) []byte {
	if bytes.IndexByte(b, '\\') < 0 {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' || i+1 >= len(b) {
			out = append(out, c)
			continue
		}
		i++
		switch e := b[i]; e {
		case '/':
			out = append(out, '/')
		case 'u':
			r, n := escapedRune(b[i-1:])
			i += n - 2
			out = appendCanonicalRune(out, r)
		default: // " \\ b f n r t
			out = append(out, '\\', e)
		}
	}
	return out
}

// escapedRune reads the \uXXXX escape at the start of b, joined with a
// following \uXXXX low surrogate when it is a high surrogate. It returns the
// code point (a lone surrogate as itself) and the bytes read. b comes from
// json.Compact, so its escape is well formed.
func escapedRune(b []byte) (rune, int) {
	hex4 := func(p []byte) (rune, bool) {
		if len(p) < 6 || p[0] != '\\' || p[1] != 'u' {
			return 0, false
		}
		n, err := strconv.ParseUint(string(p[2:6]), 16, 32)
		return rune(n), err == nil
	}
	r, ok := hex4(b)
	if !ok {
		return utf8.RuneError, 2
	}
	if utf16.IsSurrogate(r) && r < 0xdc00 {
		if lo, ok := hex4(b[6:]); ok && lo >= 0xdc00 && lo <= 0xdfff {
			return utf16.DecodeRune(r, lo), 12
		}
	}
	return r, 6
}

// appendCanonicalRune appends r, read from an escape, in its one written form.
func appendCanonicalRune(out []byte, r rune) []byte {
	switch {
	case r == '"' || r == '\\':
		return append(out, '\\', byte(r))
	case r == '\b':
		return append(out, '\\', 'b')
	case r == '\f':
		return append(out, '\\', 'f')
	case r == '\n':
		return append(out, '\\', 'n')
	case r == '\r':
		return append(out, '\\', 'r')
	case r == '\t':
		return append(out, '\\', 't')
	case r < 0x20 || utf16.IsSurrogate(r):
		return append(out, fmt.Sprintf("\\u%04x", r)...)
	}
	return utf8.AppendRune(out, r)
}
