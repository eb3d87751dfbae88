package messages_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/wagate/wagate/messages"
)

func TestParseEvolutionFixtures(t *testing.T) {
	tests := map[string][]gwant{
		"evolution_messages_upsert.json": {{kind: messages.KindMessage, account: "shop-main", id: "3EB0A1B2C3D4E5F60718", typ: "conversation",
			from: "5511900000001", ts: 1763771103, identity: "evolution|message|shop-main|direct|in|3EB0A1B2C3D4E5F60718"}},
		"evolution_send_message.json": {{kind: messages.KindMessage, account: "shop-main", id: "3EB0FFEEDDCCBBAA9988", typ: "extendedTextMessage",
			from: "190000000000001@lid", ts: 1763771160, identity: "evolution|message|shop-main|direct|out|3EB0FFEEDDCCBBAA9988"}},
		"evolution_messages_update.json": {{kind: messages.KindStatus, account: "shop-main", id: "3EB0FFEEDDCCBBAA9988", typ: "update", status: "read",
			from: "5511900000001", identity: "evolution|status|shop-main|direct|out|3EB0FFEEDDCCBBAA9988|read"}},
		"evolution_connection_update.json": {{kind: messages.KindField, account: "shop-main", typ: "connection.update",
			identity: "evolution|field|shop-main|connection.update||0|" + sha256Hex(`{"instance":"shop-main","state":"open","statusReason":200}`) + receivedWindow}},
	}
	gatewayFixtures(t, messages.ProviderEvolution, "evolution_", messages.ParseEvolution, tests)
}

func evoBody(event, data string) string {
	return `{"event":"` + event + `","instance":"shop","data":` + data + `,"destination":"https://h.example/x","date_time":"2025-11-21T21:25:03.966Z",` +
		`"sender":"5500000000002@s.whatsapp.net","server_url":"http://localhost:8080","apikey":"SECRET-INSTANCE-KEY"}`
}

// One message seen as messages.upsert and send.message, its chat written as
// a phone JID then as a LID, in upper-case event names too: one key.
func TestEvolutionOneMessageOneKey(t *testing.T) {
	msg := func(chat string) string {
		return `{"key":{"remoteJid":"` + chat + `","fromMe":true,"id":"3EB0AA"},"message":{"conversation":"x"},"messageTimestamp":1763771103}`
	}
	a := only(t, messages.ParseEvolution, evoBody("messages.upsert", msg("5511900000001@s.whatsapp.net")))
	b := only(t, messages.ParseEvolution, evoBody("send.message", msg("190000000000001@lid")))
	c := only(t, messages.ParseEvolution, evoBody("MESSAGES_UPSERT", msg("5511900000001@s.whatsapp.net")))
	if a.Key != b.Key || a.Key != c.Key || a.Direction != "outbound" {
		t.Errorf("identities %q %q %q, direction %q", a.Identity, b.Identity, c.Identity, a.Direction)
	}
	if c.Context.Field != "messages.upsert" {
		t.Errorf("field %q", c.Context.Field)
	}
	group := only(t, messages.ParseEvolution, evoBody("messages.upsert", `{"key":{"remoteJid":"120363000000000001@g.us","fromMe":true,"id":"3EB0AA","participant":"5511@s.whatsapp.net"}}`))
	if group.Key == a.Key {
		t.Error("a group message has the key of a direct one with the same id")
	}
}

// Statuses in both shapes Evolution API writes; deletions; calls; fields.
func TestEvolutionEvents(t *testing.T) {
	v2 := only(t, messages.ParseEvolution, evoBody("messages.update", `{"keyId":"3EB0AA","remoteJid":"5511@s.whatsapp.net","fromMe":true,"status":"DELIVERY_ACK"}`))
	baileys := only(t, messages.ParseEvolution, evoBody("messages.update", `{"key":{"id":"3EB0AA","remoteJid":"1900@lid","fromMe":true},"update":{"status":3}}`))
	read := only(t, messages.ParseEvolution, evoBody("messages.update", `{"keyId":"3EB0AA","remoteJid":"5511@s.whatsapp.net","fromMe":true,"status":"READ"}`))
	if v2.Status != "delivered" || baileys.Status != "delivered" || v2.Key != baileys.Key || read.Key == v2.Key || read.Status != "read" {
		t.Errorf("statuses %q %q %q; identities %q %q %q", v2.Status, baileys.Status, read.Status, v2.Identity, baileys.Identity, read.Identity)
	}
	del := only(t, messages.ParseEvolution, evoBody("messages.delete", `{"key":{"id":"3EB0AA","remoteJid":"5511@s.whatsapp.net","fromMe":true}}`))
	if del.Kind != messages.KindStatus || del.Status != "deleted" || del.Identity != "evolution|status|shop|direct|out|3EB0AA|deleted" {
		t.Errorf("deletion %+v", del)
	}
	calls := gparse(t, messages.ParseEvolution, evoBody("call", `[{"id":"CALL1","from":"5511@s.whatsapp.net","status":"offer","date":"2025-09-22T21:34:00.000Z"},{"id":"CALL1","from":"5511@s.whatsapp.net","status":"reject"}]`))
	if len(calls) != 2 || calls[0].Kind != messages.KindCall || calls[0].Identity != "evolution|call|shop|CALL1|offer" || calls[1].Identity != "evolution|call|shop|CALL1|reject" {
		t.Errorf("calls %+v", calls)
	}
	contacts := gparse(t, messages.ParseEvolution, evoBody("contacts.update", `[{"remoteJid":"a@s.whatsapp.net"},{"remoteJid":"b@s.whatsapp.net"}]`))
	if len(contacts) != 2 || contacts[0].Kind != messages.KindField || !contacts[0].Transient || contacts[0].Key == contacts[1].Key {
		t.Errorf("contacts %+v", contacts)
	}
	for _, name := range []string{"GROUP_PARTICIPANTS_UPDATE", "group-participants.update", "NEW_JWT_TOKEN", "TYPEBOT_CHANGE_STATUS", "CONNECTION_UPDATE", "LABELS_ASSOCIATION"} {
		if ev := only(t, messages.ParseEvolution, evoBody(name, `{"id":"x"}`)); ev.Kind != messages.KindField {
			t.Errorf("%s: kind %s, field %q", name, ev.Kind, ev.Context.Field)
		}
	}
	future := only(t, messages.ParseEvolution, evoBody("some.future.event", `{"x":1}`))
	if future.Kind != messages.KindUnknown || future.Type != "some.future.event" {
		t.Errorf("undocumented event %+v", future)
	}
	// A body with data but no event name is Evolution API's envelope and is
	// kept (TestEvolutionNoEventName): only what holds no data is refused.
	checkNotWebhook(t, messages.ParseEvolution, ``, `[]`, `{"instance":"x"}`, `{"event":5}`)
}

// An authenticated body refused is lost for good: one with data but no
// string event is kept, a WAMessage as a message, anything else as unknown.
func TestEvolutionNoEventName(t *testing.T) {
	const msg = `{"key":{"remoteJid":"5511@s.whatsapp.net","fromMe":false,"id":"3EB0AA"},"message":{"conversation":"hi"},"messageTimestamp":1717000000}`
	for _, ev := range []string{``, `"event":null,`, `"event":5,`} {
		m := only(t, messages.ParseEvolution, `{`+ev+`"instance":"shop","data":`+msg+`}`)
		named := only(t, messages.ParseEvolution, evoBody("messages.upsert", msg))
		if m.Kind != messages.KindMessage || m.ID != "3EB0AA" || m.Account != "shop" || m.Type != "conversation" {
			t.Errorf("%s: %+v", ev, m)
		}
		if named.Key != m.Key {
			t.Errorf("%s: identity %q, as messages.upsert %q", ev, m.Identity, named.Identity)
		}
		u := only(t, messages.ParseEvolution, `{`+ev+`"instance":"i","data":{"key":{"id":"X"},"update":{"status":"READ"}}}`)
		again := only(t, messages.ParseEvolution, `{`+ev+`"instance":"i","data":{"key":{"id":"X"},"update":{"status":"READ"}}}`)
		other := only(t, messages.ParseEvolution, `{`+ev+`"instance":"i","data":{"key":{"id":"Y"},"update":{"status":"READ"}}}`)
		if u.Kind != messages.KindUnknown || u.Account != "i" || u.Key != again.Key || u.Key == other.Key {
			t.Errorf("%s: unknown %+v; again %q, other %q", ev, u, again.Identity, other.Identity)
		}
	}
	if evs := gparse(t, messages.ParseEvolution, `{"instance":"x","data":{}}`); len(evs) != 1 || evs[0].Kind != messages.KindUnknown {
		t.Errorf("empty data: %+v", evs)
	}
}

// The instance's apikey never reaches an event: items are taken from data,
// and a body without data is kept with the key redacted.
func TestEvolutionAPIKeyNeverStored(t *testing.T) {
	for _, body := range []string{
		evoBody("messages.upsert", `{"key":{"remoteJid":"5511@s.whatsapp.net","fromMe":false,"id":"3EB0AA"}}`),
		evoBody("qrcode.updated", `{"qrcode":{"code":"2@abc"}}`),
		`{"event":"logout.instance","instance":"shop","apikey":"SECRET-INSTANCE-KEY","apikey":"SECRET-INSTANCE-KEY","date_time":"2025-11-21T21:25:03.966Z"}`,
		`{"event":"x","instance":"shop","data":{},"apikey":"SECRET-INSTANCE-KEY","extra":"SECRET-INSTANCE-KEY-not-a-key-member"}`,
		`{"apikey" : "SECRET-INSTANCE-KEY","event":"messages.upsert","instance":"shop","data":[{"key":{"remoteJid":"5511@s.whatsapp.net","fromMe":false,"id":"3EB0AA"}},{"key":{"remoteJid":"5511@s.whatsapp.net","fromMe":false,"id":"3EB0AB"}}],"apikey":"SECRET-INSTANCE-KEY"}`,
	} {
		for _, ev := range gparse(t, messages.ParseEvolution, body) {
			if ev.Type == "envelope.extra" {
				continue
			}
			enc, err := ev.Encode()
			if err != nil {
				t.Fatal(err)
			}
			// The frame's parts travel base64-encoded in the event: read
			// them decoded too, and the body a provider format forward
			// writes back from them.
			f := ev.Context.Frame
			back := string(f.Before) + string(ev.Item) + string(f.After)
			for what, s := range map[string]string{"event": string(enc), "frame": back} {
				if strings.Contains(s, `SECRET-INSTANCE-KEY"`) {
					t.Errorf("%s: %s holds the apikey: %s", body, what, s)
				}
			}
			if f.Body && !json.Valid([]byte(back)) {
				t.Errorf("%s: frame around the item is not JSON: %s", body, back)
			}
			if f.Body && !strings.Contains(back, `"apikey":"[redacted]"`) && !strings.Contains(back, `"apikey" : "[redacted]"`) {
				t.Errorf("%s: frame lost the apikey member: %s", body, back)
			}
		}
	}
	ev := only(t, messages.ParseEvolution, `{"event":"logout.instance","instance":"shop","apikey":"SECRET-INSTANCE-KEY"}`)
	if ev.Kind != messages.KindUnknown || !strings.Contains(string(ev.Item), `"apikey":"[redacted]"`) || !strings.Contains(string(ev.Item), `"instance":"shop"`) {
		t.Errorf("body without data: item %s", ev.Item)
	}
}
