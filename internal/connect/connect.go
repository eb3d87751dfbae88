// Package connect opens the connections every wagate command needs, from
// its configuration: Redis, NATS with JetStream, the dedupe store and the
// logger.
package connect

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/internal/logging"
	"github.com/wagate/wagate/internal/redact"
	"github.com/wagate/wagate/messages/streams"
)

// Logger returns the structured logger the configuration asks for, writing
// to stderr, each record bounded in size (logging.Bounded). go-redis's own
// log lines (dial failures) and the standard library's log package (what
// net/http writes on its own) go through it too, at level Warn, and it
// becomes slog's default: every line on stderr is one record in the
// configured format.
func Logger(c config.Config) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	if c.LogFormat == "text" {
		h = slog.NewTextHandler(os.Stderr, opts)
	} else {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	l := slog.New(logging.Bounded(h))
	redis.SetLogger(redisLogger{l})
	logging.Std(l)
	return l
}

// redisLogger writes go-redis's log lines to a slog.Logger.
type redisLogger struct{ l *slog.Logger }

// Printf logs one go-redis line at level Warn.
func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.WarnContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// Redis returns a client for one node at url (redis:// or rediss://), with
// wagate's defaults (see RedisClient for every form). go-redis connects
// lazily; use Ping to check it.
func Redis(url string) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("connect: redis url: %w", err)
	}
	redisDefaults(opts)
	return redis.NewClient(opts), nil
}

// NATS connects to url and returns the connection and its JetStream
// context. It reconnects forever after the first connection; the first
// connection is retried until ctx is done. extra options (NATSAuth's)
// come after wagate's own.
func NATS(ctx context.Context, url, name string, log *slog.Logger, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		// No reconnect buffer: while disconnected a publish fails at once
		// (the ingress answers 503) instead of landing later, after its
		// caller gave up on it.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}
	nc, err := nats.Connect(url, append(opts, extra...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect: nats: %w", err)
	}
	for !nc.IsConnected() {
		select {
		case <-ctx.Done():
			nc.Close()
			return nil, nil, fmt.Errorf("connect: nats %s: %w", RedactURL(url), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("connect: jetstream: %w", err)
	}
	return nc, js, nil
}

// RedactURL returns the server URLs of s (a comma-separated list, as NATS
// takes them), each redacted by redact.URL (credentials, a lone token as in
// nats://<token>@host, and query values replaced by "xxxxx"), for errors and
// logs.
func RedactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = redact.URL(p)
	}
	return strings.Join(parts, ",")
}

// Streams returns the stream configuration from c.
func Streams(c config.Config) streams.Config {
	return streams.Config{
		Events:          c.EventsStream,
		DLQ:             c.DLQStream,
		Consumer:        c.Consumer,
		Replicas:        c.StreamReplicas,
		MaxAge:          c.StreamMaxAge,
		DuplicateWindow: c.DuplicateWindow,
		AckWait:         c.AckWait,
		MaxDeliver:      c.MaxDeliver,
		MaxAckPending:   c.MaxAckPending,
		BackOff:         c.BackOff,
	}
}

// Store returns the dedupe store c asks for: Redis at c.RedisURL,
// JetStream key-value on js, PostgreSQL at c.PostgresURL or DynamoDB. For
// PostgreSQL and DynamoDB it checks the table (CheckSchema, CheckTable): a
// missing or conflicting one is an error that says to run `wagate dedupe
// init`. The returned close function releases it.
func Store(ctx context.Context, c config.Config, js jetstream.JetStream) (dedupe.Store, func(), error) {
	switch c.DedupeBackend {
	case "nats":
		kv, err := dedupe.NewKV(ctx, js, dedupe.KVOptions{Bucket: c.KVBucket, Horizon: c.DedupeHorizon, Replicas: c.StreamReplicas})
		if err != nil {
			return nil, nil, err
		}
		return kv, func() {}, nil
	case "postgres":
		p, closeStore, err := Postgres(ctx, c)
		if err != nil {
			return nil, nil, err
		}
		if err := p.CheckSchema(ctx); err != nil {
			closeStore()
			return nil, nil, err
		}
		return p, closeStore, nil
	case "dynamodb":
		d, err := DynamoDB(ctx, c)
		if err != nil {
			return nil, nil, err
		}
		if err := d.CheckTable(ctx); err != nil {
			return nil, nil, err
		}
		return d, func() {}, nil
	default:
		rc, err := RedisClient(config.Prefix+"REDIS_URL", c.RedisURL, RedisTLS{CA: c.RedisTLSCA, Cert: c.RedisTLSCert, Key: c.RedisTLSKey})
		if err != nil {
			return nil, nil, err
		}
		return dedupe.NewRedis(rc, dedupe.RedisOptions{Horizon: c.DedupeHorizon}), func() { _ = rc.Close() }, nil
	}
}

// Postgres returns the PostgreSQL store of c, without checking its table,
// and the function that closes its pool. The pool connects lazily.
func Postgres(ctx context.Context, c config.Config) (*dedupe.Postgres, func(), error) {
	pc, err := pgxpool.ParseConfig(c.PostgresURL)
	if err != nil {
		// pgx's parse errors may quote the URL, password included.
		return nil, nil, fmt.Errorf("connect: %sPOSTGRES_URL is not a valid PostgreSQL URL or key=value string", config.Prefix)
	}
	pc.ConnConfig.RuntimeParams["application_name"] = "wagate"
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, nil, fmt.Errorf("connect: postgres: %w", err)
	}
	p, err := dedupe.NewPostgres(pool, dedupe.PostgresOptions{Table: c.PostgresTable, Horizon: c.DedupeHorizon})
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return p, pool.Close, nil
}

// DynamoDB returns the DynamoDB store of c, without checking its table.
// Region and credentials come from the AWS SDK's default chain (AWS_REGION,
// AWS_ACCESS_KEY_ID, AWS_PROFILE, the instance or task role, …);
// c.DynamoDBEndpoint, when set, is the endpoint URL (a DynamoDB-compatible
// server such as DynamoDB Local or dynalite).
func DynamoDB(ctx context.Context, c config.Config) (*dedupe.DynamoDB, error) {
	ac, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect: aws config: %w", err)
	}
	client := dynamodb.NewFromConfig(ac, func(o *dynamodb.Options) {
		if c.DynamoDBEndpoint != "" {
			o.BaseEndpoint = aws.String(c.DynamoDBEndpoint)
		}
	})
	return dedupe.NewDynamoDB(client, dedupe.DynamoDBOptions{Table: c.DynamoDBTable, Horizon: c.DedupeHorizon}), nil
}

// StartCleanup runs the background deletion of expired rows when store is
// the PostgreSQL backend (dedupe.Postgres.RunCleanup), logging its errors
// at level Warn, and returns what stops it and waits for it. For other
// stores it does nothing: Redis, JetStream and DynamoDB expire keys
// themselves.
func StartCleanup(store dedupe.Store, log *slog.Logger) (stop func()) {
	p, ok := store.(*dedupe.Postgres)
	if !ok {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.RunCleanup(ctx, func(err error) { log.Warn("dedupe cleanup failed", "err", err) })
	}()
	return func() { cancel(); <-done }
}

// OpenStore is Store for tools that inspect or act on a running deployment
// (wagate key, replay, dlq): with the nats backend it opens the existing
// buckets without creating or changing them (dedupe.OpenKV), so that a
// shell's configuration never rewrites the live horizon or replicas.
func OpenStore(ctx context.Context, c config.Config, js jetstream.JetStream) (dedupe.Store, func(), error) {
	if c.DedupeBackend == "nats" {
		kv, err := dedupe.OpenKV(ctx, js, dedupe.KVOptions{Bucket: c.KVBucket})
		if err != nil {
			return nil, nil, err
		}
		return kv, func() {}, nil
	}
	return Store(ctx, c, js)
}
