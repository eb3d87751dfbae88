package connect

import (
	"fmt"
	"os"

	"github.com/nats-io/nats.go"

	"github.com/wagate/wagate/internal/config"
)

// NATSAuth returns the nats.go options for c's NATS credentials and TLS:
// a credentials file (WAGATE_NATS_CREDS: the user JWT and its NKey seed, as
// `nsc generate creds` writes it) or an NKey seed file (WAGATE_NATS_NKEY),
// not both; a CA bundle to verify the servers with (WAGATE_NATS_TLS_CA) and
// a client certificate with its key (WAGATE_NATS_TLS_CERT and
// WAGATE_NATS_TLS_KEY, both or neither). Any TLS setting makes the
// connection require TLS, whatever the URL's scheme. With none set it
// returns no options (what fits in WAGATE_NATS_URL: user, password or token).
// Errors name the variable and the file; no secret is read into them.
func NATSAuth(c config.Config) ([]nats.Option, error) {
	var opts []nats.Option
	p := config.Prefix
	if c.NATSCreds != "" && c.NATSNKey != "" {
		return nil, fmt.Errorf("connect: %sNATS_CREDS and %sNATS_NKEY are two ways to authenticate: set one", p, p)
	}
	readable := func(setting, file string) error {
		f, err := os.Open(file)
		if err != nil {
			return fmt.Errorf("connect: %s: %w", setting, err)
		}
		return f.Close()
	}
	if c.NATSCreds != "" {
		if err := readable(p+"NATS_CREDS", c.NATSCreds); err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserCredentials(c.NATSCreds))
	}
	if c.NATSNKey != "" {
		o, err := nats.NkeyOptionFromSeed(c.NATSNKey)
		if err != nil {
			return nil, fmt.Errorf("connect: %sNATS_NKEY=%s: %w", p, c.NATSNKey, err)
		}
		opts = append(opts, o)
	}
	if c.NATSTLSCA != "" {
		if _, err := certPool(p+"NATS_TLS_CA", c.NATSTLSCA); err != nil {
			return nil, err
		}
		opts = append(opts, nats.RootCAs(c.NATSTLSCA))
	}
	if (c.NATSTLSCert == "") != (c.NATSTLSKey == "") {
		return nil, fmt.Errorf("connect: %sNATS_TLS_CERT and %sNATS_TLS_KEY go together: set both or neither", p, p)
	}
	if c.NATSTLSCert != "" {
		for _, f := range []struct{ setting, file string }{{p + "NATS_TLS_CERT", c.NATSTLSCert}, {p + "NATS_TLS_KEY", c.NATSTLSKey}} {
			if err := readable(f.setting, f.file); err != nil {
				return nil, err
			}
		}
		opts = append(opts, nats.ClientCert(c.NATSTLSCert, c.NATSTLSKey))
	}
	return opts, nil
}
