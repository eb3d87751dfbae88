package messages_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wagate/wagate/messages"
)

// FuzzParse checks that Parse never panics and that whatever it accepts makes
// well-formed events: keys of KeyLen, items that are JSON and parts of the
// body, subjects of six safe tokens, and a lossless Encode/Decode round trip.
// Run: go test -run '^$' -fuzz FuzzParse -fuzztime 60s ./messages/
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, path := range files {
		body, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
	for _, body := range []string{
		``, `{}`, `not json`, `{"object":"whatsapp_business_account","entry":[]}`,
		`{"object":"x","entry":[1,"a",null,{},{"changes":[{}]},{"changes":[{"field":"messages","value":{"messages":[{},{"id":1}],"x":[]}}]}]}`,
		`{"object":"x","entry":[{"id":"a|b","time":"7","changes":[{"field":"calls","value":{"calls":[{"id":"c","event":"e"}],"statuses":[{"id":"\ud800","status":"s"}]}}]}]}`,
		// Items sharing a large metadata and contact (each event carries both).
		`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"2","pad":"\u001b\u2028xxxxxxxx"},"contacts":[{"wa_id":"9","profile":{"name":"\u009b"}}],"statuses":[{"id":"a","status":"sent","recipient_id":"9"},{"id":"b","status":"sent","recipient_id":"9"},{}]}}]}]}`,
	} {
		f.Add([]byte(body))
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, err := messages.Parse(body, at)
		if err != nil {
			if !errors.Is(err, messages.ErrNotWebhook) || evs != nil {
				t.Fatalf("Parse = %d events, %v: want nil and ErrNotWebhook", len(evs), err)
			}
			return
		}
		checkEvents(t, body, evs)
		again, err := messages.Parse(body, at)
		if err != nil || len(again) != len(evs) {
			t.Fatalf("second Parse = %d events, %v; first gave %d", len(again), err, len(evs))
		}
		for i := range evs {
			if again[i].Key != evs[i].Key {
				t.Fatalf("event %d: key %s then %s", i, evs[i].Key, again[i].Key)
			}
		}
	})
}
