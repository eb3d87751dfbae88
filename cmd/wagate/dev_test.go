package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/messages"
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

// The embedded server stores the event of any body the ingress accepts: the
// worst event of a body at the limit (long invalid UTF-8 strings in every
// field an event copies out, three bytes each once decoded, and the rest of
// the body in base64 in its frame) fits in embeddedMaxPayload.
func TestEmbeddedMaxPayloadHoldsTheWorstEvent(t *testing.T) {
	for _, limit := range []int64{64 << 10, 4 << 20} {
		const template = `{"event":"messages.upsert","instance":"X","data":{"key":{"id":"X","remoteJid":"X"},"messageType":"X","message":{}},"apikey":"X"}`
		n := (int(limit) - len(template) + 5) / 5
		body := strings.ReplaceAll(template, "X", strings.Repeat("\xff", n))
		body = body[:len(body)-1] + strings.Repeat(" ", int(limit)-len(body)) + "}"
		if int64(len(body)) != limit {
			t.Fatalf("body of %d bytes, want %d", len(body), limit)
		}
		evs, err := messages.ParseEvolution([]byte(body), time.Now())
		if err != nil || len(evs) == 0 {
			t.Fatalf("%d events, %v", len(evs), err)
		}
		mp := embeddedMaxPayload(limit)
		for _, ev := range evs {
			data, err := ev.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if len(data) > int(mp) {
				t.Errorf("body limit %d: %s event of %d bytes above max_payload %d", limit, ev.Kind, len(data), mp)
			}
		}
		if int64(mp) < messages.MaxEventSize(limit) {
			t.Errorf("body limit %d: max_payload %d below MaxEventSize %d", limit, mp, messages.MaxEventSize(limit))
		}
	}
}
