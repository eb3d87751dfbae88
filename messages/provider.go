package messages

import "time"

// ParseFunc is the parser of one provider's webhook bodies: Parse,
// ParseWASender, ParseWAHA or ParseEvolution. It splits body into Events, each with
// ReceivedAt set to receivedAt, or returns an error wrapping ErrNotWebhook
// when body is not that provider's webhook at all.
type ParseFunc func(body []byte, receivedAt time.Time) ([]Event, error)

// parsers are the providers' parsers by name.
var parsers = map[string]ParseFunc{
	ProviderCloud:     Parse,
	ProviderWASender:  ParseWASender,
	ProviderWAHA:      ParseWAHA,
	ProviderEvolution: ParseEvolution,
}

// Parser returns the parser of provider (ProviderCloud, ProviderWASender,
// ProviderWAHA, ProviderEvolution); ok is false for an unknown provider. It is safe for
// concurrent use.
func Parser(provider string) (p ParseFunc, ok bool) {
	p, ok = parsers[provider]
	return p, ok
}
