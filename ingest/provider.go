package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wagate/wagate/messages"
)

// Verifier checks that a webhook request comes from its provider, from the
// request's headers and the exact bytes of its body, before anything is
// parsed. Implementations compare in constant time and are safe for
// concurrent use.
type Verifier interface {
	// Verify reports whether h authenticates body.
	Verify(h http.Header, body []byte) bool
}

// HeaderChecker is the part of a Verifier that needs no body: it tells from
// the headers alone that a request cannot be authentic, because the
// provider's credential header is missing or malformed (not the length or
// alphabet the provider writes). The ingress asks it first and answers 401
// at once, without reserving memory for the body or reading it. Every
// provider's Verifier implements it; a new provider's must too (a test walks
// every provider). Safe for concurrent use.
type HeaderChecker interface {
	// CheckHeader reports whether h carries a well-formed credential. True
	// does not mean authentic: Verify still decides, over the body.
	CheckHeader(h http.Header) bool
}

// provider is one webhook source the ingress can serve: a POST route, how
// its requests are authenticated and how its bodies are parsed. Each lives in
// its own file (cloud.go, wasender.go, waha.go).
type provider struct {
	name  string // messages.Provider*: names it in logs and to SignRequest
	title string // names it in answers: "body is not a <title> webhook"
	path  string // the POST route

	// secrets returns its secrets from cfg; none: not served, unless
	// cfg.Insecure.
	secrets func(cfg Config) []string
	// verifier returns the Verifier for secrets (never empty).
	verifier func(secrets [][]byte) Verifier
	// sign sets on h the headers that authenticate body under secret, as the
	// provider sets them.
	sign func(h http.Header, body []byte, secret string)
	// parse splits a body into events.
	parse messages.ParseFunc
}

// providers are every provider the ingress can serve, in route order.
var providers = []provider{cloudProvider, wasenderProvider, wahaProvider, evolutionProvider}

// served is a provider served by a Server.
type served struct {
	provider
	verify Verifier // nil: no secret, signatures not checked (Config.Insecure)
}

// Providers returns the names of the providers the ingress can serve
// (messages.ProviderCloud, ProviderWASender, ProviderWAHA,
// ProviderEvolution), in route order.
func Providers() []string {
	names := make([]string, len(providers))
	for i, p := range providers {
		names[i] = p.name
	}
	return names
}

// Route returns the path of provider's webhook route ("/webhooks/whatsapp",
// "/webhooks/wasender", "/webhooks/waha", "/webhooks/evolution"), or "" for
// an unknown provider.
func Route(provider string) string {
	if p, ok := lookupProvider(provider); ok {
		return p.path
	}
	return ""
}

// SignRequest sets on h the headers that authenticate body to provider's
// route under secret (a Meta App Secret, a WASenderApi webhook secret, a WAHA
// HMAC key, an Evolution API token), as the provider itself sets them. It is what tests, load and
// fault tools and wagate send need to post a body. It returns an error for an
// unknown provider. It is safe for concurrent use.
func SignRequest(h http.Header, provider string, body []byte, secret string) error {
	p, ok := lookupProvider(provider)
	if !ok {
		return fmt.Errorf("ingest: unknown provider %q", provider)
	}
	p.sign(h, body, secret)
	return nil
}

func lookupProvider(name string) (provider, bool) {
	for _, p := range providers {
		if p.name == name {
			return p, true
		}
	}
	return provider{}, false
}

// checkSecrets returns an error naming the first empty secret of cfg, and
// ErrNoSecret when no provider has a secret and cfg.Insecure is not set.
func checkSecrets(cfg Config) error {
	some := false
	for _, p := range providers {
		for i, sec := range p.secrets(cfg) {
			if sec == "" {
				return fmt.Errorf("ingest: %s secret %d is empty", p.title, i)
			}
			some = true
		}
	}
	if !some && !cfg.Insecure {
		return ErrNoSecret
	}
	return nil
}

// servedProviders returns the providers a Server with cfg serves: those with
// a secret, and under cfg.Insecure the others too, unsigned.
func servedProviders(cfg Config) []served {
	var out []served
	for _, p := range providers {
		secs := p.secrets(cfg)
		if len(secs) == 0 {
			if cfg.Insecure {
				out = append(out, served{provider: p})
			}
			continue
		}
		keys := make([][]byte, len(secs))
		for i, sec := range secs {
			keys[i] = []byte(sec)
		}
		out = append(out, served{provider: p, verify: p.verifier(keys)})
	}
	return out
}

// providerRoutes registers the POST route of every served provider, and the
// Cloud API's verification handshake when the Cloud API is served.
func (s *Server) providerRoutes(e *echo.Echo) {
	for _, p := range s.served {
		e.POST(p.path, s.receive(p))
		if p.name == messages.ProviderCloud {
			e.GET(p.path, s.handshake)
		}
	}
}

// receive answers a webhook POST of p (see the package doc for the answers).
func (s *Server) receive(p served) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		code, ans := s.receiveBody(p, c.Request(), start)
		s.metrics.ackDuration(code).Observe(time.Since(start).Seconds())
		if code == http.StatusRequestEntityTooLarge {
			// The rest of the body stays unread: do not reuse the connection.
			c.Response().Header().Set(echo.HeaderConnection, "close")
		}
		return c.Blob(code, echo.MIMEApplicationJSON, ans.appendJSON(make([]byte, 0, 64)))
	}
}

// bodyWait is how long a request waits for Config.BodyMemory before it is
// answered 503.
const bodyWait = time.Second

// receiveBody reads, verifies, parses and accepts one body of p, and returns
// the status code and body of the answer.
func (s *Server) receiveBody(p served, r *http.Request, receivedAt time.Time) (int, Answer) {
	if hc, ok := p.verify.(HeaderChecker); ok && !hc.CheckHeader(r.Header) {
		// Cannot be authentic: refused before any memory is reserved or any
		// byte of the body read.
		s.logRefusal("ingest: signature header missing or malformed", "provider", p.name, "content_length", r.ContentLength)
		return http.StatusUnauthorized, Answer{Error: "invalid signature"}
	}
	if r.ContentLength <= s.cfg.BodyLimit {
		// Reserve the body's memory before reading it (a body over the
		// limit is refused below without being read): the signature can
		// only be checked on the whole body, so unsigned senders must not
		// be able to make the ingress hold unbounded memory.
		n := s.cfg.BodyLimit + 1
		if r.ContentLength >= 0 {
			n = r.ContentLength + bytes.MinRead
		}
		n = min(n, s.cfg.BodyMemory)
		if !s.bodies.TryAcquire(n) {
			ctx, cancel := context.WithTimeout(r.Context(), bodyWait)
			err := s.bodies.Acquire(ctx, n)
			cancel()
			if err != nil {
				s.metrics.bodyRefusals.Inc()
				s.logRefusal("ingest: too many bodies in flight; request refused", "provider", p.name, "content_length", r.ContentLength, "body_memory", s.cfg.BodyMemory)
				return http.StatusServiceUnavailable, Answer{Error: "too many requests in flight"}
			}
		}
		defer s.bodies.Release(n)
	}
	body, err := readBody(r.Body, r.ContentLength, s.cfg.BodyLimit)
	switch {
	case errors.Is(err, errTooLarge):
		s.logRefusal("ingest: body over the limit", "provider", p.name, "content_length", r.ContentLength, "limit", s.cfg.BodyLimit)
		return http.StatusRequestEntityTooLarge, Answer{Error: "body too large"}
	case err != nil:
		s.logRefusal("ingest: body unreadable", "provider", p.name, "err", err)
		return http.StatusBadRequest, Answer{Error: "unreadable body"}
	}
	if p.verify != nil && !p.verify.Verify(r.Header, body) {
		s.logRefusal("ingest: signature refused", "provider", p.name, "bytes", len(body))
		return http.StatusUnauthorized, Answer{Error: "invalid signature"}
	}
	// Parsed with the bound where the provider's parser takes one, so that a
	// body fanning out into a huge number of events costs no more than
	// MaxEvents events; otherwise parsed in full and counted below.
	events, bounded, err := messages.ParseMax(p.name, body, receivedAt.UTC(), s.cfg.MaxEvents)
	if !bounded {
		events, err = p.parse(body, receivedAt.UTC())
	}
	if tm, ok := errors.AsType[*messages.TooManyEventsError](err); ok {
		s.logRefusal("ingest: too many events in one request", "provider", p.name, "max_events", tm.Max)
		return http.StatusRequestEntityTooLarge, Answer{
			Error: fmt.Sprintf("body holds more than %d events, over the limit of %d events per request", tm.Max, tm.Max)}
	}
	messages.Window(events, s.cfg.RepeatWindow)
	if err != nil {
		if errors.Is(err, messages.ErrNotWebhook) {
			s.logRefusal("ingest: not a webhook", "provider", p.name, "bytes", len(body))
		} else {
			s.logRefusal("ingest: body not parsed", "provider", p.name, "err", err, "bytes", len(body))
		}
		return http.StatusBadRequest, Answer{Error: "body is not a " + p.title + " webhook"}
	}
	if len(events) == 0 {
		return http.StatusOK, Answer{}
	}
	if len(events) > s.cfg.MaxEvents {
		// Refused whole, before anything is claimed: no provider documents
		// a batch this large.
		s.logRefusal("ingest: too many events in one request", "provider", p.name, "events", len(events), "max_events", s.cfg.MaxEvents)
		return http.StatusRequestEntityTooLarge, Answer{Events: len(events),
			Error: fmt.Sprintf("body holds %d events, over the limit of %d events per request", len(events), s.cfg.MaxEvents)}
	}
	if limit := s.eventBytes; eventsOver(events, limit) {
		// The events of one body share its metadata, contact and frame:
		// refused whole, before anything is claimed, rather than publish a
		// multiple of the body for each of its items.
		s.logRefusal("ingest: events too large in all", "provider", p.name, "events", len(events), "bytes", len(body), "max_event_bytes", limit)
		return http.StatusRequestEntityTooLarge, Answer{Events: len(events),
			Error: fmt.Sprintf("body's events encode to more than %d bytes, over the limit of %d bytes per request", limit, limit)}
	}
	return s.accept(r.Context(), events)
}

// eventsOver reports whether events encode to more than limit bytes in all
// (messages.Event.EncodedSize). It stops at the first event past the limit,
// so its work is bounded by limit, whatever the events share.
func eventsOver(events []messages.Event, limit int64) bool {
	var n int64
	for i := range events {
		if n += events[i].EncodedSize(); n > limit {
			return true
		}
	}
	return false
}

// logRefusal writes a line about a refused request, sampled
// (Config.LogSampleRate): anyone can send requests that are refused. The
// metrics count every refusal (wagate_ingest_requests_total by code).
func (s *Server) logRefusal(msg string, args ...any) {
	ok, suppressed := s.refused.Allow()
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	s.log.Info(msg, args...)
}

// logDuplicate writes a line about a duplicate event, sampled
// (Config.LogSampleRate): a provider's retries, or anyone replaying a signed
// body, make them at will. wagate_ingest_events_total{outcome="duplicate"}
// counts every one.
func (s *Server) logDuplicate(log *slog.Logger, msg string, args ...any) {
	ok, suppressed := s.dupes.Allow()
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	log.Info(msg, args...)
}
