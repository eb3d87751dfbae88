package messages_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wagate/wagate/messages"
)

// fuzzGateway seeds f with every testdata body (the peer corpus included)
// and extra, and checks that
// parse never panics, refuses only with ErrNotWebhook, and makes well-formed
// events (see checkEvents) with the same keys on a second run.
func fuzzGateway(f *testing.F, parse messages.ParseFunc, extra ...string) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	peers, err := filepath.Glob(filepath.Join("testdata", "peers", "*", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	files = append(files, peers...)
	for _, path := range files {
		body, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	for _, body := range extra {
		f.Add([]byte(body))
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, err := parse(body, at)
		if err != nil {
			if !errors.Is(err, messages.ErrNotWebhook) || evs != nil {
				t.Fatalf("parse = %d events, %v: want nil and ErrNotWebhook", len(evs), err)
			}
			return
		}
		if len(evs) == 0 {
			t.Fatal("a webhook gave no event")
		}
		checkEvents(t, body, evs)
		again, err := parse(body, at)
		if err != nil || len(again) != len(evs) {
			t.Fatalf("second parse = %d events, %v; first gave %d", len(again), err, len(evs))
		}
		for i := range evs {
			if again[i].Key != evs[i].Key {
				t.Fatalf("event %d: key %s then %s", i, evs[i].Key, again[i].Key)
			}
		}
	})
}

// FuzzParseWASender: see fuzzGateway.
// Run: go test -run '^$' -fuzz FuzzParseWASender -fuzztime 30s ./messages/
func FuzzParseWASender(f *testing.F) {
	fuzzGateway(f, messages.ParseWASender,
		``, `{}`, `{"event":"messages.upsert","data":{"messages":[1,{},{"key":{"id":"\ud800","fromMe":"true"}}]}}`,
		`{"event":"message-receipt.update","sessionId":"a|b","data":[{"key":{"id":"x"},"receipt":{"userJid":"u:1@lid","readTimestamp":"99999999999999"}}]}`,
		`{"event":"messages.delete","data":[{"key":{"id":"x"}},2,{"id":"y"}],"event":"messages.reaction"}`,
	)
}

// FuzzParseWAHA: see fuzzGateway.
// Run: go test -run '^$' -fuzz FuzzParseWAHA -fuzztime 30s ./messages/
func FuzzParseWAHA(f *testing.F) {
	fuzzGateway(f, messages.ParseWAHA,
		``, `{"event":"message","session":"s"}`,
		`{"event":"message.ack","session":"s","payload":{"id":"true__","ack":-7,"participant":"a:b:c@"}}`,
		`{"event":"message.reaction","session":"s","payload":{"id":{"_serialized":"false_a@g.us_B_c"},"reaction":{"messageId":{}}}}`,
		`{"event":"message.revoked","session":"","payload":{"before":{"id":"true_x"},"revokedMessageId":5}}`,
	)
}

// FuzzParseEvolution: see fuzzGateway.
// Run: go test -run '^$' -fuzz FuzzParseEvolution -fuzztime 30s ./messages/
func FuzzParseEvolution(f *testing.F) {
	fuzzGateway(f, messages.ParseEvolution,
		``, `{"event":"MESSAGES_UPSERT","apikey":"k","apikey":"k2"}`,
		`{"event":"messages.update","instance":"i","data":[{"keyId":"\ud800","status":7},{"key":{"id":"x"},"update":{"status":"READ"}},3]}`,
		`{"event":"messages.delete","data":{"key":{"id":"x","remoteJid":"a@lid"}}}`,
		`{"event":"call","data":[{"id":"c","status":"offer","date":"2025-09-22T21:34:00.000Z"}]}`,
	)
}
