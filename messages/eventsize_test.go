package messages_test

import (
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/messages"
)

// atLimit returns template with every X replaced by the same run of invalid
// UTF-8 (each byte decodes to U+FFFD, three bytes, in every string copied
// out of the body), padded with spaces before its last byte to exactly
// limit bytes.
func atLimit(t *testing.T, template string, limit int) []byte {
	t.Helper()
	k := strings.Count(template, "X")
	fixed := len(template) - k
	n := (limit - fixed) / k
	body := strings.ReplaceAll(template, "X", strings.Repeat("\xff", n))
	body = body[:len(body)-1] + strings.Repeat(" ", limit-len(body)) + body[len(body)-1:]
	if len(body) != limit {
		t.Fatalf("body of %d bytes, want %d", len(body), limit)
	}
	return []byte(body)
}

// G1: every event of a body at the limit fits in MaxEventSize, so a NATS
// max_payload of that much stores it. The bodies put long strings (invalid
// UTF-8: three bytes each once decoded) in every field an event copies out
// of its body and in the rest of the body its frame holds in base64.
func TestMaxEventSizeHoldsTheWorstEvent(t *testing.T) {
	const limit = 256 << 10
	bodies := []struct{ provider, template string }{
		{messages.ProviderEvolution, `{"event":"messages.upsert","instance":"X","data":{"key":{"id":"X","remoteJid":"X"},"messageType":"X","message":{}},"apikey":"X"}`},
		{messages.ProviderEvolution, `{"event":"X","instance":"X","data":{"key":{"id":"X"},"message":{}}}`},
		{messages.ProviderWAHA, `{"event":"message","session":"X","metadata":{"m":"X"},"payload":{"id":"X","from":"X"}}`},
		{messages.ProviderWAHA, `{"event":"X","session":"X","metadata":{"m":"X"},"payload":{"id":"X"}}`},
		{messages.ProviderWAHA, `{"event":"message.ack","session":"X","payload":{"id":"X","from":"X","ackName":"X"}}`},
		{messages.ProviderWASender, `{"event":"messages.upsert","sessionId":"X","data":{"key":{"id":"X","remoteJid":"X"},"message":{"X":{}}}}`},
		{messages.ProviderCloud, `{"object":"whatsapp_business_account","entry":[{"id":"X","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"X","phone_number_id":"X"},"contacts":[{"wa_id":"X","profile":{"name":"X"}}],"statuses":[{"id":"X","status":"X","timestamp":"1","recipient_id":"X","errors":[{"code":1,"title":"X","message":"X","error_data":{"details":"X"},"href":"X"}]}]}}]}]}`},
	}
	largest := 0
	for _, b := range bodies {
		body := atLimit(t, b.template, limit)
		parse, _ := messages.Parser(b.provider)
		evs, err := parse(body, time.Unix(1700000000, 0))
		if err != nil || len(evs) == 0 {
			t.Fatalf("%s %s: %d events, %v", b.provider, b.template, len(evs), err)
		}
		for _, ev := range evs {
			data, err := ev.Encode()
			if err != nil {
				t.Fatal(err)
			}
			largest = max(largest, len(data))
			if int64(len(data)) > messages.MaxEventSize(limit) {
				t.Errorf("%s %s %s event: %d bytes from a %d-byte body, above MaxEventSize %d",
					b.provider, ev.Kind, ev.Type, len(data), limit, messages.MaxEventSize(limit))
			}
		}
	}
	// The bodies do reach past three times their size: a bound of 3 × body
	// would not hold them.
	if largest <= 3*limit {
		t.Errorf("largest event %d bytes: the bodies do not reach the worst case", largest)
	}
	t.Logf("largest event: %d bytes from %d-byte bodies (%.2f×)", largest, limit, float64(largest)/limit)
	if messages.MaxEventSize(0) != 0 || messages.MaxEventSize(-1) != 0 {
		t.Error("MaxEventSize of no limit is not 0")
	}
}
