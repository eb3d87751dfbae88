package dedupe

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Layout of the KV backend (see KV): names and values.

// kvName maps key to its KV name, or returns ErrInvalidKey for "". A KV name
// allows only [-/_=.a-zA-Z0-9] with no empty dot-separated token; the mapping
// keeps letters, digits, '-' and '_', writes ':' as '.' where it separates
// two non-empty tokens, and every other byte (and a ':' that does not) as '='
// and two upper-case hex digits. Reading '.' back as ':' and "=XX" as its
// byte gives the key again, so two keys never share a name.
func kvName(key string) (string, error) {
	if key == "" {
		return "", fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(key) + 8)
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		case c == ':' && i > 0 && i < len(key)-1 && key[i-1] != ':' && key[i+1] != ':':
			b.WriteByte('.')
		default:
			b.WriteByte('=')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0x0f])
		}
	}
	return b.String(), nil
}

// kvPendingValue is the value a claim writes: p:<owner>:<unix ms>.
func kvPendingValue(owner string, now time.Time) string {
	return "p:" + owner + ":" + strconv.FormatInt(now.UnixMilli(), 10)
}

// kvIsPending reports whether v is a pending value.
func kvIsPending(v string) bool { return strings.HasPrefix(v, "p:") }

// kvStateValue is the value of state s (Accepted or Done) with fencing
// number fence: "a<fence>" or "d<fence>".
func kvStateValue(s State, fence int64) string {
	mark := "a"
	if s == Done {
		mark = "d"
	}
	return mark + strconv.FormatInt(fence, 10)
}

// parseKVValue reads a state value: its state and fencing number.
func parseKVValue(v string) (State, int64, error) {
	if kvIsPending(v) {
		return Pending, 0, nil
	}
	if v == "" {
		return Absent, 0, fmt.Errorf("empty state value")
	}
	return parseLetterState(v)
}

// kvLockValue is a lock's value: "<token>:<expiry unix ms>".
func kvLockValue(token string, expiry time.Time) string {
	return token + ":" + strconv.FormatInt(expiry.UnixMilli(), 10)
}

// parseKVLock reads a lock value; ok is false when v is not one.
func parseKVLock(v string) (token string, expiry int64, ok bool) {
	i := strings.LastIndexByte(v, ':')
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.ParseInt(v[i+1:], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return v[:i], n, true
}

// kvServerTTL is the per-key TTL the server gets for a lock of ttl: whole
// seconds (the server's unit), rounded up so that the server never removes a
// lock before its holder's time is up, and at least 1 s (its minimum).
func kvServerTTL(ttl time.Duration) time.Duration {
	s := (ttl + time.Second - 1) / time.Second
	return max(s, 1) * time.Second
}
