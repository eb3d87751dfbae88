package forward_test

import (
	"strings"
	"testing"

	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/internal/forward"
	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/worker"
)

func TestNew(t *testing.T) {
	t.Setenv("WAGATE_HANDLER", "forward")
	t.Setenv("WAGATE_FORWARD_URL", "http://127.0.0.1:1/hook")

	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	if f := forward.New(c); f.Format != worker.FormatEvent || f.Secrets != nil {
		t.Errorf("default: format %q secrets %v, want event and none", f.Format, f.Secrets)
	}

	t.Setenv("WAGATE_FORWARD_FORMAT", "provider")
	if _, err := config.Load(); err == nil || !strings.Contains(err.Error(), "WAGATE_FORWARD_SECRET") {
		t.Errorf("provider format without any secret: %v, want an error naming WAGATE_FORWARD_SECRET", err)
	}

	t.Setenv("WAGATE_META_APP_SECRET", " new , old")
	t.Setenv("WAGATE_WAHA_HMAC_KEY", "waha")
	c, err = config.Load()
	if err != nil {
		t.Fatal(err)
	}
	f := forward.New(c)
	if f.Format != worker.FormatProvider || f.Sign == nil ||
		f.Secrets[messages.ProviderCloud] != "new" || f.Secrets[messages.ProviderWAHA] != "waha" || f.Secrets[messages.ProviderWASender] != "" {
		t.Errorf("provider format: %q %v", f.Format, f.Secrets)
	}

	t.Setenv("WAGATE_FORWARD_SECRET", "apps-own")
	c, _ = config.Load()
	for p, s := range forward.New(c).Secrets {
		if s != "apps-own" {
			t.Errorf("with WAGATE_FORWARD_SECRET, %s signs with %q", p, s)
		}
	}

	t.Setenv("WAGATE_FORWARD_FORMAT", "meta")
	if _, err := config.Load(); err == nil || !strings.Contains(err.Error(), "FORWARD_FORMAT") {
		t.Errorf("unknown format: %v", err)
	}
}
