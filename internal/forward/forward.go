// Package forward builds the worker's forward handler from the
// configuration, for every command that runs it (worker, wagate dev, wagate
// replay).
package forward

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/wagate/wagate/ingest"
	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/worker"
)

// New returns the forward handler the configuration asks for: to
// WAGATE_FORWARD_URL within WAGATE_FORWARD_TIMEOUT, in WAGATE_FORWARD_FORMAT.
// In the provider format each provider's requests are signed as the provider
// signs them (ingest.SignRequest), under WAGATE_FORWARD_SECRET when set, else
// under the provider's first configured secret: the first App Secret, WASenderApi
// webhook secret, WAHA HMAC key or Evolution API token.
func New(c config.Config) *worker.Forward {
	f := worker.NewForward(c.ForwardURL, &http.Client{Timeout: c.ForwardTimeout})
	f.Format = worker.ForwardFormat(c.ForwardFormat)
	if f.Format != worker.FormatProvider {
		return f
	}
	first := func(list []string) string {
		if len(list) == 0 {
			return ""
		}
		return list[0]
	}
	f.Secrets = map[string]string{
		messages.ProviderCloud:     first(c.Secrets()),
		messages.ProviderWASender:  first(c.WASenderSecretList()),
		messages.ProviderWAHA:      first(c.WAHAKeyList()),
		messages.ProviderEvolution: first(c.EvolutionTokenList()),
	}
	if s := strings.TrimSpace(c.ForwardSecret); s != "" {
		for p := range f.Secrets {
			f.Secrets[p] = s
		}
	}
	f.Sign = ingest.SignRequest
	return f
}

// Handler returns the handler WAGATE_HANDLER names: the forward handler
// (New) for "forward", the log handler writing to log for "log" or "" (the
// commands that require a handler check that first), else an error naming
// the accepted values.
func Handler(c config.Config, log *slog.Logger) (worker.Handler, error) {
	switch c.Handler {
	case "forward":
		return New(c), nil
	case "log", "":
		return worker.NewLog(log), nil
	}
	return nil, fmt.Errorf("WAGATE_HANDLER=%q: want forward or log", c.Handler)
}
