package messages_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/messages"
)

func TestParseWASenderFixtures(t *testing.T) {
	const (
		sessAPIKey  = "s-059911af0740ac63" // "your_api_key"
		sessReceipt = "s-2f5ef897e7bbb4ba" // "your_session_id_here"
	)
	tests := map[string][]gwant{
		"wasender_messages_upsert.json": {{kind: messages.KindMessage, account: "default", id: "message-id-123", typ: "conversation",
			from: "15550000001", ts: 1633456789, identity: "wasender|message|default|direct|in|message-id-123"}},
		"wasender_messages_received.json": {{kind: messages.KindMessage, account: "default", id: "3EB0X123456789", typ: "conversation",
			from: "15550000001", ts: 1633456789, identity: "wasender|message|default|direct|in|3EB0X123456789"}},
		"wasender_message_sent.json": {{kind: messages.KindMessage, account: "default", id: "3EB0SENT0000000001", typ: "conversation",
			from: "15550000001", ts: 1633456800, identity: "wasender|message|default|direct|out|3EB0SENT0000000001"}},
		"wasender_messages_update.json": {{kind: messages.KindStatus, account: sessAPIKey, id: "34874643876", typ: "update", status: "sent",
			from: "15550000001", ts: 1747775431, identity: "wasender|status|" + sessAPIKey + "|direct|in|34874643876|sent"}},
		"wasender_message_receipt_update.json": {{kind: messages.KindStatus, account: sessReceipt, id: "message_id_here", typ: "receipt", status: "delivered",
			from: "participant_jid_here", ts: 1234567890,
			identity: "wasender|status|" + sessReceipt + "|group_jid_here@g.us|out|message_id_here|delivered|1234567890"}},
		"wasender_messages_delete.json": {{kind: messages.KindStatus, account: "default", id: "3EB0X123456789", typ: "delete", status: "deleted",
			from: "123456789@lid", ts: 1633456820, identity: "wasender|status|default|direct|in|3EB0X123456789|deleted"}},
		"wasender_messages_reaction.json": {{kind: messages.KindMessage, account: "default", id: "message-id-123", typ: "reaction",
			from: "+1234567890", ts: 1633456810, identity: "wasender|message|default|direct|in|message-id-123|reaction|message-id-123|👍"}},
		"wasender_session_status.json": {{kind: messages.KindField, account: "default", typ: "session.status", ts: 1633456789,
			identity: "wasender|field|default|session.status||0|" + sha256Hex(`{"status":"connected","session_id":"session-id-123"}`) + receivedWindow}},
		"wasender_qrcode_updated.json": {{kind: messages.KindField, account: "default", typ: "qrcode.updated", ts: 1633456789,
			identity: "wasender|field|default|qrcode.updated||0|" + sha256Hex(`{"qr":"2@FAKEQRCODEDATA","session_id":"session-id-123"}`) + receivedWindow}},
	}
	gatewayFixtures(t, messages.ProviderWASender, "wasender_", messages.ParseWASender, tests)
}

// wsBody is a WASenderApi body of event with data and, when not empty, a
// sessionId.
func wsBody(event, session string, ts int64, data string) string {
	s := ""
	if session != "" {
		s = `"sessionId":"` + session + `",`
	}
	return fmt.Sprintf(`{"event":%q,%s"timestamp":%d,"data":%s}`, event, s, ts, data)
}

// wsMessage is a message item with the given key members.
func wsMessage(key, text string) string {
	return `{"key":{` + key + `},"messageBody":"` + text + `","message":{"conversation":"` + text + `"}}`
}

// One message delivered with its chat in the phone form, then in the @lid
// form, through messages.upsert (array) and messages.received (object): one
// key. The chat address is not part of a one-to-one message's identity.
func TestWASenderFlippingChat(t *testing.T) {
	pn := wsMessage(`"id":"3EB0FLIP01","fromMe":false,"remoteJid":"15550000001@s.whatsapp.net","senderPn":"15550000001@s.whatsapp.net","cleanedSenderPn":"15550000001","senderLid":"123456789@lid","addressingMode":"pn"`, "hi")
	lid := wsMessage(`"id":"3EB0FLIP01","fromMe":false,"remoteJid":"123456789@lid","cleanedSenderPn":"15550000001","senderLid":"123456789@lid","addressingMode":"lid"`, "hi")
	lidBare := wsMessage(`"id":"3EB0FLIP01","fromMe":false,"remoteJid":"123456789:7@LID"`, "hi")
	deliveries := []string{
		wsBody("messages.upsert", "sess-key", 1750000000, `{"messages":[`+pn+`]}`),
		wsBody("messages.upsert", "sess-key", 1750000042, `{"messages":[`+lid+`]}`),
		wsBody("messages.received", "sess-key", 1750000043, `{"messages":`+lid+`}`),
		wsBody("messages.received", "sess-key", 1750000044, `{"messages":`+lidBare+`}`),
	}
	first := only(t, messages.ParseWASender, deliveries[0])
	for i, body := range deliveries[1:] {
		ev := only(t, messages.ParseWASender, body)
		if ev.Key != first.Key || ev.Identity != first.Identity {
			t.Errorf("delivery %d: identity %q, want %q", i+2, ev.Identity, first.Identity)
		}
		if ev.Fallback || ev.Account != first.Account {
			t.Errorf("delivery %d: fallback %v, account %q (first %q)", i+2, ev.Fallback, ev.Account, first.Account)
		}
	}
	if first.From != "15550000001" {
		t.Errorf("From %q, want the phone number", first.From)
	}

	// What tells messages apart still does: direction, id, group chat, session.
	others := map[string]string{
		"outbound":      wsBody("messages.upsert", "sess-key", 1, `{"messages":[`+wsMessage(`"id":"3EB0FLIP01","fromMe":true,"remoteJid":"15550000001@s.whatsapp.net"`, "hi")+`]}`),
		"another id":    wsBody("messages.upsert", "sess-key", 1, `{"messages":[`+wsMessage(`"id":"3EB0FLIP02","fromMe":false,"remoteJid":"15550000001@s.whatsapp.net"`, "hi")+`]}`),
		"group":         wsBody("messages.upsert", "sess-key", 1, `{"messages":[`+wsMessage(`"id":"3EB0FLIP01","fromMe":false,"remoteJid":"120363000000000001@g.us","participant":"15550000001@s.whatsapp.net"`, "hi")+`]}`),
		"other group":   wsBody("messages.upsert", "sess-key", 1, `{"messages":[`+wsMessage(`"id":"3EB0FLIP01","fromMe":false,"remoteJid":"120363000000000002@g.us","participant":"15550000001@s.whatsapp.net"`, "hi")+`]}`),
		"other session": wsBody("messages.upsert", "sess-key-2", 1, `{"messages":[`+pn+`]}`),
		"no session":    wsBody("messages.upsert", "", 1, `{"messages":[`+pn+`]}`),
	}
	keys := map[string]string{first.Key: "first"}
	for name, body := range others {
		ev := only(t, messages.ParseWASender, body)
		if prev, dup := keys[ev.Key]; dup {
			t.Errorf("%s: same key as %s (%s)", name, prev, ev.Identity)
		}
		keys[ev.Key] = name
	}
}

// A group message delivered once with its participant in phone form and once
// as a LID: one key (the participant is not part of the identity).
func TestWASenderFlippingParticipant(t *testing.T) {
	a := only(t, messages.ParseWASender, wsBody("messages.upsert", "", 1, `{"messages":[`+
		wsMessage(`"id":"3EB0GRP","fromMe":false,"remoteJid":"120363000000000001@g.us","participant":"15550000001@s.whatsapp.net"`, "x")+`]}`))
	b := only(t, messages.ParseWASender, wsBody("messages.upsert", "", 2, `{"messages":[`+
		wsMessage(`"id":"3EB0GRP","fromMe":false,"remoteJid":"120363000000000001@G.US","participant":"123456789@lid"`, "x")+`]}`))
	if a.Key != b.Key {
		t.Fatalf("identities %q and %q differ", a.Identity, b.Identity)
	}
	if a.From != "15550000001" || b.From != "123456789@lid" {
		t.Errorf("From %q and %q", a.From, b.From)
	}
}

// message.sent and messages.upsert of one outbound message: one key.
func TestWASenderSentAndUpsertShareKey(t *testing.T) {
	item := wsMessage(`"id":"3EB0OUT","fromMe":true,"remoteJid":"15550000001@s.whatsapp.net"`, "ok")
	sent := only(t, messages.ParseWASender, wsBody("message.sent", "k", 5, `{"messages":`+item+`}`))
	sentData := only(t, messages.ParseWASender, wsBody("message.sent", "k", 6, item))
	upsert := only(t, messages.ParseWASender, wsBody("messages.upsert", "k", 7, `{"messages":[`+item+`],"type":"append"}`))
	if sent.Key != upsert.Key || sentData.Key != upsert.Key {
		t.Fatalf("identities %q, %q, %q differ", sent.Identity, sentData.Identity, upsert.Identity)
	}
}

// Statuses: each value of one message is its own event; the same status
// delivered twice (the chat flipped, the envelope time changed) is one.
func TestWASenderStatuses(t *testing.T) {
	upd := func(jid string, status string, ts int64) string {
		return wsBody("messages.update", "k", ts, `{"update":{"status":`+status+`},"key":{"remoteJid":"`+jid+`","id":"3EB0ST","fromMe":true}}`)
	}
	keys := map[string]string{}
	for i, want := range []string{"error", "pending", "sent", "delivered", "read", "played"} {
		ev := only(t, messages.ParseWASender, upd("15550000001@s.whatsapp.net", fmt.Sprint(i), 1747775431467))
		if ev.Kind != messages.KindStatus || ev.Status != want || ev.Fallback {
			t.Errorf("status %d: kind %s status %q fallback %v, want %q", i, ev.Kind, ev.Status, ev.Fallback, want)
		}
		again := only(t, messages.ParseWASender, upd("123456789@lid", `"`+strings.ToUpper(want)+`"`, 1747775439999))
		if again.Key != ev.Key {
			t.Errorf("status %s: redelivery %q, want %q", want, again.Identity, ev.Identity)
		}
		if prev, dup := keys[ev.Key]; dup {
			t.Errorf("status %s: same key as %s", want, prev)
		}
		keys[ev.Key] = want
	}
	if ev := only(t, messages.ParseWASender, upd("x@s.whatsapp.net", "9", 1)); ev.Status != "9" || ev.Fallback {
		t.Errorf("undocumented status: %q fallback %v", ev.Status, ev.Fallback)
	}
	// A status is not its message.
	msg := only(t, messages.ParseWASender, wsBody("messages.upsert", "k", 1, `{"messages":[`+wsMessage(`"id":"3EB0ST","fromMe":true,"remoteJid":"x@s.whatsapp.net"`, "a")+`]}`))
	if _, dup := keys[msg.Key]; dup {
		t.Error("the message has the key of one of its statuses")
	}
	// An array of updates (as the SDK types it): one event each.
	evs := gparse(t, messages.ParseWASender, wsBody("messages.update", "k", 1,
		`[{"update":{"status":3},"key":{"id":"A","fromMe":true,"remoteJid":"x@c.us"}},{"update":{"status":4},"key":{"id":"A","fromMe":true,"remoteJid":"x@c.us"}}]`))
	if len(evs) != 2 || evs[0].Status != "delivered" || evs[1].Status != "read" || evs[0].Key == evs[1].Key {
		t.Errorf("array of updates: %+v", evs)
	}
}

// Receipts: per status and own time; the user's address (device, @lid or
// phone form) is not part of the identity, since it flips between deliveries.
func TestWASenderReceipts(t *testing.T) {
	rc := func(user, receipt string) string {
		return wsBody("message-receipt.update", "k", 1234567890123, `{"message":{"key":{"remoteJid":"120363000000000001@g.us","id":"3EB0RC","fromMe":true},"receipt":{"userJid":"`+user+`",`+receipt+`}}}`)
	}
	delivered := only(t, messages.ParseWASender, rc("15550000001@s.whatsapp.net", `"receiptTimestamp":1700000000`))
	read := only(t, messages.ParseWASender, rc("15550000001@s.whatsapp.net", `"receiptTimestamp":1700000000,"readTimestamp":1700000100`))
	played := only(t, messages.ParseWASender, rc("15550000001@s.whatsapp.net", `"playedTimestamp":1700000200`))
	otherUser := only(t, messages.ParseWASender, rc("15550000002@s.whatsapp.net", `"receiptTimestamp":1700000007`))
	device := only(t, messages.ParseWASender, rc("15550000001:3@s.whatsapp.net", `"receiptTimestamp":1700000000`))
	lid := only(t, messages.ParseWASender, rc("123456789012345@lid", `"receiptTimestamp":1700000000`))
	if lid.Key != delivered.Key {
		t.Errorf("the same receipt with the user as a LID: %q, want %q", lid.Identity, delivered.Identity)
	}
	sdk := gparse(t, messages.ParseWASender, wsBody("message-receipt.update", "k", 1,
		`[{"key":{"remoteJid":"120363000000000001@g.us","id":"3EB0RC","fromMe":true},"receipt":{"userJid":"15550000001@s.whatsapp.net","status":"read","t":1700000100}}]`))
	if delivered.Status != "delivered" || read.Status != "read" || played.Status != "played" {
		t.Errorf("statuses %q %q %q", delivered.Status, read.Status, played.Status)
	}
	if read.Timestamp != 1700000100 || delivered.Timestamp != 1700000000 || delivered.From != "15550000001" {
		t.Errorf("read at %d, delivered at %d from %q", read.Timestamp, delivered.Timestamp, delivered.From)
	}
	if device.Key != delivered.Key {
		t.Errorf("another device of the same user: %q, want %q", device.Identity, delivered.Identity)
	}
	if len(sdk) != 1 || sdk[0].Key != read.Key || sdk[0].Timestamp != 1700000100 {
		t.Errorf("SDK-shaped receipt %+v, want the key of %q", sdk, read.Identity)
	}
	seen := map[string]bool{}
	for _, ev := range []messages.Event{delivered, read, played, otherUser} {
		if seen[ev.Key] {
			t.Errorf("%q: key seen before", ev.Identity)
		}
		seen[ev.Key] = true
	}
}

// A reaction is a message of its own: never the key of the message it
// reacts to, one key per emoji.
func TestWASenderReactions(t *testing.T) {
	msg := only(t, messages.ParseWASender, wsBody("messages.upsert", "", 1, `{"messages":[`+wsMessage(`"id":"3EB0R","fromMe":false,"remoteJid":"15550000001@s.whatsapp.net"`, "a")+`]}`))
	react := func(text string, ownKey string) messages.Event {
		return only(t, messages.ParseWASender, wsBody("messages.reaction", "", 2,
			`[{"key":{"id":"3EB0R","fromMe":false,"remoteJid":"123456789@lid"},"reaction":{"text":"`+text+`",`+ownKey+`"senderTimestampMs":"1700000000123"}}]`))
	}
	up := react("👍", ``)
	heart := react("❤", ``)
	own := react("👍", `"key":{"id":"3EB0OWN","fromMe":true,"remoteJid":"15550000001@s.whatsapp.net"},`)
	for _, ev := range []messages.Event{up, heart, own} {
		if ev.Key == msg.Key || ev.Kind != messages.KindMessage || ev.Type != "reaction" || ev.Timestamp != 1700000000 {
			t.Errorf("reaction %q: kind %s type %q ts %d (message %q)", ev.Identity, ev.Kind, ev.Type, ev.Timestamp, msg.Identity)
		}
	}
	if up.Key == heart.Key || up.Key == own.Key {
		t.Errorf("reactions share a key: %q %q %q", up.Identity, heart.Identity, own.Identity)
	}
	if want := "wasender|message|default|direct|out|3EB0OWN|reaction|3EB0R|👍"; own.Identity != want {
		t.Errorf("identity %q, want %q", own.Identity, want)
	}
}

// messages.delete in each of its shapes: one status "deleted" per key.
func TestWASenderDeletes(t *testing.T) {
	key := `{"id":"3EB0DEL","fromMe":false,"remoteJid":"15550000001@s.whatsapp.net"}`
	var first string
	for _, data := range []string{`{"keys":[` + key + `]}`, `{"key":` + key + `}`, key, `[` + key + `]`, `[{"key":` + key + `}]`} {
		ev := only(t, messages.ParseWASender, wsBody("messages.delete", "", 1, data))
		if ev.Status != "deleted" || ev.ID != "3EB0DEL" || ev.Fallback {
			t.Errorf("%s: %+v", data, ev)
		}
		if first == "" {
			first = ev.Key
		} else if ev.Key != first {
			t.Errorf("%s: identity %q differs", data, ev.Identity)
		}
	}
	evs := gparse(t, messages.ParseWASender, wsBody("messages.delete", "", 1, `{"keys":[`+key+`,{"id":"3EB0DEL2","fromMe":true,"remoteJid":"x@lid"}]}`))
	if len(evs) != 2 || evs[0].Key == evs[1].Key {
		t.Errorf("two keys: %+v", evs)
	}
}

// A message without a usable key.id gets the fallback identity: sender,
// timestamp and content hash, marked Fallback; stable across deliveries,
// different for different content.
func TestWASenderFallback(t *testing.T) {
	noID := func(key, text string, envTS int64) string {
		return wsBody("messages.upsert", "", envTS, `{"messages":[{"key":{`+key+`},"messageTimestamp":1700000000,"message":{"conversation":"`+text+`"}}]}`)
	}
	a := only(t, messages.ParseWASender, noID(`"fromMe":false,"remoteJid":"15550000001@s.whatsapp.net"`, "hello", 1))
	again := only(t, messages.ParseWASender, noID(`"fromMe":false,"remoteJid":"15550000001@s.whatsapp.net"`, "hello", 99))
	other := only(t, messages.ParseWASender, noID(`"fromMe":false,"remoteJid":"15550000001@s.whatsapp.net"`, "hello!", 1))
	for _, ev := range []messages.Event{a, again, other} {
		if !ev.Fallback || ev.Kind != messages.KindMessage {
			t.Fatalf("%q: fallback %v kind %s", ev.Identity, ev.Fallback, ev.Kind)
		}
	}
	if !strings.HasPrefix(a.Identity, "wasender|message|default|fallback|15550000001|1700000000||") {
		t.Errorf("identity %q", a.Identity)
	}
	if a.Key != again.Key || a.Key == other.Key {
		t.Errorf("keys: same content %v, other content %v", a.Key == again.Key, a.Key == other.Key)
	}
	for _, key := range []string{`"id":"","fromMe":false`, `"id":7`, `"id":"\ud800"`, `"id":null`} {
		if ev := only(t, messages.ParseWASender, noID(key, "x", 1)); !ev.Fallback {
			t.Errorf("key {%s}: no fallback", key)
		}
	}
	// A status without a value.
	if ev := only(t, messages.ParseWASender, wsBody("messages.update", "", 1, `{"update":{},"key":{"id":"A","fromMe":true}}`)); !ev.Fallback || ev.Kind != messages.KindStatus {
		t.Errorf("status without a value: %+v", ev)
	}
}

// The sessionId (an API key at WASenderApi) is never written as it is: not in
// an identity, an account or a subject.
func TestWASenderSessionHidden(t *testing.T) {
	const apiKey = "b1946ac92492d2347c6235b4d2611184"
	evs := gparse(t, messages.ParseWASender, wsBody("messages.upsert", apiKey, 1,
		`{"messages":[`+wsMessage(`"id":"A","fromMe":false,"remoteJid":"x@lid"`, "a")+`,`+wsMessage(`"id":"","fromMe":false,"remoteJid":"x@lid"`, "b")+`,3]}`))
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	for _, ev := range evs {
		data, err := ev.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), apiKey) || strings.Contains(messages.Subject(ev), apiKey) {
			t.Errorf("event %q carries the sessionId", ev.Identity)
		}
		if !strings.HasPrefix(ev.Account, "s-") || len(ev.Account) != 18 {
			t.Errorf("account %q", ev.Account)
		}
	}
}

func TestParseWASenderNotWebhook(t *testing.T) {
	// {"event":1,"data":{}} holds the provider's data: it is kept
	// (TestWASenderEventNotAString); only what holds no data is refused.
	checkNotWebhook(t, messages.ParseWASender,
		``, `  `, `not json`, `{"event":"messages.upsert"`, `[]`, `"messages.upsert"`, `{}`,
		`{"event":1}`, `{"event":null}`, `{"messages":[]}`,
	)
}

// A body whose event is not a string but which holds data is read as one
// without an event, not refused: refusing an authenticated body loses it.
func TestWASenderEventNotAString(t *testing.T) {
	const msg = `{"key":{"remoteJid":"15550000001@s.whatsapp.net","fromMe":false,"id":"3EB0AA"},"message":{"conversation":"hi"}}`
	m := only(t, messages.ParseWASender, `{"event":1,"data":`+msg+`}`)
	absent := only(t, messages.ParseWASender, `{"data":`+msg+`}`)
	if m.Kind != messages.KindMessage || m.ID != "3EB0AA" || m.Key != absent.Key {
		t.Errorf("%+v, want %q", m, absent.Identity)
	}
	if u := only(t, messages.ParseWASender, `{"event":1,"data":{}}`); u.Kind != messages.KindUnknown {
		t.Errorf("empty data: %+v", u)
	}
}

// Inside a valid envelope, what wagate cannot read is kept as unknown
// events, never an error.
func TestWASenderUnknownShapes(t *testing.T) {
	cases := []struct {
		body  string
		kinds []messages.Kind
		types []string
	}{
		{`{"event":"messages.upsert"}`, []messages.Kind{"unknown"}, []string{"messages.upsert"}},
		{`{"event":"messages.upsert","data":"x"}`, []messages.Kind{"unknown"}, []string{"messages.upsert"}},
		{`{"event":"messages.upsert","data":{"messages":[]}}`, []messages.Kind{"unknown"}, []string{"messages.upsert"}},
		{`{"event":"messages.upsert","data":{"messages":[1,{"key":{"id":"A"}}]}}`, []messages.Kind{"unknown", "message"}, []string{"messages.upsert", ""}},
		{`{"event":"messages.update","data":[null]}`, []messages.Kind{"unknown"}, []string{"messages.update"}},
		{`{"event":"messages.reaction","data":{}}`, []messages.Kind{"message"}, []string{"reaction"}},
		{`{"event":"poll.results","sessionId":"k","data":{"key":{"id":"P"}},"webhookId":"w1","event":"x"}`,
			[]messages.Kind{"unknown", "unknown", "unknown"}, []string{"envelope.event", "envelope.webhookId", "x"}},
		{`{"event":"session.status"}`, []messages.Kind{"unknown"}, []string{"session.status"}},
		{`{"event":"messages.upsert","key":{"id":"A"}}`, []messages.Kind{"unknown", "unknown"}, []string{"envelope.key", "messages.upsert"}},
	}
	for _, c := range cases {
		evs := gparse(t, messages.ParseWASender, c.body)
		var kinds []messages.Kind
		var types []string
		for _, ev := range evs {
			kinds = append(kinds, ev.Kind)
			types = append(types, ev.Type)
		}
		if fmt.Sprint(kinds) != fmt.Sprint(c.kinds) || fmt.Sprint(types) != fmt.Sprint(c.types) {
			t.Errorf("%s: kinds %v types %q, want %v %q", c.body, kinds, types, c.kinds, c.types)
		}
	}
}

// session.status has neither an id nor a time of its own: it is transient,
// the envelope's timestamp is not part of its identity, and the repeat
// window it was received in is (a session that flaps is seen each time).
func TestWASenderSessionStatusTimes(t *testing.T) {
	at := func(envelope int64, received time.Time, data string) messages.Event {
		t.Helper()
		evs, err := messages.ParseWASender([]byte(wsBody("session.status", "k", envelope, data)), received)
		if err != nil || len(evs) != 1 || !evs[0].Transient {
			t.Fatalf("%v %+v", err, evs)
		}
		messages.Window(evs, time.Hour)
		return evs[0]
	}
	t0 := time.Date(2026, 1, 1, 10, 5, 0, 0, time.UTC)
	a := at(1700000000, t0, `{"status":"connected"}`)
	retry := at(1700000600, t0.Add(20*time.Minute), `{ "status" : "connected" }`)
	later := at(1700000000, t0.Add(3*time.Hour), `{"status":"connected"}`)
	other := at(1700000000, t0, `{"status":"disconnected"}`)
	if a.Key != retry.Key || a.Key == later.Key || a.Key == other.Key {
		t.Errorf("identities %q, %q, %q, %q", a.Identity, retry.Identity, later.Identity, other.Identity)
	}
	if want := "|window|" + fmt.Sprint(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC).Unix()); !strings.HasSuffix(a.Identity, want) {
		t.Errorf("identity %q, want it to end %q", a.Identity, want)
	}
}

// ExampleParseWASender shows one message delivered twice, its chat first in
// the phone form, then as a LID: one identity, one key.
func ExampleParseWASender() {
	for _, jid := range []string{"15550000001@s.whatsapp.net", "123456789@lid"} {
		body := []byte(`{"event":"messages.upsert","timestamp":1633456789,"data":{"messages":[` +
			`{"key":{"id":"3EB0X123456789","fromMe":false,"remoteJid":"` + jid + `","cleanedSenderPn":"15550000001"},` +
			`"message":{"conversation":"Hello!"}}]}}`)
		evs, err := messages.ParseWASender(body, time.Now())
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(evs[0].Kind, evs[0].From, evs[0].Identity, evs[0].Key)
	}
	// Output:
	// message 15550000001 wasender|message|default|direct|in|3EB0X123456789 wa:8ecZESS8xCMx2s0L27la-Q
	// message 15550000001 wasender|message|default|direct|in|3EB0X123456789 wa:8ecZESS8xCMx2s0L27la-Q
}

// A body with the provider's data and no event name, absent or written
// null, is stored: its data read as messages, else kept as one unknown
// event. An authenticated body refused 4xx would be lost for good.
func TestWASenderDataWithoutEventName(t *testing.T) {
	msg := `{"messages":{"key":{"id":"3EB0C0FFEE","fromMe":false,"remoteJid":"15550001001@s.whatsapp.net"},"message":{"conversation":"hi"}}}`
	want := only(t, messages.ParseWASender, `{"event":"messages.received","sessionId":"s1","data":`+msg+`}`).Key
	for _, body := range []string{
		`{"sessionId":"s1","data":` + msg + `}`,
		`{"event":null,"sessionId":"s1","data":` + msg + `}`,
		`{"event" : null ,"sessionId":"s1","data":` + msg + `}`,
	} {
		if ev := only(t, messages.ParseWASender, body); ev.Kind != messages.KindMessage || ev.Key != want {
			t.Errorf("%s: %s %s, want the message's key %s", body, ev.Kind, ev.Key, want)
		}
	}
	if ev := only(t, messages.ParseWASender, `{"event":null,"data":{"state":"x"}}`); ev.Kind != messages.KindUnknown {
		t.Errorf("data of no message: %s", ev.Kind)
	}
}
