package ingest

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/wagate/wagate/messages"
)

// pathEvolution is the Evolution API webhook route.
const pathEvolution = "/webhooks/evolution"

// HeaderEvolutionToken is the header that authenticates an Evolution API
// webhook: "Authorization: Bearer <token>". Evolution API signs nothing; its
// webhook settings take custom request headers ("headers" of the instance's
// webhook, POST /webhook/set/{instance}; Evolution API, "Webhooks",
// doc.evolution-api.com/v2/en/configuration/webhooks), where the operator
// sets this header with a token shared with wagate. Like WASenderApi's
// secret it proves who sent a request, not that its body is intact: serve the
// route over TLS only. The body's own "apikey" is not used: it is the
// instance's API key, not a webhook secret, and wagate never stores it.
const HeaderEvolutionToken = "Authorization"

// evolutionProvider is Evolution API, parsed by messages.ParseEvolution.
var evolutionProvider = provider{
	name:     messages.ProviderEvolution,
	title:    "Evolution API",
	path:     pathEvolution,
	secrets:  func(cfg Config) []string { return cfg.EvolutionTokens },
	verifier: newBearerVerifier,
	sign:     func(h http.Header, _ []byte, token string) { h.Set(HeaderEvolutionToken, "Bearer "+token) },
	parse:    messages.ParseEvolution,
}

// bearerVerifier checks that HeaderEvolutionToken is "Bearer " and one of its
// tokens, comparing SHA-256 digests in constant time and trying every token.
type bearerVerifier [][sha256.Size]byte

// newBearerVerifier returns the bearerVerifier of tokens.
func newBearerVerifier(tokens [][]byte) Verifier {
	v := make(bearerVerifier, len(tokens))
	for i, tok := range tokens {
		v[i] = sha256.Sum256(tok)
	}
	return v
}

// Verify reports whether h's HeaderEvolutionToken is "Bearer <token>" (the
// scheme in any case) for one of the tokens. body is not read.
func (v bearerVerifier) Verify(h http.Header, _ []byte) bool {
	scheme, tok, ok := strings.Cut(h.Get(HeaderEvolutionToken), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return false
	}
	sum := sha256.Sum256([]byte(tok))
	match := 0
	for i := range v {
		match |= subtle.ConstantTimeCompare(sum[:], v[i][:])
	}
	return match == 1
}
