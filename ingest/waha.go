package ingest

import (
	"crypto/hmac"
	"crypto/sha512"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/wagate/wagate/messages"
)

// pathWAHA is the WAHA webhook route.
const pathWAHA = "/webhooks/waha"

// WAHA's webhook headers when the webhook has an HMAC key: the lowercase hex
// of HMAC-SHA512(body, key), and the algorithm, "sha512" (WAHA, "Webhooks",
// HMAC authentication, waha.devlike.pro/docs/how-to/webhooks/).
const (
	HeaderWAHAHmac          = "X-Webhook-Hmac"
	HeaderWAHAHmacAlgorithm = "X-Webhook-Hmac-Algorithm"
)

// wahaProvider is WAHA, parsed by messages.ParseWAHA.
var wahaProvider = provider{
	name:     messages.ProviderWAHA,
	title:    "WAHA",
	path:     pathWAHA,
	secrets:  func(cfg Config) []string { return cfg.WAHAKeys },
	verifier: func(keys [][]byte) Verifier { return wahaVerifier(keys) },
	sign: func(h http.Header, body []byte, key string) {
		h.Set(HeaderWAHAHmac, SignWAHA(body, key))
		h.Set(HeaderWAHAHmacAlgorithm, "sha512")
	},
	parse: messages.ParseWAHA,
}

// SignWAHA returns the value of HeaderWAHAHmac for body signed with key, as
// WAHA computes it.
func SignWAHA(body []byte, key string) string {
	m := hmac.New(sha512.New, []byte(key))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// wahaVerifier checks HeaderWAHAHmac under any of its keys.
type wahaVerifier [][]byte

// Verify reports whether h holds a valid HeaderWAHAHmac of body under any
// key. It computes the HMAC over the exact bytes given and compares in
// constant time, trying every key whichever matches. A missing or malformed
// header is invalid, and so is any algorithm other than sha512 (an absent
// algorithm header means sha512).
func (v wahaVerifier) Verify(h http.Header, body []byte) bool {
	want, ok := parseWAHA(h)
	if !ok {
		return false
	}
	match := false
	for _, key := range v {
		m := hmac.New(sha512.New, key)
		m.Write(body)
		if hmac.Equal(m.Sum(nil), want[:]) {
			match = true
		}
	}
	return match
}

// CheckHeader reports whether h holds a well-formed HeaderWAHAHmac (128 hex
// digits) with no algorithm other than sha512.
func (v wahaVerifier) CheckHeader(h http.Header) bool {
	_, ok := parseWAHA(h)
	return ok
}

// parseWAHA returns the digest of h's HeaderWAHAHmac, and false when it is
// missing or malformed or the algorithm is not sha512.
func parseWAHA(h http.Header) (sum [sha512.Size]byte, ok bool) {
	if alg := h.Get(HeaderWAHAHmacAlgorithm); alg != "" && !strings.EqualFold(alg, "sha512") {
		return sum, false
	}
	sig := h.Get(HeaderWAHAHmac)
	if len(sig) != 2*sha512.Size {
		return sum, false
	}
	if _, err := hex.Decode(sum[:], []byte(sig)); err != nil {
		return sum, false
	}
	return sum, true
}
