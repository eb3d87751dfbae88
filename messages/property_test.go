package messages_test

import (
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/messages"
)

// A property case builds one body from named parameters. Changing a meaning
// parameter (a participant, a status, a field, an emoji, an event name, an
// id) must change the identity of what the body holds; changing an unstable
// parameter (an address form, an envelope id or time, whitespace, an event
// name that is another view of one item) must not.
type propCase struct {
	name     string
	parse    messages.ParseFunc
	body     func(p map[string]string) string
	gen      map[string]func(r *rand.Rand) string
	meaning  []string
	unstable []string
}

// pick returns a generator drawing from values.
func pick(values ...string) func(r *rand.Rand) string {
	return func(r *rand.Rand) string { return values[r.Intn(len(values))] }
}

// digits returns a generator of n random decimal digits.
func digits(n int) func(r *rand.Rand) string {
	return func(r *rand.Rand) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('0' + r.Intn(10))
		}
		return string(b)
	}
}

// hexID returns a generator of message ids as WhatsApp devices choose them.
func hexID(r *rand.Rand) string { return fmt.Sprintf("3EB0%016X", r.Uint64()) }

// space draws insignificant whitespace.
var space = pick("", " ", "\n  ", "\t")

// userAddress draws one user's address in either form WhatsApp Web uses:
// a phone JID or a LID; two draws name the same user in another form.
func userAddress(phoneServer string) func(r *rand.Rand) string {
	return func(r *rand.Rand) string {
		if r.Intn(2) == 0 {
			return "1555" + digits(7)(r) + "@" + phoneServer
		}
		return digits(15)(r) + "@lid"
	}
}

// keysOfBody parses body and returns the keys of its events, with the
// repeat window applied at one fixed time.
func keysOfBody(t *testing.T, parse messages.ParseFunc, body string) []string {
	t.Helper()
	evs, err := parse([]byte(body), received)
	if err != nil || len(evs) == 0 {
		t.Fatalf("parse %s: %v, %d events", body, err, len(evs))
	}
	messages.Window(evs, time.Hour)
	keys := make([]string, len(evs))
	for i, ev := range evs {
		if ev.Kind == messages.KindUnknown {
			t.Fatalf("unknown event %q in %s", ev.Type, body)
		}
		keys[i] = ev.Key
	}
	return keys
}

func runProperty(t *testing.T, c propCase) {
	t.Run(c.name, func(t *testing.T) {
		r := rand.New(rand.NewSource(int64(len(c.name))))
		draw := func() map[string]string {
			p := map[string]string{}
			for name, g := range c.gen {
				p[name] = g(r)
			}
			return p
		}
		for range 100 {
			p := draw()
			base := c.body(p)
			keys := keysOfBody(t, c.parse, base)
			for _, name := range c.meaning {
				q := maps(p)
				for q[name] == p[name] {
					q[name] = c.gen[name](r)
				}
				other := c.body(q)
				if got := keysOfBody(t, c.parse, other); slices.Equal(got, keys) || overlap(got, keys) {
					t.Fatalf("%s changed (%q → %q), key kept:\n%s\n%s", name, p[name], q[name], base, other)
				}
			}
			for _, name := range c.unstable {
				q := maps(p)
				q[name] = c.gen[name](r)
				other := c.body(q)
				if got := keysOfBody(t, c.parse, other); !slices.Equal(got, keys) {
					t.Fatalf("%s changed (%q → %q), key changed:\n%s\n%s", name, p[name], q[name], base, other)
				}
			}
		}
	})
}

func maps(p map[string]string) map[string]string {
	q := make(map[string]string, len(p))
	for k, v := range p {
		q[k] = v
	}
	return q
}

func overlap(a, b []string) bool {
	for _, k := range a {
		if slices.Contains(b, k) {
			return true
		}
	}
	return false
}

func TestPropertyCloud(t *testing.T) {
	env := func(p map[string]string, field, value string) string {
		return `{"object":"whatsapp_business_account",` + p["ws"] + `"entry":[{"id":"102290129340398","time":` + p["entry_time"] + `,"changes":[{"field":"` + field + `",` + p["ws"] +
			`"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},` + value + `}}]}]}`
	}
	base := map[string]func(r *rand.Rand) string{
		"ws": space, "entry_time": pick("1739321024", "1739321099", "0"),
		"wamid": func(r *rand.Rand) string { return "wamid.HBgL" + digits(12)(r) },
	}
	with := func(extra map[string]func(r *rand.Rand) string) map[string]func(r *rand.Rand) string {
		m := map[string]func(r *rand.Rand) string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	for _, c := range []propCase{{
		name: "message", parse: messages.Parse,
		gen: with(map[string]func(r *rand.Rand) string{"field": pick("messages", "smb_message_echoes", "history")}),
		body: func(p map[string]string) string {
			msg := `{"from":"16505551234","id":"` + p["wamid"] + `",` + p["ws"] + `"timestamp":"1739321024","type":"text","text":{"body":"hi"}}`
			switch p["field"] {
			case "smb_message_echoes":
				return env(p, p["field"], `"message_echoes":[`+msg+`]`)
			case "history":
				return env(p, p["field"], `"history":[{"metadata":{"phase":0},"threads":[{"id":"16505551234","messages":[`+msg+`]}]}]`)
			}
			return env(p, p["field"], `"messages":[`+msg+`]`)
		},
		meaning: []string{"wamid", "field"}, unstable: []string{"ws", "entry_time"},
	}, {
		name: "reaction", parse: messages.Parse,
		gen: with(map[string]func(r *rand.Rand) string{"emoji": pick(`"emoji":"👍",`, `"emoji":"😮",`, `"emoji":"",`, ``)}),
		body: func(p map[string]string) string {
			return env(p, "messages", `"messages":[{"from":"16505551234","id":"`+p["wamid"]+`","timestamp":"1739321024","type":"reaction",`+p["ws"]+`"reaction":{`+p["emoji"]+`"message_id":"wamid.T"}}]`)
		},
		// "" and a missing emoji are both a removal: one meaning.
		meaning: []string{"wamid"}, unstable: []string{"ws", "entry_time"},
	}, {
		name: "status", parse: messages.Parse,
		gen: with(map[string]func(r *rand.Rand) string{
			"status":      pick("sent", "delivered", "read", "failed"),
			"participant": func(r *rand.Rand) string { return "1650555" + digits(4)(r) },
		}),
		body: func(p map[string]string) string {
			return env(p, "messages", `"statuses":[{"id":"`+p["wamid"]+`","status":"`+p["status"]+`","timestamp":"1739321024",`+p["ws"]+
				`"recipient_id":"120363000000000001","recipient_type":"group","recipient_participant_id":"`+p["participant"]+`"}]`)
		},
		meaning: []string{"wamid", "status", "participant"}, unstable: []string{"ws", "entry_time"},
	}, {
		name: "call or message status", parse: messages.Parse,
		gen: with(map[string]func(r *rand.Rand) string{"field": pick("messages", "calls")}),
		body: func(p map[string]string) string {
			return env(p, p["field"], `"statuses":[{"id":"`+p["wamid"]+`","status":"ACCEPTED","timestamp":"1739321024","type":"call",`+p["ws"]+`"recipient_id":"16505551234"}]`)
		},
		meaning: []string{"wamid", "field"}, unstable: []string{"ws", "entry_time"},
	}, {
		name: "call", parse: messages.Parse,
		gen: with(map[string]func(r *rand.Rand) string{"event": pick("connect", "terminate")}),
		body: func(p map[string]string) string {
			return env(p, "calls", `"calls":[{"id":"wacid.`+p["wamid"]+`","from":"16505551234","to":"15550783881",`+p["ws"]+`"event":"`+p["event"]+`","timestamp":"1739321024"}]`)
		},
		meaning: []string{"wamid", "event"}, unstable: []string{"ws", "entry_time"},
	}, {
		name: "field", parse: messages.Parse,
		gen: with(map[string]func(r *rand.Rand) string{"field": pick("account_update", "phone_number_quality_update", "security"), "event": pick("ONE", "TWO")}),
		body: func(p map[string]string) string {
			return env(p, p["field"], `"event":"`+p["event"]+`"`)
		},
		meaning: []string{"field", "event", "entry_time"}, unstable: []string{"ws"},
	}} {
		runProperty(t, c)
	}
}

func TestPropertyWASender(t *testing.T) {
	env := func(p map[string]string, event, data string) string {
		return `{"event":"` + event + `",` + p["ws"] + `"sessionId":"` + p["session"] + `","timestamp":` + p["envelope_time"] + `,"data":` + data + `}`
	}
	gen := map[string]func(r *rand.Rand) string{
		"ws": space, "envelope_time": pick("1633456789", "1633456799", "1747775431467"),
		"session": pick("key-a", "key-b"), "id": hexID, "from_me": pick("true", "false"),
		"direct":      userAddress("s.whatsapp.net"),
		"participant": userAddress("s.whatsapp.net"),
		"event":       pick("messages.upsert", "messages.received", "messages-personal.received", "message.sent"),
		"group_event": pick("messages.upsert", "messages.received", "messages-group.received"),
		"status":      pick("0", "2", "3", "4", "5"),
		"emoji":       pick("👍", "❤️", ""),
		"receipt":     pick("readTimestamp", "receiptTimestamp", "playedTimestamp"),
		"own_time":    pick("1700000000", "1700000100", "1700000200"),
		"call_status": pick("offer", "accept", "reject", "timeout"),
		"state":       pick("connected", "disconnected", "need_scan"),
	}
	for _, c := range []propCase{{
		name: "direct message", parse: messages.ParseWASender, gen: gen,
		body: func(p map[string]string) string {
			return env(p, p["event"], `{"messages":{"key":{"id":"`+p["id"]+`","fromMe":`+p["from_me"]+`,`+p["ws"]+`"remoteJid":"`+p["direct"]+`"},"message":{"conversation":"hi"}}}`)
		},
		meaning: []string{"id", "from_me", "session"}, unstable: []string{"ws", "envelope_time", "direct", "event"},
	}, {
		name: "group message", parse: messages.ParseWASender, gen: gen,
		body: func(p map[string]string) string {
			return env(p, p["group_event"], `{"messages":{"key":{"id":"`+p["id"]+`","fromMe":false,"remoteJid":"120363000000000001@g.us",`+p["ws"]+`"participant":"`+p["participant"]+`"},"message":{"conversation":"hi"}}}`)
		},
		meaning: []string{"id"}, unstable: []string{"ws", "envelope_time", "participant", "group_event"},
	}, {
		name: "status", parse: messages.ParseWASender, gen: gen,
		body: func(p map[string]string) string {
			return env(p, "messages.update", `{"key":{"id":"`+p["id"]+`","fromMe":true,"remoteJid":"`+p["direct"]+`"},`+p["ws"]+`"update":{"status":`+p["status"]+`}}`)
		},
		meaning: []string{"id", "status"}, unstable: []string{"ws", "envelope_time", "direct"},
	}, {
		name: "receipt", parse: messages.ParseWASender, gen: gen,
		body: func(p map[string]string) string {
			return env(p, "message-receipt.update", `{"message":{"key":{"remoteJid":"120363000000000001@g.us","id":"`+p["id"]+`","fromMe":true},`+p["ws"]+
				`"receipt":{"userJid":"`+p["participant"]+`","`+p["receipt"]+`":`+p["own_time"]+`}}}`)
		},
		// Another member is told apart by the receipt's own time.
		meaning: []string{"id", "receipt", "own_time"}, unstable: []string{"ws", "envelope_time", "participant"},
	}, {
		name: "reaction", parse: messages.ParseWASender, gen: gen,
		body: func(p map[string]string) string {
			return env(p, "messages.reaction", `[{"key":{"id":"`+p["id"]+`","fromMe":false,"remoteJid":"`+p["direct"]+`"},`+p["ws"]+`"reaction":{"text":"`+p["emoji"]+`","key":{"id":"R`+p["id"]+`","fromMe":false,"remoteJid":"`+p["direct"]+`"}}}]`)
		},
		meaning: []string{"id", "emoji"}, unstable: []string{"ws", "envelope_time", "direct"},
	}, {
		name: "call", parse: messages.ParseWASender, gen: gen,
		body: func(p map[string]string) string {
			return env(p, "call", `{"call":{"id":"`+p["id"]+`","from":"`+p["direct"]+`",`+p["ws"]+`"status":"`+p["call_status"]+`"}}`)
		},
		meaning: []string{"id", "call_status"}, unstable: []string{"ws", "envelope_time", "direct"},
	}, {
		name: "session.status", parse: messages.ParseWASender, gen: gen,
		body: func(p map[string]string) string {
			return env(p, "session.status", `{"status":`+p["ws"]+`"`+p["state"]+`"}`)
		},
		meaning: []string{"state", "session"}, unstable: []string{"ws", "envelope_time"},
	}} {
		runProperty(t, c)
	}
}

func TestPropertyWAHA(t *testing.T) {
	env := func(p map[string]string, event, payload string) string {
		return `{"id":"evt_` + p["evt"] + `","timestamp":` + p["envelope_time"] + `,` + p["ws"] + `"session":"default","event":"` + event + `","payload":` + payload + `}`
	}
	gen := map[string]func(r *rand.Rand) string{
		"ws": space, "evt": digits(20), "envelope_time": pick("1634567890123", "1634567899999"),
		"id": hexID, "from_me": pick("true", "false"),
		"direct":      userAddress("c.us"),
		"participant": userAddress("c.us"),
		"event":       pick("message", "message.any"),
		"ack":         pick("SERVER", "DEVICE", "READ", "PLAYED"),
		"emoji":       pick("🙏", "👍", ""),
		"call":        pick("call.received", "call.accepted", "call.rejected"),
		"state":       pick("WORKING", "STOPPED", "SCAN_QR_CODE"),
	}
	for _, c := range []propCase{{
		name: "message", parse: messages.ParseWAHA, gen: gen,
		body: func(p map[string]string) string {
			return env(p, p["event"], `{"id":"`+p["from_me"]+`_`+p["direct"]+`_`+p["id"]+`","timestamp":1667561485,`+p["ws"]+`"from":"`+p["direct"]+`","fromMe":`+p["from_me"]+`,"body":"hi"}`)
		},
		meaning: []string{"id", "from_me"}, unstable: []string{"ws", "evt", "envelope_time", "direct", "event"},
	}, {
		name: "group ack", parse: messages.ParseWAHA, gen: gen,
		body: func(p map[string]string) string {
			return env(p, "message.ack", `{"id":"true_120363000000000001@g.us_`+p["id"]+`_`+p["participant"]+`","from":"120363000000000001@g.us",`+p["ws"]+
				`"participant":"`+p["participant"]+`","fromMe":true,"ackName":"`+p["ack"]+`"}`)
		},
		meaning: []string{"id", "ack"}, unstable: []string{"ws", "evt", "envelope_time", "participant"},
	}, {
		name: "reaction", parse: messages.ParseWAHA, gen: gen,
		body: func(p map[string]string) string {
			return env(p, "message.reaction", `{"id":"false_`+p["direct"]+`_R`+p["id"]+`","from":"`+p["direct"]+`","fromMe":false,`+p["ws"]+
				`"reaction":{"text":"`+p["emoji"]+`","messageId":"true_`+p["direct"]+`_`+p["id"]+`"}}`)
		},
		meaning: []string{"id", "emoji"}, unstable: []string{"ws", "evt", "envelope_time", "direct"},
	}, {
		name: "call", parse: messages.ParseWAHA, gen: gen,
		body: func(p map[string]string) string {
			return env(p, p["call"], `{"id":"`+p["id"]+`","from":"`+p["direct"]+`",`+p["ws"]+`"timestamp":1721374000,"isVideo":false,"isGroup":false}`)
		},
		meaning: []string{"id", "call"}, unstable: []string{"ws", "evt", "envelope_time", "direct"},
	}, {
		name: "session.status", parse: messages.ParseWAHA, gen: gen,
		body: func(p map[string]string) string {
			return env(p, "session.status", `{"status":`+p["ws"]+`"`+p["state"]+`"}`)
		},
		meaning: []string{"state"}, unstable: []string{"ws", "evt", "envelope_time"},
	}} {
		runProperty(t, c)
	}
}

func TestPropertyEvolution(t *testing.T) {
	env := func(p map[string]string, event, data string) string {
		return `{"event":"` + event + `","instance":"shop",` + p["ws"] + `"data":` + data + `,"destination":"https://example.com/hook","date_time":"2025-11-21T21:25:0` + p["second"] +
			`.966Z","sender":"5500000000002@s.whatsapp.net","server_url":"http://localhost:8080","apikey":"` + p["apikey"] + `"}`
	}
	gen := map[string]func(r *rand.Rand) string{
		"ws": space, "second": digits(1), "apikey": digits(12),
		"id": hexID, "from_me": pick("true", "false"),
		"direct":  userAddress("s.whatsapp.net"),
		"event":   pick("messages.upsert", "send.message", "MESSAGES_UPSERT"),
		"status":  pick("SERVER_ACK", "DELIVERY_ACK", "READ", "PLAYED"),
		"field":   pick("contacts.update", "chats.update", "presence.update"),
		"contact": pick("Ana", "Bruno"),
	}
	for _, c := range []propCase{{
		name: "message", parse: messages.ParseEvolution, gen: gen,
		body: func(p map[string]string) string {
			return env(p, p["event"], `{"key":{"remoteJid":"`+p["direct"]+`","fromMe":`+p["from_me"]+`,`+p["ws"]+`"id":"`+p["id"]+`"},"message":{"conversation":"oi"},"messageType":"conversation","messageTimestamp":1763771103}`)
		},
		meaning: []string{"id", "from_me"}, unstable: []string{"ws", "second", "apikey", "direct", "event"},
	}, {
		name: "status", parse: messages.ParseEvolution, gen: gen,
		body: func(p map[string]string) string {
			return env(p, "messages.update", `{"keyId":"`+p["id"]+`","remoteJid":"`+p["direct"]+`","fromMe":true,`+p["ws"]+`"status":"`+p["status"]+`"}`)
		},
		meaning: []string{"id", "status"}, unstable: []string{"ws", "second", "apikey", "direct"},
	}, {
		name: "field", parse: messages.ParseEvolution, gen: gen,
		body: func(p map[string]string) string {
			return env(p, p["field"], `[{"remoteJid":"5500000000003@s.whatsapp.net",`+p["ws"]+`"pushName":"`+p["contact"]+`"}]`)
		},
		meaning: []string{"field", "contact"}, unstable: []string{"ws", "second", "apikey"},
	}} {
		runProperty(t, c)
	}
}

// The repeat window: a transient event repeated within it is one key, in
// the next window another; events with an id are not touched.
func TestWindow(t *testing.T) {
	body := []byte(`{"event":"session.status","sessionId":"k","data":{"status":"connected"}}`)
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	key := func(at time.Time, window time.Duration) string {
		evs, err := messages.ParseWASender(body, at)
		if err != nil || len(evs) != 1 || !evs[0].Transient {
			t.Fatalf("%v %+v", err, evs)
		}
		messages.Window(evs, window)
		if !strings.Contains(evs[0].Identity, "|window|") || evs[0].Key != messages.KeyOf(evs[0].Identity) {
			t.Fatalf("identity %q key %q", evs[0].Identity, evs[0].Key)
		}
		return evs[0].Key
	}
	if key(t0, time.Hour) != key(t0.Add(59*time.Minute), time.Hour) {
		t.Error("two deliveries in one window: two keys")
	}
	if key(t0, time.Hour) == key(t0.Add(61*time.Minute), time.Hour) {
		t.Error("a repeat in the next window: one key")
	}
	if key(t0, 0) != key(t0, messages.DefaultRepeatWindow) {
		t.Error("window 0 is not the default")
	}
	msg, _ := messages.ParseWASender([]byte(`{"event":"messages.upsert","data":{"key":{"id":"3EB0A","remoteJid":"1@s.whatsapp.net"}}}`), t0)
	before := msg[0].Identity
	messages.Window(msg, time.Hour)
	if msg[0].Transient || msg[0].Identity != before {
		t.Errorf("a message was windowed: %q", msg[0].Identity)
	}
}

// The parsers apply the default repeat window themselves: a state reported
// again within minutes is one key, days later another.
func TestParsersWindowTransientEvents(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 10, 5, 0, 0, time.UTC)
	for _, c := range []struct {
		parse messages.ParseFunc
		body  string
	}{
		{messages.ParseWASender, `{"event":"session.status","sessionId":"k","data":{"status":"connected"}}`},
		{messages.ParseWAHA, `{"event":"session.status","session":"default","payload":{"name":"default","status":"WORKING"}}`},
		{messages.ParseEvolution, `{"event":"connection.update","instance":"shop","data":{"instance":"shop","state":"open"},"apikey":"k"}`},
	} {
		key := func(at time.Time) string {
			evs, err := c.parse([]byte(c.body), at)
			if err != nil || len(evs) != 1 || !evs[0].Transient || evs[0].Key != messages.KeyOf(evs[0].Identity) {
				t.Fatalf("%s: %v %+v", c.body, err, evs)
			}
			return evs[0].Key
		}
		if key(t0) != key(t0.Add(20*time.Minute)) {
			t.Errorf("%s: a retry 20 minutes later has another key", c.body)
		}
		if key(t0) == key(t0.Add(72*time.Hour)) {
			t.Errorf("%s: the same state three days later has the same key", c.body)
		}
	}
}
