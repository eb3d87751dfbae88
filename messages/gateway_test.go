package messages_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/messages"
)

// receivedWindow ends the identity of a transient event parsed at received
// (2026-03-01 12:00:00.123 UTC): the one-hour default repeat window that
// starts at 12:00:00.
var receivedWindow = "|window|" + strconv.FormatInt(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).Unix(), 10)

// gwant is what the gateway tests check of one event.
type gwant struct {
	kind     messages.Kind
	account  string
	id       string
	typ      string
	status   string
	from     string
	ts       int64
	fallback bool
	identity string // exact; "" for a fallback, checked to start with the provider
}

// gatewayFixtures checks every testdata file starting with prefix against
// tests, and that every table entry has a file.
func gatewayFixtures(t *testing.T, provider, prefix string, parse messages.ParseFunc, tests map[string][]gwant) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", prefix+"*.json"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, path := range files {
		name := filepath.Base(path)
		seen[name] = true
		wants, ok := tests[name]
		if !ok {
			t.Errorf("%s: no expected events in the table: add them", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			evs, err := parse(body, received)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			checkEvents(t, body, evs)
			if len(evs) != len(wants) {
				t.Fatalf("got %d events, want %d: %+v", len(evs), len(wants), evs)
			}
			for i, w := range wants {
				checkGatewayEvent(t, provider, i, evs[i], w)
			}
			// Another provider's parser never takes this body for its own.
			if evs, err := messages.Parse(body, received); !errors.Is(err, messages.ErrNotWebhook) || evs != nil {
				t.Errorf("Cloud API Parse = %d events, %v; want ErrNotWebhook", len(evs), err)
			}
		})
	}
	for name := range tests {
		if !seen[name] {
			t.Errorf("%s: in the table but not in testdata", name)
		}
	}
}

// checkGatewayEvent compares ev with w.
func checkGatewayEvent(t *testing.T, provider string, i int, ev messages.Event, w gwant) {
	t.Helper()
	got := gwant{
		kind: ev.Kind, account: ev.Account, id: ev.ID, typ: ev.Type, status: ev.Status,
		from: ev.From, ts: ev.Timestamp, fallback: ev.Fallback, identity: ev.Identity,
	}
	if w.identity == "" {
		got.identity = ""
		if !strings.HasPrefix(ev.Identity, provider+"|") {
			t.Errorf("event %d: identity %q does not start with the provider", i, ev.Identity)
		}
	}
	if got != w {
		t.Errorf("event %d:\n got %+v\nwant %+v", i, got, w)
	}
	if ev.Provider != provider || !ev.ReceivedAt.Equal(received) || ev.Context.Field == "" {
		t.Errorf("event %d: provider %q, received %v, field %q", i, ev.Provider, ev.ReceivedAt, ev.Context.Field)
	}
}

// gparse parses body with parse, checks the invariants of every event and
// fails the test on error.
func gparse(t *testing.T, parse messages.ParseFunc, body string) []messages.Event {
	t.Helper()
	evs, err := parse([]byte(body), received)
	if err != nil {
		t.Fatalf("parse %s: %v", body, err)
	}
	checkEvents(t, []byte(body), evs)
	return evs
}

// only parses body and returns its one event, failing the test otherwise.
func only(t *testing.T, parse messages.ParseFunc, body string) messages.Event {
	t.Helper()
	evs := gparse(t, parse, body)
	if len(evs) != 1 {
		t.Fatalf("%s: %d events, want 1: %+v", body, len(evs), evs)
	}
	return evs[0]
}

// checkNotWebhook checks that parse refuses each body with ErrNotWebhook.
func checkNotWebhook(t *testing.T, parse messages.ParseFunc, bodies ...string) {
	t.Helper()
	for _, body := range bodies {
		evs, err := parse([]byte(body), received)
		if !errors.Is(err, messages.ErrNotWebhook) || evs != nil {
			t.Errorf("%q: %d events, %v; want nil, ErrNotWebhook", body, len(evs), err)
		}
	}
}

func TestParserRegistry(t *testing.T) {
	for _, name := range []string{messages.ProviderCloud, messages.ProviderWASender, messages.ProviderWAHA, messages.ProviderEvolution} {
		p, ok := messages.Parser(name)
		if !ok || p == nil {
			t.Fatalf("Parser(%q): none", name)
		}
		// Each parser refuses what is not a webhook.
		checkNotWebhook(t, p, ``, `[]`)
	}
	if _, ok := messages.Parser("telegram"); ok {
		t.Error(`Parser("telegram"): found`)
	}
}
