package messages_test

import (
	"testing"

	"github.com/wagate/wagate/messages"
)

// An item identified by the hash of its content (a field change, an error, an
// unknown item, a transient gateway event) keeps its key when a delivery
// writes the same strings with other escapes (\u00e9 or é, \/ or /, \u000a
// or \n, \u0041 or A, upper- or lower-case hex), and two different strings
// never share one, invalid UTF-8 included.
func TestContentHashEscapeVariants(t *testing.T) {
	type form struct{ name, text string }
	same := [][]form{
		{{"plain", `Café à 12/05 \"ok\"`}, {"escaped", `Caf\u00e9 \u00E0 12\/05 \"ok\"`}, {"quote as \\u", `Caf\u00e9 \u00e0 12/05 \u0022ok\u0022`}},
		{{"emoji", "👍 done"}, {"surrogates", `\ud83d\udc4d done`}, {"upper surrogates", `\uD83D\uDC4D done`}},
		{{"newline", `line\nnext\t\\`}, {"\\u newline", `line\u000anext\u0009\u005c`}},
		{{"ascii", `APPROVED`}, {"\\u letter", `\u0041PPROVED`}},
		{{"lone surrogate", `\ud800x`}, {"lone surrogate upper", `\uD800x`}},
	}
	different := [][2]string{
		{"Café", "Cafe"},
		{`\ud800`, `\ud801`},
		{"\xff", "\xfe"},
		{`\ud800`, "\xff"},
		{`a\\nb`, `a\nb`},
		{`\/`, `\\/`},
	}
	bodies := []struct {
		provider string
		body     func(text string) string
	}{
		{messages.ProviderCloud, func(s string) string {
			return `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","time":1767261600,"changes":[{"field":"message_template_status_update","value":{"event":"APPROVED","reason":"` + s + `"}}]}]}`
		}},
		{messages.ProviderCloud, func(s string) string {
			return `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"106540352242922"},"errors":[{"code":131000,"title":"` + s + `"}]}}]}]}`
		}},
		{messages.ProviderWASender, func(s string) string {
			return `{"event":"session.status","sessionId":"s1","timestamp":1767261600,"data":{"status":"` + s + `"}}`
		}},
		{messages.ProviderWAHA, func(s string) string {
			return `{"event":"presence.update","session":"default","payload":{"id":"123@c.us","presences":[{"lastKnownPresence":"` + s + `"}]}}`
		}},
		{messages.ProviderEvolution, func(s string) string {
			return `{"event":"contacts.update","instance":"shop","data":[{"remoteJid":"5500000000003@s.whatsapp.net","pushName":"` + s + `"}],"apikey":"k"}`
		}},
	}
	keyOf := func(t *testing.T, provider, body string) string {
		t.Helper()
		parse, _ := messages.Parser(provider)
		evs, err := parse([]byte(body), received)
		if err != nil || len(evs) != 1 {
			t.Fatalf("parse %s: %v, %d events", body, err, len(evs))
		}
		return evs[0].Key
	}
	for _, b := range bodies {
		for _, group := range same {
			want := keyOf(t, b.provider, b.body(group[0].text))
			for _, f := range group[1:] {
				if got := keyOf(t, b.provider, b.body(f.text)); got != want {
					t.Errorf("%s: %s (%s) and %s (%s) give two keys", b.provider, group[0].name, group[0].text, f.name, f.text)
				}
			}
		}
		for _, d := range different {
			if keyOf(t, b.provider, b.body(d[0])) == keyOf(t, b.provider, b.body(d[1])) {
				t.Errorf("%s: %q and %q share a key", b.provider, d[0], d[1])
			}
		}
	}
}
