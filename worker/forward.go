package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/wagate/wagate/internal/redact"
	"github.com/wagate/wagate/messages"
)

// Headers of a forwarded event, besides Content-Type: application/json.
const (
	// HeaderIdempotencyKey carries the event's dedupe key: the same for every
	// run of one event, so the receiver can record it and apply each event
	// once.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderFencingToken carries the run's fencing number in decimal: greater
	// than that of every earlier run of the same key, so the receiver can
	// refuse a stale writer. Absent when the context carries no Run.
	HeaderFencingToken = "Wagate-Fencing-Token"
	// HeaderDelivery carries JetStream's delivery count of the event, from 1
	// (0 for a run of wagate replay). Absent when the context carries no Run.
	HeaderDelivery = "Wagate-Delivery"
)

// DefaultForwardTimeout bounds one forward when Forward.Client is nil: 5
// minutes, so that slow business logic behind the URL (an LLM reply, a slow
// CRM) finishes within one request. While a forward waits, the worker's
// heartbeat keeps the event's lock and its JetStream AckWait alive, however
// long that takes. A timeout is not a failure of the application: it is
// wagate giving up on an answer, and the retry, after its backoff, is a
// second request to an application that may still be running the first
// (with the same Idempotency-Key and a higher fencing token).
const DefaultForwardTimeout = 5 * time.Minute

// Forward is a Handler that POSTs each event to URL, with
// HeaderIdempotencyKey, HeaderFencingToken and HeaderDelivery: as
// ev.Encode() writes it (FormatEvent, the default), or in its provider's own
// webhook format, signed as the provider signs (FormatProvider).
//
// A 2xx answer means done. 408, 429, 5xx, timeouts, network errors and the
// cancellation of ctx are retryable errors. Any other answer (other 4xx, a
// 3xx, which is not followed) is Permanent: the event goes to the dead-letter
// stream. Answers other than 2xx come back as a *StatusError.
//
// Forward is safe for concurrent use; its fields must not change while it is
// in use.
type Forward struct {
	// URL receives the POSTs. Required.
	URL string
	// Client sends them; it should have a Timeout. Redirects are not
	// followed unless Client.CheckRedirect is set: a POST redirected by 301,
	// 302 or 303 would become a GET without the event, and its 2xx would
	// mark the event done. Default: a client with Timeout
	// DefaultForwardTimeout (5 min); a Timeout shorter than the application
	// takes makes every event run twice or more (see DefaultForwardTimeout).
	Client *http.Client
	// Header is added to every request (for example Authorization). The
	// headers above take precedence. Optional.
	Header http.Header
	// Format is the body format: FormatEvent (the default when empty) or
	// FormatProvider.
	Format ForwardFormat
	// Secrets are, by provider (messages.ProviderCloud, …), the secrets
	// requests in FormatProvider are signed with, by Sign: the App Secret or
	// the application's own, the WASenderApi webhook secret, the WAHA HMAC
	// key. A provider without one is sent unsigned. Unused in FormatEvent.
	Secrets map[string]string
	// Sign signs requests in FormatProvider (ingest.SignRequest signs as
	// every provider the ingress serves does). Required when Secrets is set.
	Sign SignFunc
}

var _ Handler = (*Forward)(nil)

// defaultForwardClient does not follow redirects: a redirected POST would
// lose its body.
var defaultForwardClient = &http.Client{Timeout: DefaultForwardTimeout, CheckRedirect: noRedirect}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// NewForward returns a Forward to url using client (the default client when
// nil).
func NewForward(url string, client *http.Client) *Forward {
	return &Forward{URL: url, Client: client}
}

// StatusError is a non-2xx answer of the forward endpoint.
type StatusError struct {
	// StatusCode is the HTTP status code.
	StatusCode int
	// Body is the start of the answer's body (at most 256 bytes), for the
	// dead letter's error header and the logs.
	Body string
}

// Error returns "forward: HTTP <code> <status text>: <body>".
func (e *StatusError) Error() string {
	s := "forward: HTTP " + strconv.Itoa(e.StatusCode)
	if t := http.StatusText(e.StatusCode); t != "" {
		s += " " + t
	}
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// Retryable reports whether the status is worth retrying: 408, 429 or 5xx.
func (e *StatusError) Retryable() bool {
	return e.StatusCode == http.StatusRequestTimeout || e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500
}

// maxErrorBody bounds StatusError.Body; maxDrain bounds what is read of an
// answer so the connection can be reused.
const (
	maxErrorBody = 256
	maxDrain     = 64 << 10
)

// Handle POSTs ev to f.URL. It returns nil on 2xx, a *StatusError for any
// other status (wrapped in Permanent unless Retryable), Permanent errors when
// ev cannot be encoded or the request cannot be built, and a retryable error
// wrapping the transport's error otherwise.
func (f *Forward) Handle(ctx context.Context, ev messages.Event) error {
	body, err := f.body(ev)
	if err != nil {
		return Permanent(fmt.Errorf("forward: %w", err))
	}
	if body == nil {
		return nil // the item reaches the application in another event's body
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.URL, bytes.NewReader(body))
	if err != nil {
		return Permanent(fmt.Errorf("forward: %w", err))
	}
	for k, vs := range f.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "wagate-worker")
	req.Header.Set(HeaderIdempotencyKey, ev.Key)
	if run, ok := RunFromContext(ctx); ok {
		req.Header.Set(HeaderFencingToken, strconv.FormatInt(run.Fence, 10))
		req.Header.Set(HeaderDelivery, strconv.FormatUint(run.Delivery, 10))
	}
	if err := f.sign(req.Header, ev, body); err != nil {
		return Permanent(fmt.Errorf("forward: %w", err))
	}

	client := defaultForwardClient
	if f.Client != nil {
		client = f.Client
		if client.CheckRedirect == nil {
			c := *client // shares the Transport and its connections
			c.CheckRedirect = noRedirect
			client = &c
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		// Timeouts, cancellation and network errors: retry. The error quotes
		// the URL: never its credentials or query (a token).
		if ue, ok := errors.AsType[*url.Error](err); ok {
			ue.URL = redact.URL(ue.URL)
		}
		return fmt.Errorf("forward: %w", err)
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	se := &StatusError{StatusCode: resp.StatusCode, Body: oneLine(string(bytes.TrimSpace(head)), maxErrorBody)}
	if se.Retryable() {
		return se
	}
	return Permanent(se)
}
