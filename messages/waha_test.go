package messages_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/messages"
)

func TestParseWAHAFixtures(t *testing.T) {
	tests := map[string][]gwant{
		"waha_message.json": {{kind: messages.KindMessage, account: "default", id: "true_11111111111@c.us_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
			typ: "chat", from: "11111111111", ts: 1667561485, identity: "waha|message|default|direct|out|AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}},
		"waha_message_ack.json": {{kind: messages.KindStatus, account: "default", id: "true_11111111111@c.us_AAAAA", typ: "ack", status: "read",
			from: "11111111111", ts: 1634567890, identity: "waha|status|default|direct|out|AAAAA|read|0"}},
		"waha_message_reaction.json": {{kind: messages.KindMessage, account: "default", id: "false_11111111111@c.us_BBBBB", typ: "reaction",
			from: "11111111111", ts: 1634567890, identity: "waha|message|default|direct|in|BBBBB|reaction|AAAAA|❤️"}},
		"waha_session_status.json": {{kind: messages.KindField, account: "default", typ: "session.status", ts: 1634567890,
			identity: "waha|field|default|session.status||0|" + sha256Hex(`{"name":"default","status":"STOPPED"}`) + receivedWindow}},
	}
	gatewayFixtures(t, messages.ProviderWAHA, "waha_", messages.ParseWAHA, tests)
}

// wahaBody is a WAHA body of event in session with an envelope id and time
// (both of which change from one delivery to the next) and payload.
func wahaBody(event, session, evtID string, ts int64, payload string) string {
	return fmt.Sprintf(`{"id":%q,"timestamp":%d,"session":%q,"metadata":{"tenant":"t1"},"engine":"NOWEB","event":%q,"payload":%s,`+
		`"me":{"id":"15550000000@c.us","lid":"999@lid","pushName":"Shop"},"environment":{"tier":"PLUS","version":"2026.1.1"}}`,
		evtID, ts, session, event, payload)
}

// wahaMsg is a message payload.
func wahaMsg(id, from, to string, fromMe bool, extra string) string {
	return fmt.Sprintf(`{"id":%q,"timestamp":1700000000,"from":%q,"fromMe":%t,"to":%q,"body":"hi","hasMedia":false%s}`, id, from, fromMe, to, extra)
}

// One message delivered with its serialised id in the @c.us form, then in the
// @lid form, as message and as message.any, each time with a new envelope id
// and time (the transport's): one key.
func TestWAHAFlippingChatAndTransportIDs(t *testing.T) {
	deliveries := []string{
		wahaBody("message", "default", "evt_01A", 1700000000111, wahaMsg("false_15550000001@c.us_3EB0F00D", "15550000001@c.us", "15550000000@c.us", false, "")),
		wahaBody("message", "default", "evt_01B", 1700000002222, wahaMsg("false_123456789@lid_3EB0F00D", "123456789@lid", "15550000000@c.us", false, "")),
		wahaBody("message.any", "default", "evt_01C", 1700000003333, wahaMsg("false_123456789@lid_3EB0F00D", "123456789@lid", "15550000000@c.us", false, "")),
		wahaBody("message.any", "default", "evt_01D", 1700000004444, wahaMsg("false_15550000001@s.whatsapp.net_3EB0F00D", "15550000001@s.whatsapp.net", "15550000000@c.us", false, "")),
	}
	first := only(t, messages.ParseWAHA, deliveries[0])
	if want := "waha|message|default|direct|in|3EB0F00D"; first.Identity != want {
		t.Fatalf("identity %q, want %q", first.Identity, want)
	}
	for i, body := range deliveries[1:] {
		if ev := only(t, messages.ParseWAHA, body); ev.Key != first.Key {
			t.Errorf("delivery %d: identity %q, want %q", i+2, ev.Identity, first.Identity)
		}
	}
	if first.From != "15550000001" || first.Timestamp != 1700000000 || string(first.Context.Metadata) != `{"tenant":"t1"}` {
		t.Errorf("from %q ts %d metadata %s", first.From, first.Timestamp, first.Context.Metadata)
	}

	others := map[string]string{
		"outbound":      wahaBody("message.any", "default", "e", 1, wahaMsg("true_15550000001@c.us_3EB0F00D", "15550000000@c.us", "15550000001@c.us", true, "")),
		"another id":    wahaBody("message", "default", "e", 1, wahaMsg("false_15550000001@c.us_3EB0F00E", "15550000001@c.us", "", false, "")),
		"group":         wahaBody("message", "default", "e", 1, wahaMsg("false_120363000000000001@g.us_3EB0F00D_15550000001@c.us", "120363000000000001@g.us", "", false, `,"participant":"15550000001@c.us"`)),
		"other session": wahaBody("message", "sales", "e", 1, wahaMsg("false_15550000001@c.us_3EB0F00D", "15550000001@c.us", "", false, "")),
	}
	keys := map[string]string{first.Key: "first"}
	for name, body := range others {
		ev := only(t, messages.ParseWAHA, body)
		if prev, dup := keys[ev.Key]; dup {
			t.Errorf("%s: same key as %s (%s)", name, prev, ev.Identity)
		}
		keys[ev.Key] = name
	}
}

// A group message whose participant flips between phone and LID form: one
// key; From is the participant.
func TestWAHAFlippingParticipant(t *testing.T) {
	a := only(t, messages.ParseWAHA, wahaBody("message", "default", "e1", 1, wahaMsg(
		"false_120363000000000001@g.us_3EB0GG_15550000001@c.us", "120363000000000001@g.us", "", false, `,"participant":"15550000001@c.us"`)))
	b := only(t, messages.ParseWAHA, wahaBody("message", "default", "e2", 2, wahaMsg(
		"false_120363000000000001@g.us_3EB0GG_123456789@lid", "120363000000000001@g.us", "", false, `,"participant":"123456789@lid"`)))
	if a.Key != b.Key {
		t.Fatalf("identities %q and %q differ", a.Identity, b.Identity)
	}
	if want := "waha|message|default|120363000000000001@g.us|in|3EB0GG"; a.Identity != want {
		t.Errorf("identity %q, want %q", a.Identity, want)
	}
	if a.From != "15550000001" || b.From != "123456789@lid" {
		t.Errorf("From %q and %q", a.From, b.From)
	}
}

func TestWAHAAcks(t *testing.T) {
	ack := func(id, fields string) messages.Event {
		return only(t, messages.ParseWAHA, wahaBody("message.ack", "default", "evt", 1700000009000, `{"id":"`+id+`","from":"15550000000@c.us","to":"15550000001@c.us","fromMe":true,`+fields+`}`))
	}
	keys := map[string]string{}
	for n, name := range []string{"error", "pending", "server", "device", "read", "played"} {
		byName := ack("true_15550000001@c.us_3EB0ACK", `"ack":`+fmt.Sprint(n-1)+`,"ackName":"`+strings.ToUpper(name)+`"`)
		byNumber := ack("true_123456789@lid_3EB0ACK", `"ack":`+fmt.Sprint(n-1))
		if byName.Status != name || byNumber.Status != name || byName.Key != byNumber.Key {
			t.Errorf("ack %d: statuses %q %q, identities %q %q", n-1, byName.Status, byNumber.Status, byName.Identity, byNumber.Identity)
		}
		if byName.From != "15550000001" || byName.Timestamp != 1700000009 {
			t.Errorf("ack %s: from %q ts %d", name, byName.From, byName.Timestamp)
		}
		if prev, dup := keys[byName.Key]; dup {
			t.Errorf("ack %s: key of %s", name, prev)
		}
		keys[byName.Key] = name
	}
	msg := only(t, messages.ParseWAHA, wahaBody("message.any", "default", "e", 1, wahaMsg("true_15550000001@c.us_3EB0ACK", "15550000000@c.us", "15550000001@c.us", true, "")))
	if _, dup := keys[msg.Key]; dup {
		t.Error("the message has the key of one of its acks")
	}
	// A group ack's participant is written as a @c.us or a @lid address,
	// in the payload and in the suffix of the serialised id: neither is part
	// of the identity; the ack's own time is.
	p1 := ack("true_120363000000000001@g.us_3EB0ACK_15550000001@c.us", `"ackName":"READ","participant":"15550000001@c.us","timestamp":1700000100`)
	p1lid := ack("true_120363000000000001@g.us_3EB0ACK_987654321@lid", `"ackName":"READ","participant":"987654321@lid","timestamp":1700000100`)
	p2 := ack("true_120363000000000001@g.us_3EB0ACK_15550000002@c.us", `"ackName":"READ","participant":"15550000002@c.us","timestamp":1700000160`)
	if p1.Key != p1lid.Key || p1.Key == p2.Key {
		t.Errorf("group acks: %q %q %q", p1.Identity, p1lid.Identity, p2.Identity)
	}
	if ev := ack("true_x@c.us_3EB0ACK", `"ack":9`); ev.Status != "9" || ev.Fallback {
		t.Errorf("unknown ack: %+v", ev)
	}
	if ev := ack("true_x@c.us_3EB0ACK", `"ackName":null`); !ev.Fallback || ev.Kind != messages.KindStatus {
		t.Errorf("ack without a value: %+v", ev)
	}
}

func TestWAHAReactions(t *testing.T) {
	react := func(id, target, text string) messages.Event {
		return only(t, messages.ParseWAHA, wahaBody("message.reaction", "default", "evt", 1700000000000,
			`{"id":"`+id+`","from":"15550000001@c.us","fromMe":false,"participant":null,"reaction":{"text":"`+text+`","messageId":"`+target+`"}}`))
	}
	a := react("false_15550000001@c.us_3EB0RX", "true_15550000001@c.us_3EB0MSG", "👍")
	b := react("false_123456789@lid_3EB0RX", "true_123456789@lid_3EB0MSG", "👍")
	removed := react("false_15550000001@c.us_3EB0RY", "true_15550000001@c.us_3EB0MSG", "")
	if a.Key != b.Key || a.Key == removed.Key {
		t.Errorf("identities %q %q %q", a.Identity, b.Identity, removed.Identity)
	}
	if want := "waha|message|default|direct|in|3EB0RX|reaction|3EB0MSG|👍"; a.Identity != want || a.From != "15550000001" {
		t.Errorf("identity %q from %q, want %q", a.Identity, a.From, want)
	}
	if ev := react("false_x@c.us_3EB0RZ", "", "👍"); !ev.Fallback {
		t.Errorf("reaction without a target: %+v", ev)
	}
}

func TestWAHARevoked(t *testing.T) {
	byBefore := only(t, messages.ParseWAHA, wahaBody("message.revoked", "default", "e1", 1, `{"before":{"id":"false_15550000001@c.us_3EB0DEL","from":"15550000001@c.us","fromMe":false},"after":{"id":"false_15550000001@c.us_3EB0PROTO"}}`))
	byID := only(t, messages.ParseWAHA, wahaBody("message.revoked", "default", "e2", 2, `{"revokedMessageId":"false_123456789@lid_3EB0DEL","after":null,"before":null}`))
	byAfter := only(t, messages.ParseWAHA, wahaBody("message.revoked", "default", "e3", 3, `{"after":{"id":"false_15550000001@c.us_3EB0PROTO"},"before":null}`))
	if byBefore.Key != byID.Key || byBefore.Status != "deleted" || byBefore.Type != "revoked" || byBefore.From != "15550000001" {
		t.Errorf("identities %q %q; %+v", byBefore.Identity, byID.Identity, byBefore)
	}
	if byAfter.Key == byBefore.Key || byAfter.Fallback {
		t.Errorf("after only: %q", byAfter.Identity)
	}
	if ev := only(t, messages.ParseWAHA, wahaBody("message.revoked", "default", "e4", 4, `{"before":null,"after":null}`)); !ev.Fallback {
		t.Errorf("no id: %+v", ev)
	}
}

// Ids not in the serialised form are used whole; a missing id falls back.
func TestWAHAOtherIDs(t *testing.T) {
	whole := only(t, messages.ParseWAHA, wahaBody("message", "default", "e", 1, wahaMsg("3EB0PLAIN", "15550000001@c.us", "", false, "")))
	if whole.Identity != "waha|message|default|direct|in|3EB0PLAIN" || whole.Fallback {
		t.Errorf("plain id: %q", whole.Identity)
	}
	obj := only(t, messages.ParseWAHA, wahaBody("message", "default", "e", 1,
		`{"id":{"fromMe":false,"remote":"15550000001@c.us","id":"3EB0OBJ","_serialized":"false_15550000001@c.us_3EB0OBJ"},"from":"15550000001@c.us"}`))
	if obj.Identity != "waha|message|default|direct|in|3EB0OBJ" {
		t.Errorf("object id: %q", obj.Identity)
	}
	for _, id := range []string{`null`, `""`, `7`, `"\udc00"`} {
		a := only(t, messages.ParseWAHA, wahaBody("message", "default", "e1", 1, `{"id":`+id+`,"from":"15550000001@c.us","timestamp":1700000000,"body":"x"}`))
		b := only(t, messages.ParseWAHA, wahaBody("message", "default", "e2", 2, `{"id":`+id+`,"from":"15550000001@c.us","timestamp":1700000000,"body":"x"}`))
		if !a.Fallback || a.Key != b.Key || !strings.HasPrefix(a.Identity, "waha|message|default|fallback|15550000001|1700000000||") {
			t.Errorf("id %s: fallback %v identity %q (again %q)", id, a.Fallback, a.Identity, b.Identity)
		}
	}
}

func TestParseWAHANotWebhook(t *testing.T) {
	// A body with a payload but no event or no session is WAHA's envelope
	// and is kept (TestWAHANoEventOrSession): only what holds no payload is
	// refused.
	checkNotWebhook(t, messages.ParseWAHA,
		``, `not json`, `[]`, `{}`, `{"event":"message"}`, `{"event":"message","session":1}`,
		`{"session":"default"}`, `{"event":["message"],"session":"default"}`,
	)
}

// An authenticated body refused is lost for good: one with a payload but no
// string event is kept as unknown, one without a string session under
// "default".
func TestWAHANoEventOrSession(t *testing.T) {
	const payload = `{"id":"false_15550000001@c.us_AAAA","from":"15550000001@c.us","fromMe":false,"timestamp":1700000000,"body":"hi"}`
	for _, ev := range []string{``, `"event":null,`, `"event":["message"],`} {
		u := only(t, messages.ParseWAHA, `{`+ev+`"session":"s","payload":`+payload+`}`)
		again := only(t, messages.ParseWAHA, `{`+ev+`"session":"s","id":"evt_2","payload":`+payload+`}`)
		other := only(t, messages.ParseWAHA, `{`+ev+`"session":"s","payload":{"id":"x"}}`)
		if u.Kind != messages.KindUnknown || u.Account != "s" || string(u.Item) != payload || u.Key != again.Key || u.Key == other.Key {
			t.Errorf("%s: %+v; again %q, other %q", ev, u, again.Identity, other.Identity)
		}
	}
	for _, session := range []string{``, `"session":null,`, `"session":1,`} {
		m := only(t, messages.ParseWAHA, `{"event":"message",`+session+`"payload":`+payload+`}`)
		named := only(t, messages.ParseWAHA, wahaBody("message", "default", "e1", 1, payload))
		if m.Kind != messages.KindMessage || m.Account != "default" || m.Key != named.Key {
			t.Errorf("%s: %+v, want %q", session, m, named.Identity)
		}
	}
	if u := only(t, messages.ParseWAHA, `{"payload":{}}`); u.Kind != messages.KindUnknown || u.Account != "default" {
		t.Errorf("payload alone: %+v", u)
	}
}

func TestWAHAUnknownShapes(t *testing.T) {
	cases := []struct {
		body  string
		kinds []messages.Kind
		types []string
	}{
		{`{"event":"message","session":"s"}`, []messages.Kind{"unknown"}, []string{"message"}},
		{`{"event":"message.ack","session":"s","payload":[1]}`, []messages.Kind{"unknown"}, []string{"message.ack"}},
		{`{"event":"message","session":"s","payload":{"id":"false_a@c.us_B"},"extra":true}`, []messages.Kind{"unknown", "message"}, []string{"envelope.extra", ""}},
		{`{"event":"session.status","session":"s","payload":{"status":"WORKING"}}`, []messages.Kind{"field"}, []string{"session.status"}},
	}
	for _, c := range cases {
		evs := gparse(t, messages.ParseWAHA, c.body)
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

// ExampleParseWAHA shows one message delivered twice by WAHA: new envelope
// id, new time, its chat once as a phone JID and once as a LID. One key.
func ExampleParseWAHA() {
	for i, chat := range []string{"15550000001@c.us", "123456789@lid"} {
		body := []byte(fmt.Sprintf(`{"id":"evt_0%d","timestamp":%d,"session":"default","event":"message",`+
			`"payload":{"id":"false_%s_3EB0C0FFEE","from":"%s","fromMe":false,"body":"Hi"}}`, i, 1700000000000+i, chat, chat))
		evs, err := messages.ParseWAHA(body, time.Now())
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(evs[0].ID, evs[0].Identity, evs[0].Key)
	}
	// Output:
	// false_15550000001@c.us_3EB0C0FFEE waha|message|default|direct|in|3EB0C0FFEE wa:ndmaeSBDRkrlVkl8U4eDLQ
	// false_123456789@lid_3EB0C0FFEE waha|message|default|direct|in|3EB0C0FFEE wa:ndmaeSBDRkrlVkl8U4eDLQ
}
