package messages_test

import (
	"fmt"
	"time"

	"github.com/wagate/wagate/messages"
)

func ExampleParse() {
	body := []byte(`{
  "object": "whatsapp_business_account",
  "entry": [{
    "id": "102290129340398",
    "changes": [{
      "field": "messages",
      "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Test User"}, "wa_id": "15550000001"}],
        "messages": [{"from": "15550000001", "id": "wamid.A1", "timestamp": "1750275992", "type": "text", "text": {"body": "hi"}}],
        "statuses": [{"id": "wamid.B2", "status": "read", "timestamp": "1750275993", "recipient_id": "15550000001"}]
      }
    }]
  }]
}`)
	evs, err := messages.Parse(body, time.Now())
	if err != nil {
		fmt.Println(err) // wraps messages.ErrNotWebhook: answer 400
		return
	}
	for _, ev := range evs {
		fmt.Println(ev.Kind, ev.ID, ev.Status, messages.Subject(ev))
		fmt.Println(" ", ev.Identity, len(ev.Key) == messages.KeyLen)
	}

	_, err = messages.Parse([]byte(`{"event":"messages.upsert"}`), time.Now())
	fmt.Println(err)
	// Output:
	// message wamid.A1  wagate.events.cloud.message.106540352242922.11
	//   cloud|message|106540352242922|messages|wamid.A1 true
	// status wamid.B2 read wagate.events.cloud.status.106540352242922.11
	//   cloud|status|106540352242922|messages|wamid.B2|read true
	// messages: not a webhook: no "object" member
}
