package ingest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/semaphore"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/logging"
	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/messages/streams"
)

// Defaults of Config, used where a field is zero.
const (
	DefaultAddr              = ":8080"          // Config.Addr
	DefaultAdminAddr         = ":8082"          // Config.AdminAddr
	DefaultBodyLimit         = 4 << 20          // Config.BodyLimit, bytes: 4 MiB, above Meta's 3 MB
	DefaultBodyMemory        = 64 << 20         // Config.BodyMemory, bytes: 64 MiB (16 bodies at the default BodyLimit)
	DefaultMaxEvents         = 5000             // Config.MaxEvents: 5 × Meta's 1,000 events per webhook
	DefaultStoreTimeout      = 2 * time.Second  // Config.StoreTimeout
	DefaultPublishTimeout    = 5 * time.Second  // Config.PublishTimeout
	DefaultReadTimeout       = 15 * time.Second // Config.ReadTimeout
	DefaultReadHeaderTimeout = 10 * time.Second // Config.ReadHeaderTimeout
	DefaultWriteTimeout      = 30 * time.Second // Config.WriteTimeout
	DefaultIdleTimeout       = 2 * time.Minute  // Config.IdleTimeout
	DefaultShutdownTimeout   = 25 * time.Second // Config.ShutdownTimeout; WAGATE_SHUTDOWN_TIMEOUT's default
)

// Policy says what the ingress does when the dedupe store fails to claim.
type Policy string

// The store failure policies (design G5).
const (
	// FailOpen publishes every event of the request anyway, with its
	// Nats-Msg-Id, so that JetStream's duplicate window still drops retries
	// that arrive within it; the events are counted as "bypassed".
	FailOpen Policy = "fail-open"
	// FailClosed answers 503; the provider retries later.
	FailClosed Policy = "fail-closed"
)

// ErrNoSecret is returned by New when no provider has a secret (no App
// Secret, WASenderApi secret, WAHA key or Evolution API token) and
// Config.Insecure is not set.
var ErrNoSecret = errors.New("ingest: no webhook secret configured (set Insecure to accept unsigned webhooks)")

// Config configures a Server. The zero value of every field is its
// documented default, except the providers' secrets (AppSecrets,
// WASenderSecrets, WAHAKeys, EvolutionTokens), at least one of which must be set unless
// Insecure is. A provider is served (its route registered) when it has a
// secret, or under Insecure; otherwise its route answers 404.
// Durations must not be negative.
type Config struct {
	// Addr is the TCP address Run serves the webhook routes on, with
	// /healthz only. Default ":8080".
	Addr string
	// AdminAddr is the TCP address Run serves /healthz, /readyz and
	// /metrics on (AdminHandler): keep it off the public network. Default
	// ":8082".
	AdminAddr string

	// AppSecrets are the Meta App Secrets a Cloud API body may be signed
	// with (X-Hub-Signature-256). A body is accepted when its signature
	// matches any of them, so a new secret can be added before the old one is
	// removed. Empty strings are refused. Empty: POST and GET
	// /webhooks/whatsapp are not served, unless Insecure.
	AppSecrets []string
	// VerifyToken is the token of the Cloud API verification handshake. When
	// empty every handshake is refused (403).
	VerifyToken string
	// WASenderSecrets are the WASenderApi webhook secrets (one per session,
	// or the old and the new one during a rotation): a POST /webhooks/wasender
	// is accepted when its X-Webhook-Signature equals any of them. Empty
	// strings are refused. Empty: the route is not served, unless Insecure.
	WASenderSecrets []string
	// WAHAKeys are the WAHA webhook HMAC keys: a POST /webhooks/waha is
	// accepted when its X-Webhook-Hmac is the HMAC-SHA512 of the body under
	// any of them. Empty strings are refused. Empty: the route is not
	// served, unless Insecure.
	WAHAKeys []string
	// EvolutionTokens are the Evolution API webhook tokens: a POST
	// /webhooks/evolution is accepted when its Authorization header is
	// "Bearer " and any of them (set in the instance's webhook headers).
	// Empty strings are refused. Empty: the route is not served, unless
	// Insecure.
	EvolutionTokens []string
	// RepeatWindow is how long a transient event (an item with neither an id
	// nor a time of its own, messages.Event.Transient) is deduplicated: its
	// identity ends with the window it was received in (messages.Window).
	// Default messages.DefaultRepeatWindow (1 h), above the gateways' retry
	// schedules.
	RepeatWindow time.Duration
	// Insecure serves, unsigned, every provider that has no secret: its
	// bodies are accepted without any signature check. A provider with a
	// secret is always checked. Without Insecure, New refuses to build a
	// Server with no secret at all (ErrNoSecret).
	Insecure bool

	// BodyLimit is the largest webhook body accepted, in bytes; a longer one
	// is answered 413. Default 4 MiB (Meta sends at most 3 MB).
	//
	// It bounds the events of a body too, with MaxEvents: the events of one
	// body each carry its shared parts (Cloud API metadata and contact, a
	// gateway item's frame), so a body whose events encode to more than
	// messages.MaxEventSize(BodyLimit) + MaxEvents × 2 KiB bytes in all
	// (about 30 MiB at the defaults) is answered 413, naming the limit, before
	// anything is claimed.
	BodyLimit int64
	// BodyMemory bounds the bytes of webhook bodies held at once, across all
	// requests. Before reading its body a request reserves its
	// Content-Length (BodyLimit when it has none) until it is answered; one
	// that cannot reserve it within a second is answered 503 without its body
	// being read, and the provider retries. Since a signature can only be
	// checked on a whole body, this is what keeps unsigned requests from
	// holding memory without bound; a request whose signature header is
	// missing or malformed is refused (401) before it reserves anything.
	// Default 64 MiB (16 bodies at the default BodyLimit); raised to
	// BodyLimit when below it. Body memory plus the process's own working set
	// (about 40 MiB idle, more under load) must stay under the memory limit
	// of the container: the manifests in deployments/ are sized for the
	// default.
	BodyMemory int64
	// MaxEvents is the most events one request may hold. A body holding more
	// is answered 413, naming the limit, before anything is claimed. Meta
	// batches at most 1,000 updates in one notification (Graph API,
	// "Webhooks: Getting Started", Event Notifications,
	// developers.facebook.com/docs/graph-api/webhooks/getting-started); the
	// gateways (WASenderApi, WAHA) send one event per request. Default 5000.
	MaxEvents int
	// LogSampleRate bounds the lines written about refused requests (401,
	// 403, 400, 413) and about duplicates, each kind on its own, in lines
	// per second with bursts of as many; the metrics count every one, and
	// the next line written says how many were held back ("suppressed").
	// Default 10; negative: every line is written.
	LogSampleRate int
	// RedisPolicy says what to do when the dedupe store fails to claim.
	// Default FailOpen.
	RedisPolicy Policy
	// StoreTimeout bounds each call to the dedupe store (Claim, Accept,
	// Release). Default 2 s.
	StoreTimeout time.Duration
	// PublishTimeout bounds the publishes of one request, from the first
	// publish to the last PubAck. Default 5 s.
	PublishTimeout time.Duration

	// ReadTimeout is the most time to read a whole request, body included.
	// Default 15 s.
	ReadTimeout time.Duration
	// ReadHeaderTimeout is the most time to read a request's headers.
	// Default 10 s.
	ReadHeaderTimeout time.Duration
	// WriteTimeout is the most time from the end of the request headers to
	// the end of the answer. It should exceed ReadTimeout + 3 × StoreTimeout
	// (claim, release, accept) + PublishTimeout. Default 30 s.
	WriteTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its next
	// request. Default 120 s.
	IdleTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown of Run: the time given to
	// requests in flight to finish once the context is cancelled. Default 25 s.
	ShutdownTimeout time.Duration

	// Owner names this process in the claims it writes, for operators
	// looking at a pending key. Each claim batch (the claims of the
	// requests committed together) adds a unique suffix. Bytes
	// other than [A-Za-z0-9._-] become '_'. Default "<hostname>-<pid>".
	Owner string
	// Streams names the JetStream streams; the zero value is streams'
	// defaults. Events are published to Streams.Events only.
	Streams streams.Config

	// Logger receives the server's logs. Default: JSON to stderr at Info.
	Logger *slog.Logger
	// Registerer is where the server's metrics are registered. When it is
	// also a prometheus.Gatherer (as *prometheus.Registry is), /metrics serves
	// it; otherwise /metrics serves prometheus.DefaultGatherer. Default: a new
	// registry of the server's own, with the Go and process collectors.
	Registerer prometheus.Registerer
}

// withDefaults returns c with every zero field set to its default, or an
// error when a field is invalid.
func (c Config) withDefaults() (Config, error) {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.AdminAddr == "" {
		c.AdminAddr = DefaultAdminAddr
	}
	if c.MaxEvents < 0 {
		return c, fmt.Errorf("ingest: negative max events %d", c.MaxEvents)
	}
	if c.MaxEvents == 0 {
		c.MaxEvents = DefaultMaxEvents
	}
	if err := checkSecrets(c); err != nil {
		return c, err
	}
	if c.BodyLimit < 0 {
		return c, fmt.Errorf("ingest: negative body limit %d", c.BodyLimit)
	}
	if c.BodyLimit == 0 {
		c.BodyLimit = DefaultBodyLimit
	}
	if c.BodyMemory < 0 {
		return c, fmt.Errorf("ingest: negative body memory %d", c.BodyMemory)
	}
	if c.BodyMemory == 0 {
		c.BodyMemory = DefaultBodyMemory
	}
	// One body of the largest size must always fit.
	c.BodyMemory = max(c.BodyMemory, c.BodyLimit+bytes.MinRead)
	switch c.RedisPolicy {
	case "":
		c.RedisPolicy = FailOpen
	case FailOpen, FailClosed:
	default:
		return c, fmt.Errorf("ingest: unknown redis policy %q (want %q or %q)", c.RedisPolicy, FailOpen, FailClosed)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"store timeout", &c.StoreTimeout, DefaultStoreTimeout},
		{"publish timeout", &c.PublishTimeout, DefaultPublishTimeout},
		{"read timeout", &c.ReadTimeout, DefaultReadTimeout},
		{"read header timeout", &c.ReadHeaderTimeout, DefaultReadHeaderTimeout},
		{"write timeout", &c.WriteTimeout, DefaultWriteTimeout},
		{"idle timeout", &c.IdleTimeout, DefaultIdleTimeout},
		{"shutdown timeout", &c.ShutdownTimeout, DefaultShutdownTimeout},
	} {
		if *d.v < 0 {
			return c, fmt.Errorf("ingest: negative %s %v", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.Owner == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "wagate"
		}
		c.Owner = host + "-" + strconv.Itoa(os.Getpid())
	}
	c.Owner = ownerToken(c.Owner)
	c.Streams = c.Streams.WithDefaults()
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	// Every record bounded (logging.Bounded): no request sets a line's length.
	c.Logger = slog.New(logging.Bounded(c.Logger.Handler()))
	return c, nil
}

// ownerToken reduces s to [A-Za-z0-9._-].
func ownerToken(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			b[i] = '_'
		}
	}
	return string(b)
}

// eventAllowance is what each event may add, in bytes, to the bound on the
// encoded events of one request (see Config.BodyLimit): room for its own
// fields, key and identity however small its item.
const eventAllowance = 2 << 10

// Option changes how New builds a Server.
type Option func(*Server)

// WithPublisher wraps the function that publishes each event's message, for
// example to trace publishes or to inject failures in tests. wrap receives
// the default publisher and returns the one to use; it is called once, by
// New. The returned PublishFunc must be safe for concurrent use.
func WithPublisher(wrap func(next PublishFunc) PublishFunc) Option {
	return func(s *Server) { s.publish, s.wrapped = wrap(s.publish), true }
}

// Server is the HTTP ingress. Build it with New. Its handler serves
// requests concurrently; Run (or Serve) is called once at a time.
type Server struct {
	cfg      Config
	store    dedupe.Store
	js       jetstream.JetStream
	publish  PublishFunc
	served   []served          // the providers served, in route order
	tokenSum [sha256.Size]byte // SHA-256 of VerifyToken
	log      *slog.Logger
	metrics  *metrics
	gatherer prometheus.Gatherer
	echo     *echo.Echo          // webhook routes and /healthz
	admin    *echo.Echo          // /healthz, /readyz, /metrics
	routeSet map[string]struct{} // paths of the registered routes, for metric labels

	bodies     *semaphore.Weighted // Config.BodyMemory: bytes of bodies held now
	eventBytes int64               // the most bytes of encoded events one request may make (see Config.BodyLimit)
	refused    *logging.Sampler    // lines about refused requests (Config.LogSampleRate)
	dupes      *logging.Sampler    // lines about duplicates (Config.LogSampleRate)
	owner      string              // Config.Owner plus a per-process nonce
	seq        atomic.Uint64       // per-request suffix of owner
	draining   atomic.Bool         // set when Run's context is cancelled

	// marks are the Accept calls still running after their request was
	// answered; Serve waits for them before it returns. marking counts them
	// too, for callers that cannot Wait while requests still come in.
	marks   sync.WaitGroup
	marking atomic.Int64

	commits *commits // group commits of claims, publishes and marks
	wrapped bool     // WithPublisher was given: publish through publish
}

// New builds a Server from cfg that claims with store and publishes with js.
// It registers the server's metrics with cfg.Registerer.
//
// It returns ErrNoSecret when no provider has a secret and cfg.Insecure is
// not set, and an error when a field of cfg is invalid, when store or js is nil,
// or when the metrics cannot be registered (for example because they already
// are, by another Server on the same registry).
func New(cfg Config, store dedupe.Store, js jetstream.JetStream, opts ...Option) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("ingest: nil dedupe store")
	}
	if js == nil {
		return nil, errors.New("ingest: nil JetStream")
	}
	var nonce [4]byte
	_, _ = rand.Read(nonce[:]) // never fails (crypto/rand)
	s := &Server{
		cfg:        cfg,
		store:      store,
		js:         js,
		tokenSum:   sha256.Sum256([]byte(cfg.VerifyToken)),
		bodies:     semaphore.NewWeighted(cfg.BodyMemory),
		eventBytes: messages.MaxEventSize(cfg.BodyLimit) + int64(cfg.MaxEvents)*eventAllowance,
		refused:    logging.NewSampler(cfg.LogSampleRate),
		dupes:      logging.NewSampler(cfg.LogSampleRate),
		log:        cfg.Logger,
		owner:      cfg.Owner + "." + hex.EncodeToString(nonce[:]),
	}
	s.served = servedProviders(cfg)
	s.publish = tracePublish(s.publishJetStream)
	s.commits = s.newCommits()

	reg := cfg.Registerer
	if reg == nil {
		r := prometheus.NewRegistry()
		r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg = r
	}
	if g, ok := reg.(prometheus.Gatherer); ok {
		s.gatherer = g
	} else {
		s.gatherer = prometheus.DefaultGatherer
	}
	if s.metrics, err = newMetrics(reg); err != nil {
		return nil, err
	}
	for _, o := range opts {
		o(s)
	}
	for _, p := range s.served {
		if p.verify == nil {
			s.log.Warn("ingest: no secret: webhook signatures are not checked (insecure)", "provider", p.name, "route", p.path)
		}
	}
	if cfg.VerifyToken == "" {
		s.log.Info("ingest: no verify token: every verification handshake is refused")
	}
	s.echo, s.admin = s.routes()
	return s, nil
}

// Handler returns the server's webhook handler (the providers' routes and
// /healthz), for tests and for callers that run their own http.Server. It is
// safe for concurrent use. The streams must exist first (see EnsureStreams).
func (s *Server) Handler() http.Handler { return s.echo }

// AdminHandler returns the server's admin handler: /healthz, /readyz and
// /metrics, for Config.AdminAddr. It is safe for concurrent use.
func (s *Server) AdminHandler() http.Handler { return s.admin }

// ensureTimeout bounds the creation or update of the streams at start-up.
const ensureTimeout = 30 * time.Second

// Run creates or updates the streams (streams.Ensure), listens on
// Config.Addr and Config.AdminAddr and serves until ctx is cancelled, then
// shuts down gracefully (see Serve); the admin address answers until the
// webhook routes are shut down, so that /readyz tells the load balancer. It
// returns an error when the streams cannot be ensured (one wrapping
// streams.ErrConflict when a live stream conflicts with Config.Streams), when
// an address cannot be listened on, or as Serve does.
func (s *Server) Run(ctx context.Context) error {
	if err := s.EnsureStreams(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("ingest: listen: %w", err)
	}
	aln, err := net.Listen("tcp", s.cfg.AdminAddr)
	if err != nil {
		ln.Close()
		return fmt.Errorf("ingest: listen (admin): %w", err)
	}
	actx, stopAdmin := context.WithCancel(context.WithoutCancel(ctx))
	adminDone := make(chan error, 1)
	go func() { adminDone <- s.ServeAdmin(actx, aln) }()
	err = s.Serve(ctx, ln)
	stopAdmin()
	if aerr := <-adminDone; err == nil && aerr != nil {
		err = aerr
	}
	return err
}

// adminShutdown bounds the shutdown of the admin server.
const adminShutdown = 5 * time.Second

// ServeAdmin serves AdminHandler on ln (closing it when done) until ctx is
// cancelled, then shuts down within 5 s. It returns nil after the shutdown,
// or the error that stopped the server.
func (s *Server) ServeAdmin(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.admin,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	s.log.Info("ingest: admin listening", "addr", ln.Addr().String())
	select {
	case err := <-served:
		return fmt.Errorf("ingest: serve admin: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), adminShutdown)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	<-served
	return nil
}

// EnsureStreams creates or updates the streams of Config.Streams, bounded by
// 30 s. It returns an error wrapping streams.ErrConflict when a live stream
// conflicts with the configuration.
func (s *Server) EnsureStreams(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, ensureTimeout)
	defer cancel()
	if err := streams.Ensure(ctx, s.js, s.cfg.Streams); err != nil {
		return fmt.Errorf("ingest: ensure streams: %w", err)
	}
	s.checkMaxPayload()
	return nil
}

// checkMaxPayload warns when the NATS server's max_payload is below
// messages.MaxEventSize(Config.BodyLimit), the largest event of an accepted
// body: an accepted body whose event does not fit is answered 503 on every
// retry of the provider.
func (s *Server) checkMaxPayload() {
	nc := s.js.Conn()
	if nc == nil {
		return
	}
	if mp, need := nc.MaxPayload(), messages.MaxEventSize(s.cfg.BodyLimit); mp > 0 && mp < need {
		s.log.Warn("ingest: NATS max_payload is below the largest event of a body at the body limit: a webhook whose event is larger than max_payload is answered 503 on every retry; raise max_payload (up to 64 MB) or lower the body limit",
			"max_payload", mp, "body_limit", s.cfg.BodyLimit, "largest_event", need)
	}
}

// Serve serves HTTP on ln (closing it when done) until ctx is cancelled.
// Then /readyz answers 503, the listener stops accepting, and the requests in
// flight are given Config.ShutdownTimeout to finish. It returns nil after a
// complete graceful shutdown, an error wrapping context.DeadlineExceeded
// when requests were still in flight at the deadline (their connections are
// then closed), or the error that stopped the server.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.echo,
		ReadTimeout:       s.cfg.ReadTimeout,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.draining.Store(false)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	s.log.Info("ingest: listening", "addr", ln.Addr().String())

	select {
	case err := <-served:
		return fmt.Errorf("ingest: serve: %w", err)
	case <-ctx.Done():
	}
	s.draining.Store(true)
	s.log.Info("ingest: shutting down", "timeout", s.cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		_ = srv.Close()
		err = fmt.Errorf("ingest: shutdown: %w", err)
	}
	if serr := <-served; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = fmt.Errorf("ingest: serve: %w", serr)
	}
	s.marks.Wait() // each bounded by Config.StoreTimeout
	s.commits.claims.Wait()
	s.commits.marks.Wait()
	if err == nil {
		s.log.Info("ingest: stopped")
	}
	return err
}

// requestOwner returns a claim owner unique to one request, and the
// request's id for the logs.
func (s *Server) requestOwner() (owner, id string) {
	id = strconv.FormatUint(s.seq.Add(1), 36)
	return s.owner + "." + id, id
}
