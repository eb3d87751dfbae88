// Package messages turns a provider's webhook body into Events, one per item,
// and gives each Event its identity and dedupe key.
//
// Guarantee: two deliveries of the same item always give the same identity and
// key; two items that mean different things never do. Parsing never panics,
// whatever the input (it is fuzzed); a body that is not a webhook at all is an
// error wrapping ErrNotWebhook, and anything wagate does not recognise inside a
// valid envelope becomes an event of kind "unknown" so that nothing is lost.
//
// Parse reads Meta's WhatsApp Business Cloud API webhooks, ParseWASender
// WASenderApi's and ParseWAHA WAHA's (Parser finds one by provider name); the
// documentation of each lists the events it makes and the identity of each.
// The gateways (WASenderApi, WAHA) share one identity scheme, built only from
// parts that stay the same across deliveries of one message: a one-to-one
// chat's address, which flips between a phone form and a @lid form, is never
// part of it. Events carry the item's
// bytes exactly as received (Event.Item), so a consumer can read any field
// wagate does not, and Encode keeps them byte for byte on the wire.
package messages
