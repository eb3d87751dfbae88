// Package ingest is wagate's HTTP ingress: it receives provider webhooks,
// claims every event of a request in the dedupe store in one round trip,
// publishes the events to JetStream and answers the provider. Under
// concurrency it commits in groups: the claims of the requests waiting at a
// moment share one store call, publishes go out without a round trip each,
// and accepted marks are written in batches, riding with the next claims'
// store call while one is on the wire (see commit.go).
//
// Guarantee (design G1): a 2xx is returned only after every event of the
// request has a JetStream PubAck (a PubAck with Duplicate set counts: the event
// is stored). If anything fails first, the answer is 503 and the claims this
// request took for the events that were not stored are released, so that the
// provider's retry is processed in full. The ingress never waits for business
// logic (G4): the latency of a request is its body, its claim and its
// publishes.
//
// # Routes
//
//	GET  /webhooks/whatsapp   Cloud API verification handshake
//	POST /webhooks/whatsapp   Cloud API events (X-Hub-Signature-256)
//	POST /webhooks/wasender   WASenderApi events (X-Webhook-Signature)
//	POST /webhooks/waha       WAHA events (X-Webhook-Hmac)
//	POST /webhooks/evolution  Evolution API events (Authorization: Bearer)
//	GET  /healthz             alive: always 200
//
// and on Config.AdminAddr (AdminHandler), never on the webhook address:
//
//	GET  /healthz             alive: always 200
//	GET  /readyz              200 when the store and JetStream answer, else 503;
//	                          names the failing dependency, never its address
//	GET  /metrics             Prometheus metrics
//
// A provider's routes are served when it has a secret (Config.AppSecrets,
// WASenderSecrets, WAHAKeys, EvolutionTokens), or unsigned under
// Config.Insecure; otherwise they answer 404. Every provider goes through the
// same steps (read, verify, parse with its messages parser, end the
// identities of transient events with their repeat window
// (Config.RepeatWindow, messages.Window), claim, publish); see Route,
// SignRequest and the Verifier interface.
//
// # Answers to a webhook POST
//
//	401  the provider's signature header missing or malformed (HeaderChecker:
//	     answered before any body memory is reserved or any byte read), or
//	     matching none of its secrets (checked over the exact bytes received,
//	     before parsing)
//	413  Content-Length above Config.BodyLimit (nothing read), or a body that
//	     turns out longer (at most BodyLimit+1 bytes read), or a body holding
//	     more than Config.MaxEvents events, or events that encode to more
//	     bytes in all than Config.BodyLimit allows (the answer names the
//	     limit; nothing claimed)
//	400  the body could not be read, or is not a webhook (messages.ErrNotWebhook)
//	200  every event stored (or a duplicate of a stored one); also a webhook
//	     holding no event
//	503  the store (under FailClosed) or JetStream failed, or the bodies in
//	     flight hold all of Config.BodyMemory (the body is then not read);
//	     the provider retries
//
// For each event, the claim's prior state decides: absent → publish; pending
// (another attempt is in flight, or died mid-way) → publish again with the same
// Nats-Msg-Id, which JetStream drops if the first one landed; accepted or done
// → a duplicate, answered 200 and not published. An item that appears twice in
// one body is claimed and published once. Publishes of one request go out
// concurrently (at most 256 at a time) and all of them share one
// Config.PublishTimeout. The stored events' claims are moved from pending to
// accepted after the answer, off the ack path (G4); a mark that never lands
// leaves the key pending, which the next delivery publishes again and
// JetStream drops. Serve waits for these marks before it returns.
//
// # Degraded modes (design G5)
//
// When the claim fails because the store is down (an error, or no answer
// within Config.StoreTimeout to the claim nor to a ping), FailOpen (the
// default) publishes every event anyway with its Nats-Msg-Id, so JetStream's
// duplicate window still drops near-simultaneous retries, and counts the
// events as "bypassed"; FailClosed answers 503. A store that answers a ping
// but not the claim in time is slow, not down: the answer is 503 under either
// policy, never a bypass. When JetStream is
// unreachable the answer is 503 and the claims are released. The handshake,
// /healthz and /metrics never touch the store or JetStream.
//
// # Streams
//
// Run creates or updates the streams of Config.Streams (streams.Ensure) before
// it listens. A caller that serves Handler itself must ensure the streams
// first.
//
// # Claims
//
// The keys of the requests of one claim batch are claimed in store calls of
// at most 1,000 keys, each bounded by Config.StoreTimeout; when one fails,
// the claims already taken are released and every request of the batch
// fails alike. The claim owner is Config.Owner, a random per-process nonce
// and a per-batch counter, so that a pending value names the process that
// wrote it.
//
// # Metrics
//
// Registered with Config.Registerer:
//
//	wagate_ingest_requests_total{route,code}        HTTP requests answered; route "other" for unknown paths
//	wagate_ingest_events_total{kind,outcome}        events by outcome: accepted, duplicate, republished, bypassed, rejected
//	wagate_ingest_fallback_identities_total{kind}   events whose identity is a fallback (Event.Fallback)
//	wagate_ingest_claim_duration_seconds            histogram: one claim of all the keys of a request
//	wagate_ingest_publish_duration_seconds          histogram: one event's publish, from sending to its PubAck or failure
//	wagate_ingest_ack_duration_seconds{code}        histogram: a webhook POST, from receiving it to answering the provider
//	wagate_ingest_body_memory_refusals_total        POSTs answered 503 because Config.BodyMemory was in use
//
// An event is "accepted" when this request claimed and stored it,
// "republished" when it found a pending claim and stored it again,
// "bypassed" when it was stored without a claim (FailOpen), "duplicate" when it
// was accepted or done before (or repeated in the body), and "rejected" when
// it was not stored and the request was answered 503.
//
// # Logs
//
// Logs are log/slog records, each bounded in size (values cut at 4 KiB,
// lists at 8 items). Every record about an event carries its dedupe key
// ("key"); phone numbers are masked to their last four digits; secrets,
// verify tokens, signatures, bodies, items and identities (which may hold a
// phone number) are never logged. Lines about refused requests and about
// duplicates are sampled (Config.LogSampleRate); the metrics count every one.
package ingest
