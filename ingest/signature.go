package ingest

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
)

// HeaderSignature is the Cloud API's signature header:
// "sha256=" followed by the lowercase hex of HMAC-SHA256(body, App Secret).
const HeaderSignature = "X-Hub-Signature-256"

// signaturePrefix starts the value of HeaderSignature.
const signaturePrefix = "sha256="

// Sign returns the value of HeaderSignature for body signed with secret, as
// Meta computes it. It is what a test or a sending tool needs to sign a body.
func Sign(body []byte, secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return signaturePrefix + hex.EncodeToString(m.Sum(nil))
}

// HeaderSignatureSHA1 is the older signature header Meta sends beside
// HeaderSignature: "sha1=" followed by the lowercase hex of
// HMAC-SHA1(body, App Secret). Apps written before X-Hub-Signature-256 check
// it; wagate's ingress does not.
const HeaderSignatureSHA1 = "X-Hub-Signature"

// signCloud sets both of Meta's signature headers of body under secret, as
// Meta sends them.
func signCloud(h http.Header, body []byte, secret string) {
	h.Set(HeaderSignature, Sign(body, secret))
	m := hmac.New(sha1.New, []byte(secret))
	m.Write(body)
	h.Set(HeaderSignatureSHA1, "sha1="+hex.EncodeToString(m.Sum(nil)))
}

// verifySignature reports whether header is a valid HeaderSignature of body
// under any of secrets. It computes the HMAC over the exact bytes given and
// compares in constant time; every secret is tried, whichever matches, so the
// time taken does not tell which one did. A missing or malformed header is
// invalid.
func verifySignature(body []byte, header string, secrets [][]byte) bool {
	want, ok := parseSignature(header)
	if !ok {
		return false
	}
	match := false
	for _, sec := range secrets {
		m := hmac.New(sha256.New, sec)
		m.Write(body)
		if hmac.Equal(m.Sum(nil), want[:]) {
			match = true
		}
	}
	return match
}

// parseSignature returns the digest of a HeaderSignature value, and false
// when the value is missing or malformed (not "sha256=" and 64 hex digits).
func parseSignature(header string) (sum [sha256.Size]byte, ok bool) {
	rest, ok := strings.CutPrefix(header, signaturePrefix)
	if !ok || len(rest) != 2*sha256.Size {
		return sum, false
	}
	if _, err := hex.Decode(sum[:], []byte(rest)); err != nil {
		return sum, false
	}
	return sum, true
}
