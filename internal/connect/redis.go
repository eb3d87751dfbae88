package connect

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisTLS holds the files of a TLS connection to Redis beyond what a
// rediss:// URL says: a CA bundle to verify the servers with (empty: the
// system roots) and a client certificate with its key (both or neither, for
// servers that ask for one, as redis-server does with tls-auth-clients).
// All are PEM files.
type RedisTLS struct {
	CA, Cert, Key string
}

// Redis URL forms, told apart the way go-redis's NewUniversalClient tells
// its options apart: a master_name parameter means Sentinel, one or more
// addr parameters mean Cluster, else one node.
const redisForms = "redis[s]://[user:password@]host:port[/db] (one node), " +
	"redis[s]://[user:password@]sentinel:port[/db]?master_name=NAME[&addr=sentinel2:port…][&password=MASTERPASSWORD] (Sentinel), " +
	"redis[s]://[user:password@]node:port?addr=node2:port[&addr=…] (Cluster)"

// RedisClient returns a client for rawURL, which is one of three URL forms
// read by go-redis's own parsers:
//
//   - one node: redis://[user:password@]host:port[/db] (redis.ParseURL);
//   - Sentinel: redis://[user:password@]sentinel1:26379[/db]?master_name=mymaster&addr=sentinel2:26379&password=PW
//     (redis.ParseFailoverURL): the host and every addr are Sentinels, the
//     user info is the Sentinels' own credentials and the username and
//     password parameters those of the master;
//   - Cluster: redis://[user:password@]node1:6379?addr=node2:6379&addr=node3:6379
//     (redis.ParseClusterURL): the host and every addr are seed nodes.
//
// A master_name parameter selects Sentinel; else one or more addr parameters
// select Cluster; else it is one node. Every form takes go-redis's other
// query parameters (dial_timeout, pool_size, …) and rediss:// for TLS, which
// tls completes with a CA and a client certificate; tls files with a plain
// redis:// URL are an error (wagate never falls back to plaintext silently).
// name is the setting's name for errors (WAGATE_REDIS_URL); errors never
// hold a password. go-redis connects lazily; use Ping to check the servers.
func RedisClient(name, rawURL string, tlsFiles RedisTLS) (redis.UniversalClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error quotes the whole URL, password included.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("connect: %s is not a URL (%v); want %s", name, err, redisForms)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("connect: %s=%s: scheme %q; want %s", name, RedactURL(rawURL), u.Scheme, redisForms)
	}
	q := u.Query()
	bad := func(err error) error {
		return fmt.Errorf("connect: %s=%s: %v; want %s", name, RedactURL(rawURL), err, redisForms)
	}
	switch {
	case q.Has("master_name"):
		opts, err := redis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, bad(err)
		}
		redisFailoverDefaults(opts)
		if err := redisTLS(name, opts.TLSConfig, tlsFiles); err != nil {
			return nil, err
		}
		return redis.NewFailoverClient(opts), nil
	case q.Has("addr"):
		opts, err := redis.ParseClusterURL(rawURL)
		if err != nil {
			return nil, bad(err)
		}
		redisClusterDefaults(opts)
		if err := redisTLS(name, opts.TLSConfig, tlsFiles); err != nil {
			return nil, err
		}
		return redis.NewClusterClient(opts), nil
	default:
		opts, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, bad(err)
		}
		redisDefaults(opts)
		if err := redisTLS(name, opts.TLSConfig, tlsFiles); err != nil {
			return nil, err
		}
		return redis.NewClient(opts), nil
	}
}

// redisTLS completes cfg, go-redis's TLS configuration from a rediss:// URL
// (nil for redis://), with files.
func redisTLS(name string, cfg *tls.Config, files RedisTLS) error {
	if files == (RedisTLS{}) {
		return nil
	}
	if cfg == nil {
		return fmt.Errorf("connect: %s_TLS_* set but %s is a plain redis:// URL; use rediss:// for TLS", strings.TrimSuffix(name, "_URL"), name)
	}
	prefix := strings.TrimSuffix(name, "_URL") + "_TLS_"
	if files.CA != "" {
		pool, err := certPool(prefix+"CA", files.CA)
		if err != nil {
			return err
		}
		cfg.RootCAs = pool
	}
	if (files.Cert == "") != (files.Key == "") {
		return fmt.Errorf("connect: %sCERT and %sKEY go together: set both or neither", prefix, prefix)
	}
	if files.Cert != "" {
		cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
		if err != nil {
			return fmt.Errorf("connect: %sCERT=%s, %sKEY=%s: %w", prefix, files.Cert, prefix, files.Key, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	return nil
}

// certPool reads a PEM CA bundle; setting names the variable for errors.
func certPool(setting, file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("connect: %s: %w", setting, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("connect: %s=%s: no PEM certificate in it", setting, file)
	}
	return pool, nil
}

// wagate's defaults over go-redis's, for every form. A Redis that is down
// must fail a claim fast, so that the ingress's fail-open or fail-closed
// policy answers within StoreTimeout instead of the client retrying dials
// (default 5 dial retries per command). A Redis that accepts connections but
// does not answer (stopped, swapping, behind a partition that drops packets)
// must not hold a claim past the caller's deadline (the ingress's
// StoreTimeout, the readiness probe's 2 s): context deadlines apply to the
// socket too, not only the client's own 3 s read and write timeouts.
const (
	redisClientName    = "wagate"
	redisDialerRetries = 1
	redisDialTimeout   = time.Second
)

func redisDefaults(o *redis.Options) {
	o.ClientName = redisClientName
	if o.DialerRetries == 0 {
		o.DialerRetries = redisDialerRetries
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = redisDialTimeout
	}
	o.ContextTimeoutEnabled = true
}

func redisFailoverDefaults(o *redis.FailoverOptions) {
	o.ClientName = redisClientName
	if o.DialerRetries == 0 {
		o.DialerRetries = redisDialerRetries
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = redisDialTimeout
	}
	o.ContextTimeoutEnabled = true
}

// redisClusterReload is how stale a Cluster client's slot map may get.
// go-redis reloads it at once on a MOVED or ASK answer, but not when a
// master stops answering: after an unplanned failover its default (60 s)
// kept sending that master's keys to the dead node for a minute (measured in
// cmd's TestEndToEndRedisCluster). The reload is one CLUSTER SLOTS per
// interval, only while commands flow.
const redisClusterReload = time.Second

func redisClusterDefaults(o *redis.ClusterOptions) {
	o.ClientName = redisClientName
	if o.ClusterStateReloadInterval == 0 {
		o.ClusterStateReloadInterval = redisClusterReload
	}
	if o.DialerRetries == 0 {
		o.DialerRetries = redisDialerRetries
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = redisDialTimeout
	}
	o.ContextTimeoutEnabled = true
}
