package messages

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"
)

// This file reads JSON that json.Valid has accepted, without copying: objects
// and arrays are split into sub-slices of the input, so an item keeps its
// exact bytes (escapes such as \/ and \ud83d stay as they were). Member names
// match exactly (encoding/json would also accept "ID" for "id"). Every
// function stays in bounds on any input: fed invalid JSON it reports failure,
// it never panics.

// member is one name/value pair of a JSON object, in document order.
type member struct {
	rawName []byte // the name's literal, quotes included
	plain   bool   // rawName holds no escape and no non-ASCII byte
	value   []byte
}

// is reports whether the member's name is name, without allocating when the
// name is written plainly.
func (m member) is(name string) bool {
	if m.plain {
		return string(m.rawName[1:len(m.rawName)-1]) == name
	}
	return m.name() == name
}

// name returns the member's name, decoded.
func (m member) name() string {
	s, _ := decodeString(m.rawName)
	return s
}

// plainString reports whether a string literal, quotes included, holds
// neither an escape nor a byte outside ASCII: its text is its bytes.
func plainString(raw []byte) bool {
	for _, c := range raw[1 : len(raw)-1] {
		if c == '\\' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

func trimSpace(b []byte) []byte {
	i, j := 0, len(b)
	for i < j && isSpace(b[i]) {
		i++
	}
	for j > i && isSpace(b[j-1]) {
		j--
	}
	return b[i:j]
}

// stringEnd returns the index just past the JSON string starting at b[i]
// (which must be '"'), or -1.
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '"':
			return j + 1
		case '\\':
			j++ // skip the escaped byte
		}
	}
	return -1
}

// structural marks the bytes that matter when skipping over a container.
var structural = [256]bool{'"': true, '{': true, '[': true, '}': true, ']': true}

// valueEnd returns the index just past the JSON value starting at b[i], or -1.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			if !structural[b[j]] {
				continue
			}
			switch b[j] {
			case '"':
				e := stringEnd(b, j)
				if e < 0 {
					return -1
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	case ',', ':', '}', ']':
		return -1
	default: // number, true, false, null
		j := i
		for j < len(b) && !isSpace(b[j]) && b[j] != ',' && b[j] != '}' && b[j] != ']' {
			j++
		}
		return j
	}
}

// members splits a JSON object into its members, in document order, each
// value a sub-slice of b with its capacity cut to its length (appending to it
// never writes into b). ok is false when b is not an object.
func members(b []byte) (ms []member, ok bool) {
	b = trimSpace(b)
	if len(b) < 2 || b[0] != '{' {
		return nil, false
	}
	i := skipSpace(b, 1)
	if i < len(b) && b[i] == '}' {
		return nil, i == len(b)-1
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return nil, false
		}
		ke := stringEnd(b, i)
		if ke < 0 {
			return nil, false
		}
		name := b[i:ke:ke]
		i = skipSpace(b, ke)
		if i >= len(b) || b[i] != ':' {
			return nil, false
		}
		i = skipSpace(b, i+1)
		ve := valueEnd(b, i)
		if ve < 0 {
			return nil, false
		}
		if ms == nil {
			ms = make([]member, 0, 4) // most objects of a webhook hold few members
		}
		ms = append(ms, member{rawName: name, plain: plainString(name), value: b[i:ve:ve]})
		i = skipSpace(b, ve)
		if i >= len(b) {
			return nil, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return ms, i == len(b)-1
		default:
			return nil, false
		}
	}
}

// elements splits a JSON array into its elements, each a sub-slice of b with
// its capacity cut to its length. ok is false when b is not an array.
func elements(b []byte) (els [][]byte, ok bool) {
	b = trimSpace(b)
	if len(b) < 2 || b[0] != '[' {
		return nil, false
	}
	i := skipSpace(b, 1)
	if i < len(b) && b[i] == ']' {
		return nil, i == len(b)-1
	}
	for {
		ve := valueEnd(b, i)
		if ve < 0 {
			return nil, false
		}
		els = append(els, b[i:ve:ve])
		i = skipSpace(b, ve)
		if i >= len(b) {
			return nil, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case ']':
			return els, i == len(b)-1
		default:
			return nil, false
		}
	}
}

// lookup returns the value of the last member named name (the one
// encoding/json would keep), or nil.
func lookup(ms []member, name string) []byte {
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].is(name) {
			return ms[i].value
		}
	}
	return nil
}

// isObject reports whether v is a JSON object (by its first byte).
func isObject(v []byte) bool {
	v = trimSpace(v)
	return len(v) > 0 && v[0] == '{'
}

// decodeString decodes a JSON string literal, quotes included. ok is false
// when raw is not a string. Like encoding/json, it turns invalid UTF-8 and
// lone surrogates into U+FFFD.
func decodeString(raw []byte) (s string, ok bool) {
	raw = trimSpace(raw)
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner), true
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// stringOf returns v as a string when it is a JSON string, else "".
func stringOf(v []byte) string {
	s, _ := decodeString(v)
	return s
}

// idOf returns v as an id: a JSON string as decoded, a JSON number as
// written; "" for anything else.
func idOf(v []byte) string {
	v = trimSpace(v)
	if len(v) == 0 {
		return ""
	}
	if v[0] == '"' {
		return stringOf(v)
	}
	if v[0] == '-' || (v[0] >= '0' && v[0] <= '9') {
		return string(v)
	}
	return ""
}

// intOf reads an integer written as a JSON number (an integral float such as
// 1.31e5 too) or as a string of decimal digits. ok is false otherwise.
func intOf(v []byte) (n int64, ok bool) {
	v = trimSpace(v)
	if len(v) == 0 {
		return 0, false
	}
	text := string(v)
	if v[0] == '"' {
		s, ok := decodeString(v)
		if !ok {
			return 0, false
		}
		text = s
	}
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		return n, true
	}
	if v[0] == '"' {
		return 0, false
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, false
	}
	return int64(f), true
}

// unixSeconds reads a Unix time in seconds, written as a string of digits (as
// Meta sends it) or as a number; 0 when absent, malformed or negative.
func unixSeconds(v []byte) int64 {
	n, ok := intOf(v)
	if !ok || n < 0 {
		return 0
	}
	return n
}
