package messages_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/wagate/wagate/messages"
)

// BenchmarkParse parses one body holding a batch of 50 text messages from 50
// senders, with their contacts.
func BenchmarkParse(b *testing.B) {
	var contacts, msgs []string
	for i := range 50 {
		from := fmt.Sprintf("1555000%04d", i)
		contacts = append(contacts, `{"profile":{"name":"User `+from+`"},"wa_id":"`+from+`"}`)
		msgs = append(msgs, message(fmt.Sprintf("wamid.HBgLMTU1NTAwMDAwMDEVAgASGBRGQUtFMDAwMDAwMDAwMDAwMDA%04dA=", i), from,
			"1750275992", `Hello, I would like to know more about your opening hours \u00e9 \ud83d\ude00 https:\/\/example.com`))
	}
	body := []byte(envelope(entry(waba, messagesChange(pnA,
		`"contacts":[`+strings.Join(contacts, ",")+`],"messages":[`+strings.Join(msgs, ",")+`]`))))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		evs, err := messages.Parse(body, received)
		if err != nil || len(evs) != 50 {
			b.Fatalf("Parse = %d events, %v", len(evs), err)
		}
	}
}
