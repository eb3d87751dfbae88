package ingest

import (
	"net/http"

	"github.com/wagate/wagate/messages"
)

// pathCloud is the Cloud API webhook: GET for the verification handshake,
// POST for events.
const pathCloud = "/webhooks/whatsapp"

// cloudProvider is Meta's WhatsApp Business Cloud API: bodies signed with
// HMAC-SHA256 under an App Secret in X-Hub-Signature-256 (see Sign), parsed
// by messages.Parse.
var cloudProvider = provider{
	name:     messages.ProviderCloud,
	title:    "Cloud API",
	path:     pathCloud,
	secrets:  func(cfg Config) []string { return cfg.AppSecrets },
	verifier: func(secrets [][]byte) Verifier { return cloudVerifier(secrets) },
	sign:     signCloud,
	parse:    messages.Parse,
}

// cloudVerifier checks X-Hub-Signature-256 under any of its App Secrets.
type cloudVerifier [][]byte

// CheckHeader reports whether h holds a well-formed HeaderSignature.
func (v cloudVerifier) CheckHeader(h http.Header) bool {
	_, ok := parseSignature(h.Get(HeaderSignature))
	return ok
}

// Verify reports whether h holds a valid HeaderSignature of body.
func (v cloudVerifier) Verify(h http.Header, body []byte) bool {
	return verifySignature(body, h.Get(HeaderSignature), v)
}
