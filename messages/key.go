package messages

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// KeyPrefix starts every dedupe key.
const KeyPrefix = "wa:"

// KeyLen is the length of every dedupe key: KeyPrefix and 128 bits of
// SHA-256 in unpadded base64url.
const KeyLen = len(KeyPrefix) + 22

// KeyOf returns the dedupe key of an identity: "wa:" followed by the first 128
// bits of SHA-256(identity) in unpadded base64url. It is safe as a Redis key,
// a NATS header value and a NATS subject token.
func KeyOf(identity string) string {
	sum := sha256.Sum256([]byte(identity))
	return KeyPrefix + base64.RawURLEncoding.EncodeToString(sum[:16])
}

// identityEscaper escapes the separator of identity parts, so that two
// different lists of parts never join to the same identity.
var identityEscaper = strings.NewReplacer("%", "%25", "|", "%7C")

// Identity joins parts into an identity string, escaping '%' and '|' in each
// part so that the join is unambiguous.
func Identity(parts ...string) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('|')
		}
		b.WriteString(identityEscaper.Replace(p))
	}
	return b.String()
}
