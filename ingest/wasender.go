package ingest

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"

	"github.com/wagate/wagate/messages"
)

// pathWASender is the WASenderApi webhook route.
const pathWASender = "/webhooks/wasender"

// HeaderWASenderSignature is WASenderApi's webhook header. It carries the
// session's webhook secret itself, not a digest of the body: "Check if the
// X-Webhook-Signature header in the request matches your stored Webhook
// Secret" (WASenderApi, "Webhook Setup",
// wasenderapi.com/api-docs/webhooks/webhook-setup). It therefore proves who
// sent a request, not that its body is intact: serve the route over TLS only.
const HeaderWASenderSignature = "X-Webhook-Signature"

// wasenderProvider is WASenderApi, parsed by messages.ParseWASender.
var wasenderProvider = provider{
	name:     messages.ProviderWASender,
	title:    "WASenderApi",
	path:     pathWASender,
	secrets:  func(cfg Config) []string { return cfg.WASenderSecrets },
	verifier: newTokenVerifier,
	sign:     func(h http.Header, _ []byte, secret string) { h.Set(HeaderWASenderSignature, secret) },
	parse:    messages.ParseWASender,
}

// tokenVerifier checks that HeaderWASenderSignature equals one of its
// secrets. It keeps only their SHA-256 digests and compares digests in
// constant time, so that neither the secrets' bytes nor their lengths leak
// through timing, and it tries every secret whichever matches.
type tokenVerifier [][sha256.Size]byte

// newTokenVerifier returns the tokenVerifier of secrets.
func newTokenVerifier(secrets [][]byte) Verifier {
	v := make(tokenVerifier, len(secrets))
	for i, sec := range secrets {
		v[i] = sha256.Sum256(sec)
	}
	return v
}

// maxToken bounds a well-formed HeaderWASenderSignature, in bytes: a webhook
// secret is a short token.
const maxToken = 1024

// CheckHeader reports whether h holds a HeaderWASenderSignature that could
// be a secret: present, not empty, at most 1 KiB.
func (v tokenVerifier) CheckHeader(h http.Header) bool {
	got := h.Get(HeaderWASenderSignature)
	return got != "" && len(got) <= maxToken
}

// Verify reports whether h's HeaderWASenderSignature is one of the secrets.
// A missing or empty header is invalid. body is not read.
func (v tokenVerifier) Verify(h http.Header, _ []byte) bool {
	got := h.Get(HeaderWASenderSignature)
	if got == "" {
		return false
	}
	sum := sha256.Sum256([]byte(got))
	match := 0
	for i := range v {
		match |= subtle.ConstantTimeCompare(sum[:], v[i][:])
	}
	return match == 1
}
