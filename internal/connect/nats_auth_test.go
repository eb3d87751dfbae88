package connect

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/internal/testenv"
)

// publish connects to url with c's credentials and TLS (NATSAuth), creates
// a stream and publishes to it, waiting for the PubAck; it returns the
// first error. A connection that is refused is retried (connect.NATS) until
// timeout.
func publish(t *testing.T, url string, c config.Config, timeout time.Duration) error {
	t.Helper()
	auth, err := NATSAuth(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	nc, js, err := NATS(ctx, url, "wagate-test", slog.New(slog.NewTextHandler(io.Discard, nil)), auth...)
	if err != nil {
		return err
	}
	defer nc.Close()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "AUTH", Subjects: []string{"auth.>"}}); err != nil {
		return err
	}
	_, err = js.Publish(ctx, "auth.x", []byte("x"))
	return err
}

// TestNATSCredsAndTLS runs a real nats-server in operator mode with TLS and
// client certificates required: a credentials file of the account and the
// CA and client certificate get a JetStream PubAck; leaving out any of them
// does not.
func TestNATSCredsAndTLS(t *testing.T) {
	f := testenv.MakeTLSFiles(t)
	srv := testenv.StartNATSSecure(t, f)
	url := "tls://" + strings.TrimPrefix(srv.ClientURL(), "nats://")
	full := config.Config{NATSCreds: srv.Creds, NATSTLSCA: f.CA, NATSTLSCert: f.ClientCert, NATSTLSKey: f.ClientKey}
	if err := publish(t, url, full, 10*time.Second); err != nil {
		t.Fatalf("with credentials file, CA and client certificate: %v", err)
	}
	// The nats:// URL works too: any TLS setting requires TLS.
	if err := publish(t, srv.ClientURL(), full, 10*time.Second); err != nil {
		t.Fatalf("nats:// URL with TLS settings: %v", err)
	}
	for name, c := range map[string]config.Config{
		"no credentials":       {NATSTLSCA: f.CA, NATSTLSCert: f.ClientCert, NATSTLSKey: f.ClientKey},
		"no client cert":       {NATSCreds: srv.Creds, NATSTLSCA: f.CA},
		"CA that did not sign": {NATSCreds: srv.Creds, NATSTLSCA: f.OtherCA, NATSTLSCert: f.ClientCert, NATSTLSKey: f.ClientKey},
	} {
		if err := publish(t, url, c, 2*time.Second); err == nil {
			t.Errorf("%s: published; want the connection refused", name)
		}
	}
}

// TestNATSNKey connects with an NKey seed file to a server that admits only
// that NKey.
func TestNATSNKey(t *testing.T) {
	srv, seed := testenv.StartNATSNKey(t)
	if err := publish(t, srv.ClientURL(), config.Config{NATSNKey: seed}, 10*time.Second); err != nil {
		t.Fatalf("with the NKey seed: %v", err)
	}
	if err := publish(t, srv.ClientURL(), config.Config{}, 2*time.Second); err == nil {
		t.Error("without the NKey seed: published; want an authorization error")
	}
}

// TestNATSAuthErrors checks that each bad setting names its variable.
func TestNATSAuthErrors(t *testing.T) {
	f := testenv.MakeTLSFiles(t)
	for _, tc := range []struct {
		c     config.Config
		wants []string
	}{
		{config.Config{NATSCreds: "/x.creds", NATSNKey: "/x.nk"}, []string{"WAGATE_NATS_CREDS", "WAGATE_NATS_NKEY", "one"}},
		{config.Config{NATSCreds: "/nonexistent.creds"}, []string{"WAGATE_NATS_CREDS", "/nonexistent.creds"}},
		{config.Config{NATSNKey: "/nonexistent.nk"}, []string{"WAGATE_NATS_NKEY", "/nonexistent.nk"}},
		{config.Config{NATSNKey: f.CA}, []string{"WAGATE_NATS_NKEY"}},
		{config.Config{NATSTLSCA: "/nonexistent.pem"}, []string{"WAGATE_NATS_TLS_CA"}},
		{config.Config{NATSTLSCert: f.ClientCert}, []string{"WAGATE_NATS_TLS_CERT", "WAGATE_NATS_TLS_KEY"}},
		{config.Config{NATSTLSCert: f.ClientCert, NATSTLSKey: "/nonexistent.key"}, []string{"WAGATE_NATS_TLS_KEY", "/nonexistent.key"}},
	} {
		_, err := NATSAuth(tc.c)
		if err == nil {
			t.Errorf("%+v: no error", tc.c)
			continue
		}
		for _, w := range tc.wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: error %q lacks %q", tc.c, err, w)
			}
		}
	}
	if opts, err := NATSAuth(config.Config{}); err != nil || len(opts) != 0 {
		t.Errorf("no settings: %d options, %v; want none", len(opts), err)
	}
}
