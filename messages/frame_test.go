package messages_test

import (
	"bytes"
	"encoding/json"
	"regexp"
	"testing"
	"time"

	"github.com/wagate/wagate/messages"
)

// evolutionAPIKey matches an "apikey" member of an Evolution API envelope.
var evolutionAPIKey = regexp.MustCompile(`("apikey"\s*:\s*)"(?:[^"\\]|\\.)*"`)

// checkFrame checks that a gateway event's frame makes a body of the
// provider's that holds the item: valid JSON, no longer than the body
// received, whose every part is a part of it.
func checkFrame(t testing.TB, i int, body []byte, ev messages.Event) {
	t.Helper()
	f := ev.Context.Frame
	if !f.Body {
		return
	}
	if ev.Provider == messages.ProviderEvolution {
		// Evolution API's apikey is written back redacted.
		body = evolutionAPIKey.ReplaceAll(body, []byte(`${1}"[redacted]"`))
	}
	out := append(append(append([]byte{}, f.Before...), ev.Item...), f.After...)
	if !json.Valid(out) || len(out) > len(body) || !bytes.HasPrefix(body, f.Before) || !bytes.HasSuffix(body, f.After) {
		t.Fatalf("event %d: frame gives %q from body %q", i, out, body)
	}
}

func TestFrameGateway(t *testing.T) {
	at := time.Now()
	for _, c := range []struct {
		name  string
		parse messages.ParseFunc
		body  string
		want  []string // the body of each event; "" when covered
	}{
		{"one item, the body as received", messages.ParseWAHA,
			` {"event":"message","session":"s", "payload":{"id":"false_1@c.us_A","body":"hi"}} `,
			[]string{` {"event":"message","session":"s", "payload":{"id":"false_1@c.us_A","body":"hi"}} `}},
		{"envelope member rides along", messages.ParseWAHA,
			`{"event":"message","session":"s","payload":{"id":"false_1@c.us_A"},"extra":true}`,
			[]string{"", `{"event":"message","session":"s","payload":{"id":"false_1@c.us_A"},"extra":true}`}},
		{"array of items, one each", messages.ParseWASender,
			`{"event":"messages.upsert","data":{"messages":[ {"key":{"id":"A","remoteJid":"1@s.whatsapp.net"}},{"key":{"id":"B","remoteJid":"1@s.whatsapp.net"}} ]}}`,
			[]string{
				`{"event":"messages.upsert","data":{"messages":[{"key":{"id":"A","remoteJid":"1@s.whatsapp.net"}}]}}`,
				`{"event":"messages.upsert","data":{"messages":[{"key":{"id":"B","remoteJid":"1@s.whatsapp.net"}}]}}`,
			}},
		{"no data: the whole body", messages.ParseWASender, `{"event":"x"}`, []string{`{"event":"x"}`}},
	} {
		evs, err := c.parse([]byte(c.body), at)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var got []string
		for _, ev := range evs {
			f := ev.Context.Frame
			switch {
			case f.Covered:
				got = append(got, "")
			case f.Body:
				got = append(got, string(f.Before)+string(ev.Item)+string(f.After))
			default:
				got = append(got, "<no frame>")
			}
		}
		if len(got) != len(c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s: event %d body %q, want %q", c.name, i, got[i], c.want[i])
			}
		}
	}
}
