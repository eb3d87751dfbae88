package main

import (
	"slices"
	"testing"

	"github.com/wagate/wagate/internal/config"
)

// WAGATE_META_APP_SECRET is a comma-separated list so that a secret can be
// rotated (README): wagate dev accepts every one of them, as the ingress
// does, not only the first.
func TestDevAcceptsEverySecret(t *testing.T) {
	t.Setenv("WAGATE_META_APP_SECRET", "old-secret,new-secret")
	t.Setenv("WAGATE_DATA_DIR", t.TempDir())
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	s, err := loadDevSecrets(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := devAppSecrets(cfg, s); !slices.Equal(got, []string{"old-secret", "new-secret"}) {
		t.Errorf("dev accepts %q, want both secrets", got)
	}
	t.Setenv("WAGATE_META_APP_SECRET", "")
	cfg, _ = config.Load()
	if got := devAppSecrets(cfg, s); len(got) != 1 || got[0] != s.AppSecret {
		t.Errorf("without the variable dev accepts %q, want the generated %q", got, s.AppSecret)
	}
}
