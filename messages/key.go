package messages

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
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

// MaxIdentityPart is the longest identity part written as it is, in bytes:
// a longer one (an id or address no provider writes, from a hostile or
// broken body) is written as "%sha256-" and the hex SHA-256 of the part.
// Provider ids, addresses, names and hashes are far shorter.
const MaxIdentityPart = 512

// Identity joins parts into an identity string, escaping '%' and '|' in each
// part so that the join is unambiguous. A part longer than MaxIdentityPart is
// written as its hash, which no escaped part can equal (an escaped part holds
// '%' only in "%25" and "%7C"), so that an identity stays short whatever the
// body: an event's stored size stays within about twice its body's.
func Identity(parts ...string) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('|')
		}
		if len(p) > MaxIdentityPart {
			sum := sha256.Sum256([]byte(p))
			b.WriteString("%sha256-")
			b.WriteString(hex.EncodeToString(sum[:]))
			continue
		}
		b.WriteString(identityEscaper.Replace(p))
	}
	return b.String()
}

// DefaultRepeatWindow is the default repeat window of transient events (see
// Event.Transient and Window): one hour. It covers the retry schedules of the
// gateways whose items can be transient: Evolution API retries a failed
// webhook up to 10 times, from 5 s doubling to at most 300 s between
// attempts, about 20 minutes in all (Evolution API, webhook environment
// WEBHOOK_RETRY_MAX_ATTEMPTS, WEBHOOK_RETRY_INITIAL_DELAY_SECONDS,
// WEBHOOK_RETRY_MAX_DELAY_SECONDS, doc.evolution-api.com/v2/en/configuration/webhooks);
// WAHA retries per its webhook "retries" setting (policy, delaySeconds,
// attempts; waha.devlike.pro/docs/how-to/webhooks/), seconds to minutes with
// its defaults; WASenderApi documents no retry schedule. No Cloud API item
// is transient, with or without a time of its own: Meta retries for up to 7
// days, so its items without an id are deduplicated over the whole dedupe
// horizon instead (see Parse).
const DefaultRepeatWindow = time.Hour

// Window ends the identity of every transient event of events with the
// repeat window it was received in, and sets its key again:
//
//	<identity>|window|<start of the window, Unix seconds>
//
// where windows are window long and start at multiples of window since the
// Unix epoch (window 0 or under a second means DefaultRepeatWindow). A window
// already in the identity is replaced: the gateway parsers apply
// DefaultRepeatWindow, and the ingress applies its configured window again.
// (No other identity ends this way: Identity escapes '|' inside parts.) Two
// deliveries of one transient item in one window share a key; the same
// content received in a later window is a new event. A retry that crosses
// the start of a window is a second event: with a window of W and a retry r
// after the first delivery, that happens with probability r/W, which is why
// the window is set well above the provider's retry span. Events that are
// not transient are left as they are. Window is safe for concurrent use on
// distinct slices.
func Window(events []Event, window time.Duration) {
	if window < time.Second {
		window = DefaultRepeatWindow
	}
	w := int64(window / time.Second)
	for i := range events {
		ev := &events[i]
		if !ev.Transient {
			continue
		}
		if j := strings.LastIndex(ev.Identity, windowPart); j >= 0 {
			ev.Identity = ev.Identity[:j]
		}
		start := ev.ReceivedAt.Unix()
		start -= ((start % w) + w) % w
		ev.Identity += windowPart + strconv.FormatInt(start, 10)
		ev.Key = KeyOf(ev.Identity)
	}
}

// windowPart starts the window part of a transient event's identity.
const windowPart = "|window|"
