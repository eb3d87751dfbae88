// Package config reads wagate's configuration from WAGATE_* environment
// variables for the three commands (ingress, worker, wagate). Every variable,
// its default and its unit is listed in the table of deployments/CONFIGURATION.md;
// the struct tags below are the single source of those defaults, except
// where a tag repeats a package's own default (the dedupe horizon is
// dedupe.DefaultHorizon, the shutdown timeout ingest's and worker's
// DefaultShutdownTimeout): defaults_test.go checks those agree.
package config

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// MaxWorkerHeld bounds WAGATE_WORKER_CONCURRENCY + WAGATE_WORKER_PREFETCH:
// worker.MaxHeld, the most messages a worker sizes its queues for. It is a
// copy, held equal by a test: worker's tests import internal/connect, which
// imports this package, so this package cannot import worker.
const MaxWorkerHeld = 10000

// Config is every setting of wagate. Durations use Go syntax ("30s", "168h").
type Config struct {
	// Connections.
	RedisURL string `env:"REDIS_URL" envDefault:"redis://127.0.0.1:6379/0"`
	NATSURL  string `env:"NATS_URL" envDefault:"nats://127.0.0.1:4222"`
	// Credentials and TLS beyond the URLs, each a file path (empty: unused);
	// see connect.RedisClient and connect.NATSAuth.
	RedisTLSCA   string `env:"REDIS_TLS_CA"`   // PEM CA bundle (rediss:// only)
	RedisTLSCert string `env:"REDIS_TLS_CERT"` // PEM client certificate, with RedisTLSKey
	RedisTLSKey  string `env:"REDIS_TLS_KEY"`
	NATSCreds    string `env:"NATS_CREDS"`    // credentials file: user JWT and NKey seed
	NATSNKey     string `env:"NATS_NKEY"`     // NKey seed file (not with NATSCreds)
	NATSTLSCA    string `env:"NATS_TLS_CA"`   // PEM CA bundle; any NATS_TLS_* requires TLS
	NATSTLSCert  string `env:"NATS_TLS_CERT"` // PEM client certificate, with NATSTLSKey
	NATSTLSKey   string `env:"NATS_TLS_KEY"`

	// Dedupe.
	DedupeBackend string        `env:"DEDUPE_BACKEND" envDefault:"redis"` // redis | nats | postgres | dynamodb
	DedupeHorizon time.Duration `env:"DEDUPE_HORIZON" envDefault:"168h"`
	KVBucket      string        `env:"KV_BUCKET" envDefault:"wagate_dedupe"`
	// PostgreSQL backend: a libpq URL or key=value string (pgx), and the
	// table ("name" or "schema.name").
	PostgresURL   string `env:"POSTGRES_URL"`
	PostgresTable string `env:"POSTGRES_TABLE" envDefault:"wagate_dedupe"`
	// DynamoDB backend: the table, and an endpoint URL for a
	// DynamoDB-compatible server ("" means AWS's). Region and credentials
	// come from the SDK's standard AWS_* variables and files.
	DynamoDBTable    string `env:"DYNAMODB_TABLE" envDefault:"wagate_dedupe"`
	DynamoDBEndpoint string `env:"DYNAMODB_ENDPOINT"`

	// Ingress.
	HTTPAddr         string        `env:"HTTP_ADDR" envDefault:":8080"`
	AdminAddr        string        `env:"ADMIN_ADDR" envDefault:":8082"` // ingress /healthz, /readyz, /metrics
	MetaAppSecrets   []string      `env:"META_APP_SECRET" envSeparator:","`
	MetaVerifyToken  string        `env:"META_VERIFY_TOKEN"`
	WASenderSecrets  []string      `env:"WASENDER_SECRET" envSeparator:","` // WASenderApi webhook secrets
	WAHAKeys         []string      `env:"WAHA_HMAC_KEY" envSeparator:","`   // WAHA webhook HMAC keys
	EvolutionTokens  []string      `env:"EVOLUTION_TOKEN" envSeparator:","` // Evolution API webhook bearer tokens
	RepeatWindow     time.Duration `env:"REPEAT_WINDOW" envDefault:"1h"`    // dedupe window of transient events
	InsecureNoSecret bool          `env:"INSECURE_NO_SIGNATURE" envDefault:"false"`
	BodyLimit        int64         `env:"BODY_LIMIT" envDefault:"4194304"`
	BodyMemory       int64         `env:"BODY_MEMORY" envDefault:"67108864"`
	MaxEvents        int           `env:"MAX_EVENTS" envDefault:"5000"`
	LogSampleRate    int           `env:"LOG_SAMPLE_RATE" envDefault:"10"`     // refusal and duplicate lines per second; -1: all
	RedisPolicy      string        `env:"REDIS_POLICY" envDefault:"fail-open"` // fail-open | fail-closed
	PublishTimeout   time.Duration `env:"PUBLISH_TIMEOUT" envDefault:"5s"`
	ShutdownTimeout  time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"25s"`

	// Worker.
	Handler           string        `env:"HANDLER"` // forward | log; required by the worker, no default
	ForwardURL        string        `env:"FORWARD_URL"`
	ForwardTimeout    time.Duration `env:"FORWARD_TIMEOUT" envDefault:"5m"`
	ForwardFormat     string        `env:"FORWARD_FORMAT" envDefault:"event"` // event | provider
	ForwardSecret     string        `env:"FORWARD_SECRET"`                    // signs provider-format forwards instead of the providers' secrets
	WorkerConcurrency int           `env:"WORKER_CONCURRENCY" envDefault:"8"`
	WorkerPrefetch    int           `env:"WORKER_PREFETCH" envDefault:"0"`
	Order             string        `env:"ORDER" envDefault:"none"` // none | conversation
	WorkerHTTPAddr    string        `env:"WORKER_HTTP_ADDR" envDefault:":8081"`
	LockTTL           time.Duration `env:"LOCK_TTL" envDefault:"30s"`

	// JetStream.
	EventsStream    string        `env:"EVENTS_STREAM" envDefault:"WAGATE_EVENTS"`
	DLQStream       string        `env:"DLQ_STREAM" envDefault:"WAGATE_DLQ"`
	Consumer        string        `env:"CONSUMER" envDefault:"wagate-workers"`
	StreamReplicas  int           `env:"STREAM_REPLICAS" envDefault:"1"`
	StreamMaxAge    time.Duration `env:"STREAM_MAX_AGE" envDefault:"168h"`
	DuplicateWindow time.Duration `env:"DUPLICATE_WINDOW" envDefault:"2m"`
	AckWait         time.Duration `env:"ACK_WAIT" envDefault:"30s"`
	MaxDeliver      int           `env:"MAX_DELIVER" envDefault:"10"`
	MaxAckPending   int           `env:"MAX_ACK_PENDING" envDefault:"1000"`
	// BackOff is the workers' redelivery schedule after a failed delivery,
	// comma-separated ("1s,5s,15s"; the last step repeats). Empty means
	// streams.DefaultBackOff.
	BackOff []time.Duration `env:"BACKOFF" envSeparator:","`

	// Logs.
	LogLevel  string `env:"LOG_LEVEL" envDefault:"info"`  // debug | info | warn | error
	LogFormat string `env:"LOG_FORMAT" envDefault:"json"` // json | text

	// Embedded mode (wagate dev).
	DataDir string `env:"DATA_DIR" envDefault:".wagate"`

	// Tracing (OpenTelemetry). OTel is "" (the default: "otlp" when
	// OTLPEndpoint is set, else "off"), "off", "otlp" (OTLP over HTTP,
	// configured by the standard OTEL_EXPORTER_OTLP_* variables) or "stdout"
	// (spans as JSON lines on stdout, for a first look).
	OTel string `env:"OTEL"`
	// OTLPEndpoint is the standard OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else
	// OTEL_EXPORTER_OTLP_ENDPOINT (not WAGATE_-prefixed): setting either turns
	// tracing on. The exporter reads these variables itself.
	OTLPEndpoint string
}

// OTLP environment variables (OpenTelemetry's own names), read by Load.
const (
	EnvOTLPEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvOTLPTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
)

// TracingMode returns the tracing exporter in effect: "off", "otlp" or
// "stdout" (see OTel).
func (c Config) TracingMode() string {
	switch {
	case c.OTel != "":
		return c.OTel
	case c.OTLPEndpoint != "":
		return "otlp"
	}
	return "off"
}

// Prefix is the prefix of every variable.
const Prefix = "WAGATE_"

// Load reads the configuration from the environment and validates it. It
// returns an error naming the variable at fault.
func Load() (Config, error) {
	var c Config
	if err := env.ParseWithOptions(&c, env.Options{Prefix: Prefix}); err != nil {
		return Config{}, explain(err)
	}
	c.OTLPEndpoint = os.Getenv(EnvOTLPTracesEndpoint)
	if c.OTLPEndpoint == "" {
		c.OTLPEndpoint = os.Getenv(EnvOTLPEndpoint)
	}
	return c, c.Validate()
}

// Validate checks values that have a fixed set of choices or a range.
func (c Config) Validate() error {
	var errs []string
	oneOf := func(name, v string, choices ...string) {
		for _, ch := range choices {
			if v == ch {
				return
			}
		}
		errs = append(errs, fmt.Sprintf("%s = %q: want one of %s", Setting(name), v, strings.Join(choices, ", ")))
	}
	oneOf("DEDUPE_BACKEND", c.DedupeBackend, "redis", "nats", "postgres", "dynamodb")
	if c.DedupeBackend == "postgres" && c.PostgresURL == "" {
		errs = append(errs, Prefix+"DEDUPE_BACKEND=postgres needs "+Prefix+"POSTGRES_URL")
	}
	oneOf("REDIS_POLICY", c.RedisPolicy, "fail-open", "fail-closed")
	if c.Handler != "" { // required by the worker only: RequireHandler
		oneOf("HANDLER", c.Handler, "forward", "log")
	}
	oneOf("FORWARD_FORMAT", c.ForwardFormat, "event", "provider")
	oneOf("ORDER", c.Order, "none", "conversation")
	oneOf("LOG_LEVEL", c.LogLevel, "debug", "info", "warn", "error")
	oneOf("LOG_FORMAT", c.LogFormat, "json", "text")
	oneOf("OTEL", c.OTel, "", "off", "otlp", "stdout")
	if c.Handler == "forward" && c.ForwardURL == "" {
		errs = append(errs, Setting("HANDLER")+" = forward needs "+Setting("FORWARD_URL"))
	}
	if c.Handler == "forward" && c.ForwardFormat == "provider" && !c.InsecureNoSecret &&
		strings.TrimSpace(c.ForwardSecret) == "" && len(c.Secrets())+len(c.WASenderSecretList())+len(c.WAHAKeyList())+len(c.EvolutionTokenList()) == 0 {
		errs = append(errs, Prefix+"FORWARD_FORMAT=provider needs a secret to sign with: "+Prefix+"FORWARD_SECRET or a provider's ("+
			Prefix+"META_APP_SECRET, "+Prefix+"WASENDER_SECRET, "+Prefix+"WAHA_HMAC_KEY, "+Prefix+"EVOLUTION_TOKEN), or "+Prefix+"INSECURE_NO_SIGNATURE=true")
	}
	positive := func(name string, v int64) {
		if v <= 0 {
			errs = append(errs, fmt.Sprintf("%s = %d: want a number > 0", Setting(name), v))
		}
	}
	positiveDuration := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Sprintf("%s = %s: want a duration > 0", Setting(name), d))
		}
	}
	positiveDuration("DEDUPE_HORIZON", c.DedupeHorizon)
	positive("BODY_LIMIT", c.BodyLimit)
	positive("BODY_MEMORY", c.BodyMemory)
	positive("MAX_EVENTS", int64(c.MaxEvents))
	positive("WORKER_CONCURRENCY", int64(c.WorkerConcurrency))
	if c.WorkerPrefetch < 0 {
		errs = append(errs, fmt.Sprintf("%s = %d: want a number ≥ 0", Setting("WORKER_PREFETCH"), c.WorkerPrefetch))
	}
	if c.WorkerConcurrency > MaxWorkerHeld || c.WorkerPrefetch > MaxWorkerHeld || c.WorkerConcurrency+c.WorkerPrefetch > MaxWorkerHeld {
		errs = append(errs, fmt.Sprintf("%s = %d and %s = %d: want at most %d together",
			Setting("WORKER_CONCURRENCY"), c.WorkerConcurrency, Setting("WORKER_PREFETCH"), c.WorkerPrefetch, MaxWorkerHeld))
	}
	positiveDuration("LOCK_TTL", c.LockTTL)
	positiveDuration("ACK_WAIT", c.AckWait)
	positive("MAX_DELIVER", int64(c.MaxDeliver))
	positive("STREAM_REPLICAS", int64(c.StreamReplicas))
	for _, d := range c.BackOff {
		positiveDuration("BACKOFF", d)
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %s", strings.Join(errs, "; "))
	}
	return nil
}

// Secrets returns the configured Meta App Secrets, trimmed, empty ones dropped.
func (c Config) Secrets() []string { return trimmed(c.MetaAppSecrets) }

// WASenderSecretList returns the configured WASenderApi webhook secrets,
// trimmed, empty ones dropped.
func (c Config) WASenderSecretList() []string { return trimmed(c.WASenderSecrets) }

// WAHAKeyList returns the configured WAHA webhook HMAC keys, trimmed, empty
// ones dropped.
func (c Config) WAHAKeyList() []string { return trimmed(c.WAHAKeys) }

// EvolutionTokenList returns the configured Evolution API webhook tokens,
// trimmed, empty ones dropped.
func (c Config) EvolutionTokenList() []string { return trimmed(c.EvolutionTokens) }

// trimmed returns list with each value trimmed and empty ones dropped.
func trimmed(list []string) []string {
	var out []string
	for _, s := range list {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
