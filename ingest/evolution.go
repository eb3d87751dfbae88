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
// webhook: "Authorization: Bearer <token>". Evolution API signs nothing; the
// "headers" of an instance's webhook (POST /webhook/set/{instance} or
// /instance/create) are custom HTTP headers sent with every webhook request,
// documented with the example "Authorization": "Bearer your-token-here"
// (Evolution API OpenAPI v2 spec, webhook "headers",
// github.com/EvolutionAPI/docs-evolution pull 22; supported since Evolution
// API's migration add_headers_on_webhook_config of 2024-09-06). The operator
// sets this header there, with a token shared with wagate. Its "jwt_key"
// option, which sends a fresh JWT instead, is not supported: set the static
// header. Like WASenderApi's secret the token proves who sent a request, not
// that its body is intact: serve the route over TLS only. The body's own
// "apikey" is not used: it is the instance's API key, not a webhook secret,
// and wagate never stores it.
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

// CheckHeader reports whether h's HeaderEvolutionToken could name a token:
// "Bearer <token>" (the scheme in any case), the whole value at most 1 KiB.
func (v bearerVerifier) CheckHeader(h http.Header) bool {
	got := h.Get(HeaderEvolutionToken)
	scheme, tok, ok := strings.Cut(got, " ")
	return ok && strings.EqualFold(scheme, "Bearer") && tok != "" && len(got) <= maxToken
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
