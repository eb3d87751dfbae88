package connect

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wagate/wagate/internal/testenv"
)

func TestRedisClientForms(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want string // the client's type
	}{
		{"redis://127.0.0.1:6379/0", "*redis.Client"},
		{"redis://:pw@127.0.0.1:6379/2?dial_timeout=2s&pool_size=20", "*redis.Client"},
		{"rediss://user:pw@redis.example:6380/0", "*redis.Client"},
		{"redis://127.0.0.1:26379/0?master_name=mymaster&addr=127.0.0.1:26380&password=pw", "*redis.Client"},
		{"redis://127.0.0.1:7000?addr=127.0.0.1:7001&addr=127.0.0.1:7002", "*redis.ClusterClient"},
		{"rediss://user:pw@127.0.0.1:7000?addr=127.0.0.1:7001", "*redis.ClusterClient"},
	} {
		c, err := RedisClient("WAGATE_REDIS_URL", tc.url, RedisTLS{})
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if got := typeName(c); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.url, got, tc.want)
		}
		checkDefaults(t, tc.url, c)
		_ = c.Close()
	}
}

// checkDefaults checks wagate's defaults over go-redis's on c.
func checkDefaults(t *testing.T, url string, c redis.UniversalClient) {
	t.Helper()
	type defaults struct {
		name          string
		dialerRetries int
		dialTimeout   time.Duration
		ctxTimeout    bool
	}
	var got defaults
	switch c := c.(type) {
	case *redis.Client:
		o := c.Options()
		got = defaults{o.ClientName, o.DialerRetries, o.DialTimeout, o.ContextTimeoutEnabled}
	case *redis.ClusterClient:
		o := c.Options()
		got = defaults{o.ClientName, o.DialerRetries, o.DialTimeout, o.ContextTimeoutEnabled}
		// go-redis's 60 s kept a dead master's keys routed to it for a
		// minute after an unplanned failover.
		if o.ClusterStateReloadInterval != time.Second {
			t.Errorf("%s: ClusterStateReloadInterval %v, want 1s", url, o.ClusterStateReloadInterval)
		}
	}
	want := defaults{"wagate", 1, time.Second, true}
	if strings.Contains(url, "dial_timeout=2s") {
		want.dialTimeout = 2 * time.Second
	}
	if got != want {
		t.Errorf("%s: defaults %+v, want %+v", url, got, want)
	}
}

func typeName(c redis.UniversalClient) string {
	switch c.(type) {
	case *redis.Client:
		return "*redis.Client"
	case *redis.ClusterClient:
		return "*redis.ClusterClient"
	}
	return "other"
}

// TestRedisClientErrors checks that every bad URL or TLS setting is an
// error naming the variable and the accepted forms, never the password.
func TestRedisClientErrors(t *testing.T) {
	f := testenv.MakeTLSFiles(t)
	for _, tc := range []struct {
		url   string
		tls   RedisTLS
		wants []string
	}{
		{"http://u:s3cret@host:6379", RedisTLS{}, []string{"WAGATE_REDIS_URL", `scheme "http"`, "master_name=", "addr="}},
		{"redis://u:s3cret@host:6379/0?bogus=1", RedisTLS{}, []string{"WAGATE_REDIS_URL", "bogus"}},
		{"redis://u:s3cret@host:26379/0?master_name=m&password=s3cret&bogus=1", RedisTLS{}, []string{"WAGATE_REDIS_URL", "bogus"}},
		{"redis://u:s3cret@host:7000?addr=host:7001&bogus=1", RedisTLS{}, []string{"WAGATE_REDIS_URL", "bogus"}},
		{"redis://u:s3cret@host:7000?addr=nocolon", RedisTLS{}, []string{"WAGATE_REDIS_URL", "nocolon"}},
		{"redis://u:s3cret@ho st:6379", RedisTLS{}, []string{"WAGATE_REDIS_URL is not a URL"}},
		{"redis://u:s3cret@host:6379", RedisTLS{CA: f.CA}, []string{"WAGATE_REDIS_TLS_*", "rediss://"}},
		{"rediss://u:s3cret@host:6379", RedisTLS{CA: "/nonexistent/ca.pem"}, []string{"WAGATE_REDIS_TLS_CA", "/nonexistent/ca.pem"}},
		{"rediss://u:s3cret@host:6379", RedisTLS{CA: f.ClientKey}, []string{"WAGATE_REDIS_TLS_CA", "no PEM certificate"}},
		{"rediss://u:s3cret@host:6379", RedisTLS{Cert: f.ClientCert}, []string{"WAGATE_REDIS_TLS_CERT", "WAGATE_REDIS_TLS_KEY", "both"}},
		{"rediss://u:s3cret@host:6379", RedisTLS{Cert: f.ClientCert, Key: f.ServerCert}, []string{"WAGATE_REDIS_TLS_CERT", "WAGATE_REDIS_TLS_KEY"}},
	} {
		c, err := RedisClient("WAGATE_REDIS_URL", tc.url, tc.tls)
		if err == nil {
			_ = c.Close()
			t.Errorf("%s %+v: no error", tc.url, tc.tls)
			continue
		}
		msg := err.Error()
		for _, w := range tc.wants {
			if !strings.Contains(msg, w) {
				t.Errorf("%s %+v: error %q lacks %q", tc.url, tc.tls, msg, w)
			}
		}
		if strings.Contains(msg, "s3cret") {
			t.Errorf("%s: error %q shows the password", tc.url, msg)
		}
	}
}

// TestRedisTLS connects to a real redis-server's --tls-port that requires a
// client certificate: with the CA and the certificate it works; without the
// certificate, or with a CA that did not sign the server's, it does not.
func TestRedisTLS(t *testing.T) {
	f := testenv.MakeTLSFiles(t)
	_, url := testenv.StartRedisTLS(t, f)
	ping := func(files RedisTLS) error {
		c, err := RedisClient("WAGATE_REDIS_URL", url, files)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return c.Ping(ctx).Err()
	}
	if err := ping(RedisTLS{CA: f.CA, Cert: f.ClientCert, Key: f.ClientKey}); err != nil {
		t.Fatalf("PING over TLS with CA and client certificate: %v", err)
	}
	if err := ping(RedisTLS{CA: f.CA}); err == nil {
		t.Error("PING without a client certificate succeeded; the server requires one")
	}
	if err := ping(RedisTLS{CA: f.OtherCA, Cert: f.ClientCert, Key: f.ClientKey}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("PING with the wrong CA: %v, want a certificate error", err)
	}
	// The plain redis:// URL of a TLS port is refused when TLS files are set.
	if _, err := RedisClient("WAGATE_REDIS_URL", strings.Replace(url, "rediss://", "redis://", 1), RedisTLS{CA: f.CA}); err == nil {
		t.Error("redis:// with WAGATE_REDIS_TLS_CA: no error")
	}
}

// TestRedactURLQueryPassword checks that a Sentinel URL's master password,
// a query parameter, is hidden like the one before '@'.
func TestRedactURLQueryPassword(t *testing.T) {
	got := RedactURL("redis://u:s3cret@sentinel1:26379/0?master_name=m&addr=sentinel2:26379&password=m4ster&sentinel_password=t0psecret")
	for _, secret := range []string{"s3cret", "m4ster", "t0psecret"} {
		if strings.Contains(got, secret) {
			t.Errorf("RedactURL: %q shows %q", got, secret)
		}
	}
	for _, kept := range []string{"sentinel1:26379", "master_name="} {
		if !strings.Contains(got, kept) {
			t.Errorf("RedactURL: %q lacks %q", got, kept)
		}
	}
}

// TestRedisClusterTLS writes and reads keys of every master of a real Redis
// Cluster whose nodes speak only TLS with client certificates (on the
// cluster bus too): the client follows the slot map to the nodes' TLS ports
// with the CA and certificate of WAGATE_REDIS_TLS_*; without the client
// certificate it cannot.
func TestRedisClusterTLS(t *testing.T) {
	f := testenv.MakeTLSFiles(t)
	cluster := testenv.StartRedisClusterTLS(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := RedisClient("WAGATE_REDIS_URL", cluster.URL(), RedisTLS{CA: f.CA, Cert: f.ClientCert, Key: f.ClientKey})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cc, ok := c.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("%s: got a %T, want a cluster client", cluster.URL(), c)
	}
	// Keys until every master holds one.
	masters := map[string]bool{}
	for i := 0; len(masters) < 3; i++ {
		if i > 1000 {
			t.Fatalf("1000 keys reached %d masters", len(masters))
		}
		key := fmt.Sprintf("k%d", i)
		if err := cc.Set(ctx, key, i, time.Minute).Err(); err != nil {
			t.Fatalf("SET %s over TLS: %v", key, err)
		}
		if got, err := cc.Get(ctx, key).Int(); err != nil || got != i {
			t.Fatalf("GET %s over TLS: %d, %v", key, got, err)
		}
		node, err := cc.MasterForKey(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		masters[node.String()] = true
	}

	bare, err := RedisClient("WAGATE_REDIS_URL", cluster.URL(), RedisTLS{CA: f.CA})
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	if err := bare.Set(ctx, "k0", 0, time.Minute).Err(); err == nil {
		t.Error("SET without a client certificate succeeded; the nodes require one")
	}
}
