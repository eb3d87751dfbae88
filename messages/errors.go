package messages

import "errors"

// ErrNotWebhook is returned, wrapped with the reason, by Parse when a body is
// not a webhook at all: empty, not JSON, not a JSON object, or without the
// provider's envelope (for the Cloud API a string "object" and an "entry"
// array). The ingress answers such a body with 400. Match it with errors.Is.
var ErrNotWebhook = errors.New("messages: not a webhook")
