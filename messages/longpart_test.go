package messages_test

import (
	"strings"
	"testing"

	"github.com/wagate/wagate/messages"
)

// A body whose ids, addresses or session are very long (hostile, or broken)
// gives identities of bounded length, still one per item and the same on
// every delivery, and a Cloud API event no larger than twice its body (the
// room `wagate dev` gives an event in its NATS max_payload).
func TestLongIdentityParts(t *testing.T) {
	long := func(c byte) string { return strings.Repeat(string(c), 1<<20) }
	bodies := []struct {
		provider string
		body     func(id, other string) string
	}{
		{messages.ProviderCloud, func(id, other string) string {
			return `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"` + other + `"},"messages":[{"from":"15550001001","id":"` + id + `","timestamp":"1","type":"text","text":{"body":"x"}}]}}]}]}`
		}},
		{messages.ProviderCloud, func(id, other string) string {
			return `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"1"},"statuses":[{"id":"` + id + `","status":"read","timestamp":"1","recipient_id":"G","recipient_type":"group","recipient_participant_id":"` + other + `"}]}}]}]}`
		}},
		{messages.ProviderWASender, func(id, other string) string {
			return `{"event":"messages.received","sessionId":"s","timestamp":1,"data":{"messages":{"key":{"id":"` + id + `","fromMe":false,"remoteJid":"` + other + `@g.us"},"message":{"conversation":"x"}}}}`
		}},
		{messages.ProviderWAHA, func(id, other string) string {
			return `{"event":"message","session":"` + other + `","payload":{"id":"false_1@c.us_` + id + `","timestamp":1,"from":"1@c.us","fromMe":false,"body":"x"}}`
		}},
		{messages.ProviderEvolution, func(id, other string) string {
			return `{"event":"messages.upsert","instance":"` + other + `","data":{"key":{"remoteJid":"1@s.whatsapp.net","fromMe":false,"id":"` + id + `"}}}`
		}},
	}
	for _, b := range bodies {
		parse, _ := messages.Parser(b.provider)
		one := func(id, other string) messages.Event {
			t.Helper()
			body := b.body(id, other)
			evs, err := parse([]byte(body), received)
			if err != nil || len(evs) != 1 {
				t.Fatalf("%s: %v, %d events", b.provider, err, len(evs))
			}
			ev := evs[0]
			if len(ev.Identity) > 4096 {
				t.Errorf("%s: identity of %d bytes", b.provider, len(ev.Identity))
			}
			if b.provider == messages.ProviderCloud {
				enc, err := ev.Encode()
				if err != nil {
					t.Fatal(err)
				}
				if len(enc) > 2*len(body)+64<<10 {
					t.Errorf("%s: event of %d bytes from a body of %d", b.provider, len(enc), len(body))
				}
			}
			return ev
		}
		a := one(long('A'), long('7'))
		if again := one(long('A'), long('7')); again.Key != a.Key {
			t.Errorf("%s: one item, two keys", b.provider)
		}
		if other := one(long('A')+"B", long('7')); other.Key == a.Key {
			t.Errorf("%s: two ids, one key", b.provider)
		}
		if other := one(long('A'), long('7')+"8"); other.Key == a.Key {
			t.Errorf("%s: two accounts or participants, one key", b.provider)
		}
		if short := one("3EB0A1", "120363"); len(short.Identity) > 200 || strings.Contains(short.Identity, "%sha256-") {
			t.Errorf("%s: short parts hashed: %s", b.provider, short.Identity)
		}
	}
}
