package config

import "fmt"

// CheckWorker returns an error unless the configuration names the worker's
// handler: a worker started without one would otherwise run a default that
// marks every event done, and a production worker must not discard events
// silently. The error names the variable, the flag and the choices.
func (c Config) CheckWorker() error {
	if c.Handler == "" {
		return fmt.Errorf("config: %s is not set: want forward (POST each event to %s) or log (log each event and mark it done, for trials)",
			Setting("HANDLER"), Setting("FORWARD_URL"))
	}
	return nil
}

// CheckIngress returns an error when the ingress has no webhook secret to
// verify signatures with and unsigned webhooks are not explicitly allowed,
// naming every variable (and flag) that would provide one.
func (c Config) CheckIngress() error {
	if c.InsecureNoSecret || len(c.Secrets())+len(c.WASenderSecretList())+len(c.WAHAKeyList())+len(c.EvolutionTokenList()) > 0 {
		return nil
	}
	return fmt.Errorf("config: no webhook secret: set %s, %s, %s or %s (each a comma-separated list), "+
		"or %s = true to accept unsigned webhooks (trials only)",
		Setting("META_APP_SECRET"), Setting("WASENDER_SECRET"), Setting("WAHA_HMAC_KEY"), Setting("EVOLUTION_TOKEN"), Setting("INSECURE_NO_SIGNATURE"))
}
