package testenv

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// SecureNATS is an in-process NATS server with JetStream that takes only
// TLS connections with a client certificate signed by its CA, from users of
// an account it trusts through an operator, as a production NATS would.
type SecureNATS struct {
	*NATS
	Creds string // a credentials file (user JWT and seed) of the account
}

// StartNATSSecure starts a SecureNATS with f's server certificate and CA. The
// operator, a system account, an account with JetStream and one user of it
// are made here with nats-io/jwt and nkeys; the user's credentials file is
// written as `nsc generate creds` writes it.
func StartNATSSecure(t testing.TB, f TLSFiles) *SecureNATS {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("testenv: nats operator: %v", err)
		}
	}
	okp, err := nkeys.CreateOperator()
	must(err)
	opub, err := okp.PublicKey()
	must(err)
	oc := jwt.NewOperatorClaims(opub)
	oc.Name = "wagate-test"
	ojwt, err := oc.Encode(okp)
	must(err)
	operator, err := jwt.DecodeOperatorClaims(ojwt)
	must(err)

	resolver := &server.MemAccResolver{}
	account := func(name string, jetStream bool) (nkeys.KeyPair, string) {
		kp, err := nkeys.CreateAccount()
		must(err)
		pub, err := kp.PublicKey()
		must(err)
		ac := jwt.NewAccountClaims(pub)
		ac.Name = name
		if jetStream {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		ajwt, err := ac.Encode(okp)
		must(err)
		must(resolver.Store(pub, ajwt))
		return kp, pub
	}
	_, sysPub := account("SYS", false)
	akp, _ := account("WAGATE", true)

	ukp, err := nkeys.CreateUser()
	must(err)
	upub, err := ukp.PublicKey()
	must(err)
	uc := jwt.NewUserClaims(upub)
	uc.Name = "wagate"
	ujwt, err := uc.Encode(akp)
	must(err)
	seed, err := ukp.Seed()
	must(err)
	creds, err := jwt.FormatUserConfig(ujwt, seed)
	must(err)
	credsFile := filepath.Join(dir, "wagate.creds")
	must(os.WriteFile(credsFile, creds, 0o600))

	tlsConfig, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: f.ServerCert, KeyFile: f.ServerKey, CaFile: f.CA, Verify: true, Timeout: 2,
	})
	must(err)
	n := newNATS(t, server.Options{
		TrustedOperators: []*jwt.OperatorClaims{operator},
		AccountResolver:  resolver,
		SystemAccount:    sysPub,
		TLS:              true,
		TLSVerify:        true,
		TLSConfig:        tlsConfig,
		TLSTimeout:       2,
	})
	return &SecureNATS{NATS: n, Creds: credsFile}
}

// StartNATSNKey starts an in-process NATS server with JetStream that admits
// one NKey user, and returns it with the user's seed file.
func StartNATSNKey(t testing.TB) (*NATS, string) {
	t.Helper()
	ukp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := ukp.PublicKey()
	seed, _ := ukp.Seed()
	seedFile := filepath.Join(t.TempDir(), "wagate.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	return newNATS(t, server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}}), seedFile
}

// newNATS starts an in-process server with opts plus the settings every
// test server has (loopback, free port, JetStream, temporary storage), and
// waits until it is ready. It is shut down at the end of the test.
func newNATS(t testing.TB, opts server.Options) *NATS {
	t.Helper()
	opts.Host = "127.0.0.1"
	opts.Port = FreePort(t)
	opts.JetStream = true
	opts.StoreDir = t.TempDir()
	opts.NoLog = true
	opts.NoSigs = true
	n := &NATS{t: t, opts: opts}
	n.Start()
	t.Cleanup(func() {
		n.Shutdown()
		n.mu.Lock()
		defer n.mu.Unlock()
		n.hold.release()
		n.hold = nil
	})
	return n
}
