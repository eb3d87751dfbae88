package messages_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/messages"
)

// Bodies for the named cases, in the Cloud API shape (Meta, "Webhooks
// reference: messages").

func envelope(entries ...string) string {
	return `{"object":"whatsapp_business_account","entry":[` + strings.Join(entries, ",") + `]}`
}

func entry(wabaID string, changes ...string) string {
	return `{"id":"` + wabaID + `","changes":[` + strings.Join(changes, ",") + `]}`
}

// messagesChange is a "messages" change of phone number id pnid; members are
// the value's members after messaging_product and metadata.
func messagesChange(pnid, members string) string {
	return `{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550000000","phone_number_id":"` +
		pnid + `"},` + members + `}}`
}

func message(wamid, from, ts, body string) string {
	return `{"from":"` + from + `","id":"` + wamid + `","timestamp":"` + ts + `","type":"text","text":{"body":"` + body + `"}}`
}

func status(wamid, st, recipient, ts string) string {
	return `{"id":"` + wamid + `","status":"` + st + `","timestamp":"` + ts + `","recipient_id":"` + recipient + `"}`
}

// parse parses body, checks the invariants of every event and fails the test
// on error.
func parse(t *testing.T, body string) []messages.Event {
	t.Helper()
	evs, err := messages.Parse([]byte(body), received)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	checkEvents(t, []byte(body), evs)
	return evs
}

func keysOf(evs []messages.Event) []string {
	keys := make([]string, len(evs))
	for i, ev := range evs {
		keys[i] = ev.Key
	}
	return keys
}

func requireDistinct(t *testing.T, evs []messages.Event) {
	t.Helper()
	seen := map[string]int{}
	for i, ev := range evs {
		if j, dup := seen[ev.Key]; dup {
			t.Fatalf("events %d and %d share key %s (%q, %q)", j, i, ev.Key, evs[j].Identity, ev.Identity)
		}
		seen[ev.Key] = i
	}
}

const (
	pnA  = "106540352242922"
	pnB  = "106540352242923"
	waba = "102290129340398"
	user = "15550000001"
)

// (a)
func TestParseThreeStatusesThreeWamids(t *testing.T) {
	body := envelope(entry(waba, messagesChange(pnA, `"statuses":[`+
		status("wamid.A", "delivered", user, "1750030073")+","+
		status("wamid.B", "delivered", user, "1750030073")+","+
		status("wamid.C", "delivered", user, "1750030073")+`]`)))
	evs := parse(t, body)
	if len(evs) != 3 {
		t.Fatalf("got %d events, want 3", len(evs))
	}
	for i, id := range []string{"wamid.A", "wamid.B", "wamid.C"} {
		checkEvent(t, i, evs[i], want{kind: messages.KindStatus, account: pnA, id: id, status: "delivered", from: user, ts: 1750030073, entryID: waba})
	}
	requireDistinct(t, evs)
}

// (b)
func TestParseTwoEntriesTwoPhoneNumbers(t *testing.T) {
	body := envelope(
		entry(waba, messagesChange(pnA, `"messages":[`+message("wamid.A1", user, "1700000001", "one")+","+message("wamid.A2", user, "1700000002", "two")+`]`)),
		entry("102290129340399", messagesChange(pnB, `"messages":[`+message("wamid.B1", "15550000002", "1700000003", "three")+`]`)),
	)
	evs := parse(t, body)
	wants := []want{
		{kind: messages.KindMessage, account: pnA, id: "wamid.A1", typ: "text", from: user, ts: 1700000001, entryID: waba},
		{kind: messages.KindMessage, account: pnA, id: "wamid.A2", typ: "text", from: user, ts: 1700000002, entryID: waba},
		{kind: messages.KindMessage, account: pnB, id: "wamid.B1", typ: "text", from: "15550000002", ts: 1700000003, entryID: "102290129340399"},
	}
	if len(evs) != len(wants) {
		t.Fatalf("got %d events, want %d", len(evs), len(wants))
	}
	for i, w := range wants {
		checkEvent(t, i, evs[i], w)
	}
	requireDistinct(t, evs)
	if got := messages.Subject(evs[2]); got != "wagate.events.cloud.message."+pnB+"."+strconv.Itoa(messages.Slot(evs[2])) {
		t.Errorf("subject %q", got)
	}
}

// (c)
func TestParseStatusAndMessageInOneChange(t *testing.T) {
	body := envelope(entry(waba, messagesChange(pnA,
		`"contacts":[{"profile":{"name":"Test User"},"wa_id":"`+user+`"}],`+
			`"statuses":[`+status("wamid.OUT", "read", user, "1700000010")+`],`+
			`"messages":[`+message("wamid.IN", user, "1700000011", "hi")+`]`)))
	evs := parse(t, body)
	if len(evs) != 2 {
		t.Fatalf("got %d events, want 2", len(evs))
	}
	checkEvent(t, 0, evs[0], want{kind: messages.KindStatus, account: pnA, id: "wamid.OUT", status: "read", from: user, ts: 1700000010, entryID: waba, contact: user})
	checkEvent(t, 1, evs[1], want{kind: messages.KindMessage, account: pnA, id: "wamid.IN", typ: "text", from: user, ts: 1700000011, entryID: waba, contact: user})
}

// (d)
func TestParseStatusesAreNotTheirMessage(t *testing.T) {
	body := envelope(entry(waba,
		messagesChange(pnA, `"statuses":[`+status("wamid.X", "sent", user, "1700000020")+`]`),
		messagesChange(pnA, `"statuses":[`+status("wamid.X", "read", user, "1700000022")+`]`),
		messagesChange(pnA, `"statuses":[`+status("wamid.X", "delivered", user, "1700000021")+`]`),
		messagesChange(pnA, `"messages":[`+message("wamid.X", user, "1700000023", "same id")+`]`),
	))
	evs := parse(t, body)
	if len(evs) != 4 {
		t.Fatalf("got %d events, want 4", len(evs))
	}
	for i, st := range []string{"sent", "read", "delivered"} {
		if evs[i].Kind != messages.KindStatus || evs[i].Status != st || evs[i].ID != "wamid.X" {
			t.Errorf("event %d: %s %q %q", i, evs[i].Kind, evs[i].ID, evs[i].Status)
		}
	}
	if evs[3].Kind != messages.KindMessage || evs[3].ID != "wamid.X" {
		t.Errorf("event 3: %s %q", evs[3].Kind, evs[3].ID)
	}
	requireDistinct(t, evs)
}

// (e)
func TestParseFailedStatusContactWithoutProfile(t *testing.T) {
	body := envelope(entry(waba, messagesChange(pnA,
		`"contacts":[{"wa_id":"`+user+`"}],"statuses":[{"id":"wamid.F","status":"failed","timestamp":"1700000030","recipient_id":"`+user+`",`+
			`"errors":[{"code":131026,"title":"Message undeliverable","message":"Message undeliverable","error_data":{"details":"Message Undeliverable."}}]}]`)))
	evs := parse(t, body)
	if len(evs) != 1 {
		t.Fatalf("got %d events, want 1", len(evs))
	}
	checkEvent(t, 0, evs[0], want{kind: messages.KindStatus, account: pnA, id: "wamid.F", status: "failed", from: user, ts: 1700000030, errCode: 131026, entryID: waba, contact: user})
	wantErr := messages.Error{Code: 131026, Title: "Message undeliverable", Message: "Message undeliverable", Details: "Message Undeliverable."}
	if evs[0].Errors[0] != wantErr {
		t.Errorf("error %+v, want %+v", evs[0].Errors[0], wantErr)
	}
	if got := string(evs[0].Context.Contact); got != `{"wa_id":"`+user+`"}` {
		t.Errorf("contact %s", got)
	}
}

// (f)
func TestParseKeepsRawEscapes(t *testing.T) {
	item := `{"from":"15550000001","id":"wamid.ESC","timestamp":"1700000040","type":"text",` +
		`"text":{"body":"caf\u00e9 \ud83d\ude00 https:\/\/example.com\/menu?a=1\u0026b=2"}}`
	body := envelope(entry(waba, messagesChange(pnA, `"messages":[`+item+`]`)))
	evs := parse(t, body)
	if len(evs) != 1 {
		t.Fatalf("got %d events, want 1", len(evs))
	}
	ev := evs[0]
	if string(ev.Item) != item {
		t.Fatalf("item\n got %s\nwant %s", ev.Item, item)
	}
	var decoded struct {
		Text struct {
			Body string `json:"body"`
		} `json:"text"`
	}
	if err := json.Unmarshal(ev.Item, &decoded); err != nil {
		t.Fatal(err)
	}
	if wantText := "café 😀 https://example.com/menu?a=1&b=2"; decoded.Text.Body != wantText {
		t.Errorf("body %q, want %q", decoded.Text.Body, wantText)
	}
	data, err := ev.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`"item":`+item)) {
		t.Fatalf("Encode changed the item:\n%s", data)
	}
	back, err := messages.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if string(back.Item) != item || back.Key != ev.Key || back.Identity != ev.Identity || !back.ReceivedAt.Equal(ev.ReceivedAt) {
		t.Fatalf("Decode(Encode(ev)) = %+v, want %+v", back, ev)
	}

	// The fixtures with raw escapes keep them too.
	for file, raw := range map[string]string{
		"meta_msg_location_raw_slash_escapes.json": `"url":"https:\/\/foursquare.com\/v\/5c42c5667d8497002c6e09f9"`,
		"meta_msg_reaction_escaped_emoji.json":     `"emoji": "\ud83d\ude2e"`,
	} {
		body, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		evs := parse(t, string(body))
		if !bytes.Contains(evs[0].Item, []byte(raw)) {
			t.Errorf("%s: item lost %s:\n%s", file, raw, evs[0].Item)
		}
	}
}

// (g)
func TestParseNotWebhook(t *testing.T) {
	for _, body := range []string{
		``,
		"  \n\t",
		`{}`,
		`not json`,
		`{"object":"whatsapp_business_account","entry":[]`,
		`[]`,
		`"whatsapp_business_account"`,
		`null`,
		`{"object":"whatsapp_business_account"}`,
		`{"entry":[]}`,
		`{"object":1,"entry":[]}`,
		`{"object":null,"entry":[]}`,
		`{"object":"whatsapp_business_account","entry":{}}`,
		`{"object":"whatsapp_business_account","entry":null}`,
		`{"object":"whatsapp_business_account","entry":"[]"}`,
		`{"object":"whatsapp_business_account","entry":[]} {}`,
		"{\"object\":\"whatsapp_business_account\",\"entry\":[\"\xff\x00\"]}",
	} {
		evs, err := messages.Parse([]byte(body), received)
		if !errors.Is(err, messages.ErrNotWebhook) || evs != nil {
			t.Errorf("Parse(%q) = %d events, %v; want ErrNotWebhook", body, len(evs), err)
		}
	}
	evs, err := messages.Parse([]byte(`{"object":"whatsapp_business_account","entry":[]}`), received)
	if err != nil || len(evs) != 0 {
		t.Errorf("empty entry: Parse = %d events, %v; want 0, nil", len(evs), err)
	}
	_, err = messages.Parse([]byte(`{"object":"whatsapp_business_account","entry":{}}`), received)
	if got := err.Error(); got != `messages: not a webhook: "entry" is not an array` {
		t.Errorf("error text %q", got)
	}
}

// (h)
func TestParseUnsupportedMessage(t *testing.T) {
	body := envelope(entry(waba, messagesChange(pnA,
		`"contacts":[{"profile":{"name":"Test User"},"wa_id":"`+user+`"}],"messages":[{"from":"`+user+`","id":"wamid.U","timestamp":"1700000050",`+
			`"errors":[{"code":131051,"title":"Message type unknown","message":"Message type unknown","error_data":{"details":"Message type is currently not supported."}}],`+
			`"type":"unsupported","unsupported":{"type":"poll"}}]`)))
	evs := parse(t, body)
	if len(evs) != 1 {
		t.Fatalf("got %d events, want 1", len(evs))
	}
	checkEvent(t, 0, evs[0], want{kind: messages.KindMessage, account: pnA, id: "wamid.U", typ: "unsupported", from: user, ts: 1700000050, errCode: 131051, entryID: waba, contact: user})
	if e := evs[0].Errors[0]; e.Details != "Message type is currently not supported." || e.Title != "Message type unknown" {
		t.Errorf("error %+v", e)
	}
}

// (i)
func TestParseFallbackIdentity(t *testing.T) {
	body := envelope(entry(waba, messagesChange(pnA, `"messages":[`+
		`{"from":"`+user+`","id":"","timestamp":"1700000060","type":"text","text":{"body":"empty id"}},`+
		`{"from":"`+user+`","timestamp":"1700000060","type":"text","text":{"body":"no id"}},`+
		`{"from":"`+user+`","id":12345,"timestamp":"1700000060","type":"text","text":{"body":"numeric id"}},`+
		message("wamid.OK", user, "1700000060", "with id")+`]`)))
	first := parse(t, body)
	if len(first) != 4 {
		t.Fatalf("got %d events, want 4", len(first))
	}
	for i, ev := range first[:3] {
		if !ev.Fallback || ev.ID != "" || ev.From != user || ev.Timestamp != 1700000060 {
			t.Errorf("event %d: fallback %v id %q from %q ts %d", i, ev.Fallback, ev.ID, ev.From, ev.Timestamp)
		}
		prefix := messages.Identity("cloud", "message", pnA, "messages", "fallback", user, "1700000060", "") + "|"
		if !strings.HasPrefix(ev.Identity, prefix) || len(ev.Identity) != len(prefix)+64 {
			t.Errorf("event %d: identity %q, want %q + sha256 hex", i, ev.Identity, prefix)
		}
	}
	if first[3].Fallback {
		t.Error("event with an id has Fallback set")
	}
	requireDistinct(t, first)
	second := parse(t, body)
	if a, b := keysOf(first), keysOf(second); strings.Join(a, ",") != strings.Join(b, ",") {
		t.Errorf("keys differ between two parses:\n%v\n%v", a, b)
	}
	// Whitespace inside the item does not change its fallback identity.
	spaced := strings.Replace(body, `"id":"","timestamp"`, "\"id\" : \"\",\n  \"timestamp\"", 1)
	if evs := parse(t, spaced); evs[0].Key != first[0].Key {
		t.Errorf("re-indented item: key %s, want %s", evs[0].Key, first[0].Key)
	}

	// A status without status and a call without event fall back too.
	evs := parse(t, envelope(entry(waba,
		messagesChange(pnA, `"statuses":[{"id":"wamid.S","timestamp":"1700000061","recipient_id":"`+user+`"}]`),
		`{"field":"calls","value":{"metadata":{"phone_number_id":"`+pnA+`"},"calls":[{"id":"wacid.C","from":"`+user+`","timestamp":"1700000062"}]}}`,
	)))
	if len(evs) != 2 || !evs[0].Fallback || !evs[1].Fallback || evs[0].Kind != messages.KindStatus || evs[1].Kind != messages.KindCall {
		t.Fatalf("got %+v", evs)
	}
}

// (j)
func TestParseSameItemTwiceSameKeys(t *testing.T) {
	for _, file := range []string{"meta_msg_text_ctwa_referral.json", "meta_status_failed_131049.json", "meta_field_message_template_status_update_rejected.json"} {
		body, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		first, err := messages.Parse(body, received)
		if err != nil {
			t.Fatal(err)
		}
		later, err := messages.Parse(body, received.Add(36*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if len(first) != len(later) || len(first) == 0 {
			t.Fatalf("%s: %d then %d events", file, len(first), len(later))
		}
		for i := range first {
			if first[i].Key != later[i].Key || first[i].Identity != later[i].Identity {
				t.Errorf("%s: event %d: key %s then %s", file, i, first[i].Key, later[i].Key)
			}
			if later[i].ReceivedAt.Equal(first[i].ReceivedAt) {
				t.Errorf("%s: event %d: ReceivedAt not taken from the argument", file, i)
			}
		}
	}
	// A retry formatted differently (Meta's retries are byte-identical; a
	// proxy may re-indent) keeps the keys of items without ids.
	body, _ := os.ReadFile(filepath.Join("testdata", "meta_field_account_update_restriction.json"))
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		t.Fatal(err)
	}
	a, b := parse(t, string(body)), parse(t, compact.String())
	if a[0].Key != b[0].Key {
		t.Errorf("compacted body: key %s, want %s", b[0].Key, a[0].Key)
	}
}

// (k)
func TestParseSeparatorsInIDsCannotCollide(t *testing.T) {
	bodies := []string{
		envelope(entry(waba, messagesChange("1|2", `"messages":[`+message("wamid.X", user, "1", "a")+`]`))),
		envelope(entry(waba, messagesChange("1", `"messages":[`+message("2|wamid.X", user, "1", "a")+`]`))),
		envelope(entry(waba, messagesChange("1%7C2", `"messages":[`+message("wamid.X", user, "1", "a")+`]`))),
		envelope(entry(waba, messagesChange(pnA, `"statuses":[`+status("wamid.X|read", "sent", user, "1")+`]`))),
		envelope(entry(waba, messagesChange(pnA, `"statuses":[`+status("wamid.X", "read|sent", user, "1")+`]`))),
		envelope(entry(waba, messagesChange(pnA, `"statuses":[`+status("wamid.X|read|sent", "", user, "1")+`]`))),
		envelope(entry(waba, messagesChange(pnA, `"messages":[`+message("wamid.X|read", user, "1", "a")+`]`))),
	}
	var all []messages.Event
	for _, body := range bodies {
		all = append(all, parse(t, body)...)
	}
	if len(all) != len(bodies) {
		t.Fatalf("got %d events, want %d", len(all), len(bodies))
	}
	requireDistinct(t, all)
	if want := "cloud|message|1%7C2|messages|wamid.X"; all[0].Identity != want {
		t.Errorf("identity %q, want %q", all[0].Identity, want)
	}
}

// (l)
func TestParseUnknownItems(t *testing.T) {
	body := envelope(
		`"not an entry"`,
		`{"id":"`+waba+`"}`,
		`{"id":"`+waba+`","changes":[`+
			`42,`+
			`{"field":"messages"},`+
			`{"value":{"messages":[]}},`+
			messagesChange(pnA, `"message_echoes":[{"id":"wamid.E"}],"messages":["text",`+message("wamid.M", user, "1700000070", "ok")+`],"statuses":{"id":"wamid.S"}`)+
			`],"extra":true}`,
	)
	evs := parse(t, body)
	type got struct {
		kind  messages.Kind
		typ   string
		id    string
		field string
		item  string
	}
	wants := []got{
		{messages.KindUnknown, "entry", "", "", `"not an entry"`},
		{messages.KindUnknown, "entry", "", "", `{"id":"` + waba + `"}`},
		{messages.KindUnknown, "entry.extra", "", "", `true`},
		{messages.KindUnknown, "change", "", "", `42`},
		{messages.KindUnknown, "change", "", "messages", `{"field":"messages"}`},
		{messages.KindUnknown, "change", "", "", `{"value":{"messages":[]}}`},
		{messages.KindUnknown, "value.message_echoes", "", "messages", `[{"id":"wamid.E"}]`},
		{messages.KindUnknown, "value.messages[]", "", "messages", `"text"`},
		{messages.KindMessage, "text", "wamid.M", "messages", message("wamid.M", user, "1700000070", "ok")},
		{messages.KindUnknown, "value.statuses", "", "messages", `{"id":"wamid.S"}`},
	}
	if len(evs) != len(wants) {
		for _, ev := range evs {
			t.Logf("%s %q %s", ev.Kind, ev.Type, ev.Item)
		}
		t.Fatalf("got %d events, want %d", len(evs), len(wants))
	}
	for i, w := range wants {
		ev := evs[i]
		if g := (got{ev.Kind, ev.Type, ev.ID, ev.Context.Field, string(ev.Item)}); g != w {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
	requireDistinct(t, evs)
	if evs[6].Account != pnA || evs[2].Account != waba || evs[0].Account != "" {
		t.Errorf("accounts %q %q %q", evs[6].Account, evs[2].Account, evs[0].Account)
	}
	wantIdentity := messages.Identity("cloud", "unknown", "messages", waba, "0", pnA, "value.message_echoes", sha256Hex(`[{"id":"wamid.E"}]`))
	if evs[6].Identity != wantIdentity {
		t.Errorf("identity %q, want %q", evs[6].Identity, wantIdentity)
	}

	// A field wagate has no parser for is a field event, not an unknown one:
	// its change is stored whole.
	evs = parse(t, envelope(entry(waba, `{"field":"some_future_field","value":{"anything":[1,2]}}`)))
	if len(evs) != 1 || evs[0].Kind != messages.KindField || evs[0].Type != "some_future_field" {
		t.Fatalf("got %+v", evs)
	}
	// A messages change holding nothing is kept as an unknown event.
	evs = parse(t, envelope(entry(waba, messagesChange(pnA, `"messages":[]`))))
	if len(evs) != 1 || evs[0].Kind != messages.KindUnknown || evs[0].Type != "change" {
		t.Fatalf("got %+v", evs)
	}
	// Envelope members other than object and entry, and a duplicate key of a
	// value (the last one is read, the earlier one kept as unknown).
	evs = parse(t, `{"object":"whatsapp_business_account","v":2,"entry":[`+entry(waba, messagesChange(pnA,
		`"messages":[`+message("wamid.OLD", user, "1", "a")+`],"messages":[`+message("wamid.NEW", user, "2", "b")+`]`))+`]}`)
	if len(evs) != 3 || evs[0].Type != "envelope.v" || evs[1].Type != "value.messages" || evs[2].ID != "wamid.NEW" {
		for _, ev := range evs {
			t.Logf("%s %q %s", ev.Kind, ev.Type, ev.Item)
		}
		t.Fatalf("got %d events", len(evs))
	}
	// Names match exactly: "ID" is not "id".
	evs = parse(t, envelope(entry(waba, messagesChange(pnA, `"messages":[{"ID":"wamid.UPPER","from":"`+user+`","timestamp":"1"}]`))))
	if len(evs) != 1 || !evs[0].Fallback {
		t.Fatalf("got %+v", evs)
	}
}

// (m)
func TestParseBatchFixtureSharesPlaceholderID(t *testing.T) {
	// Both messages of this SDK fixture carry the placeholder id wamid.ID
	// (testdata/README.md): as written they are one item for dedupe.
	body, err := os.ReadFile(filepath.Join("testdata", "meta_batch_two_changes_one_entry.json"))
	if err != nil {
		t.Fatal(err)
	}
	evs := parse(t, string(body))
	if len(evs) != 2 {
		t.Fatalf("got %d events, want 2", len(evs))
	}
	if evs[0].Key != evs[1].Key || evs[0].ID != "wamid.ID" || evs[1].ID != "wamid.ID" {
		t.Errorf("keys %s %s, ids %q %q", evs[0].Key, evs[1].Key, evs[0].ID, evs[1].ID)
	}
	if bytes.Equal(evs[0].Item, evs[1].Item) {
		t.Error("the two items should differ (timestamp and body)")
	}
	// Given distinct ids, the two changes are two events.
	fixed := bytes.Replace(body, []byte(`"wamid.ID"`), []byte(`"wamid.ID2"`), 2)
	fixed = bytes.Replace(fixed, []byte(`"wamid.ID2"`), []byte(`"wamid.ID1"`), 1)
	evs = parse(t, string(fixed))
	requireDistinct(t, evs)
}

func TestParseCalls(t *testing.T) {
	// Shapes from Meta, Calling API "User-initiated calls" and "API and
	// Webhook Reference".
	const pn = "436666719526789"
	body := envelope(entry("366634483210360",
		`{"field":"calls","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"`+pn+`","display_phone_number":"13175551399"},`+
			`"contacts":[{"profile":{"name":"Caller"},"wa_id":"16315553601"}],`+
			`"calls":[{"id":"wacid.ABGG","to":"13175551399","from":"16315553601","event":"connect","timestamp":"1671644824","direction":"USER_INITIATED","session":{"sdp_type":"offer","sdp":"v=0"}}]}}`,
		`{"field":"calls","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"`+pn+`","display_phone_number":"13175551399"},`+
			`"calls":[{"id":"wacid.ABGG","to":"13175551399","from":"16315553601","event":"terminate","direction":"USER_INITIATED","timestamp":"1671644900","status":"COMPLETED","start_time":"1671644826","end_time":"1671644900","duration":74}]}}`,
		`{"field":"calls","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"`+pn+`","display_phone_number":"13175551399"},`+
			`"statuses":[{"id":"wacid.BIZ","timestamp":"1671644950","type":"call","status":"RINGING","recipient_id":"16315553601"}]}}`,
		`{"field":"calls","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"`+pn+`","display_phone_number":"13175551399"},`+
			`"errors":[{"code":138006,"title":"No call permission","message":"No call permission"}]}}`,
	))
	evs := parse(t, body)
	wants := []want{
		{kind: messages.KindCall, account: pn, id: "wacid.ABGG", typ: "connect", from: "16315553601", ts: 1671644824, entryID: "366634483210360", contact: "16315553601"},
		{kind: messages.KindCall, account: pn, id: "wacid.ABGG", typ: "terminate", status: "COMPLETED", from: "16315553601", ts: 1671644900, entryID: "366634483210360"},
		{kind: messages.KindCall, account: pn, id: "wacid.BIZ", typ: "call", status: "RINGING", from: "16315553601", ts: 1671644950, entryID: "366634483210360"},
		{kind: messages.KindError, account: pn, errCode: 138006, entryID: "366634483210360"},
	}
	if len(evs) != len(wants) {
		t.Fatalf("got %d events, want %d", len(evs), len(wants))
	}
	for i, w := range wants {
		checkEvent(t, i, evs[i], w)
	}
	requireDistinct(t, evs)
	if evs[0].Context.Field != "calls" {
		t.Errorf("field %q", evs[0].Context.Field)
	}
	if got := messages.Subject(evs[0]); got != "wagate.events.cloud.call."+pn+"."+strconv.Itoa(messages.Slot(evs[0])) {
		t.Errorf("subject %q", got)
	}
}

func TestParseValueErrors(t *testing.T) {
	// A value-level error: Meta, "Webhooks reference: messages", errors.
	errItem := `{"code":131000,"title":"Something went wrong","message":"Something went wrong","error_data":{"details":"Unknown error"},"href":"https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}`
	body := `{"object":"whatsapp_business_account","entry":[{"id":"` + waba + `","time":1700000080,"changes":[` +
		messagesChange(pnA, `"errors":[`+errItem+`,{"code":"131009","error_data":"not an object"},{"code":[1]}]`) + `]}]}`
	evs := parse(t, body)
	if len(evs) != 3 {
		t.Fatalf("got %d events, want 3", len(evs))
	}
	checkEvent(t, 0, evs[0], want{kind: messages.KindError, account: pnA, errCode: 131000, entryID: waba, entryTime: 1700000080})
	checkEvent(t, 1, evs[1], want{kind: messages.KindError, account: pnA, errCode: 131009, entryID: waba, entryTime: 1700000080})
	checkEvent(t, 2, evs[2], want{kind: messages.KindError, account: pnA, errCode: 0, entryID: waba, entryTime: 1700000080})
	if e := evs[0].Errors[0]; e.Details != "Unknown error" || !strings.HasPrefix(e.Href, "https://") {
		t.Errorf("error %+v", e)
	}
	wantIdentity := messages.Identity("cloud", "error", "messages", waba, "1700000080", pnA, sha256Hex(errItem))
	if evs[0].Identity != wantIdentity {
		t.Errorf("identity %q, want %q", evs[0].Identity, wantIdentity)
	}
	requireDistinct(t, evs)
}

func TestParseLenientItemErrors(t *testing.T) {
	for _, errs := range []string{`"oops"`, `null`, `[1,"x",null]`, `{"code":1}`, `[{"code":1.5e3},{"code":"abc"},{"code":true,"title":7}]`} {
		body := envelope(entry(waba, messagesChange(pnA, `"statuses":[{"id":"wamid.L","status":"failed","timestamp":"1","recipient_id":"`+user+`","errors":`+errs+`}]`)))
		evs := parse(t, body)
		if len(evs) != 1 || evs[0].Kind != messages.KindStatus || evs[0].Fallback {
			t.Fatalf("errors %s: got %+v", errs, evs)
		}
	}
	evs := parse(t, envelope(entry(waba, messagesChange(pnA, `"statuses":[{"id":"wamid.L","status":"failed","timestamp":1700000090,"recipient_id":"`+user+`","errors":[{"code":1.5e3},{"code":"abc","title":"t"}]}]`))))
	if got := evs[0].Errors; len(got) != 2 || got[0].Code != 1500 || got[1].Code != 0 || got[1].Title != "t" {
		t.Errorf("errors %+v", got)
	}
	if evs[0].Timestamp != 1700000090 {
		t.Errorf("numeric timestamp: %d", evs[0].Timestamp)
	}
	for _, ts := range []string{`"-5"`, `"soon"`, `1.5`, `null`, `"1e9"`} {
		evs := parse(t, envelope(entry(waba, messagesChange(pnA, `"messages":[{"id":"wamid.T","from":"1","timestamp":`+ts+`}]`))))
		if evs[0].Timestamp != 0 {
			t.Errorf("timestamp %s: %d, want 0", ts, evs[0].Timestamp)
		}
	}
}

func TestParseContactMatching(t *testing.T) {
	var contacts, msgs []string
	for i := range 40 { // above the size where contacts are indexed
		contacts = append(contacts, fmt.Sprintf(`{"profile":{"name":"User %d"},"wa_id":"1555000%04d"}`, i, i))
		msgs = append(msgs, message(fmt.Sprintf("wamid.%d", i), fmt.Sprintf("1555000%04d", i), "1", "x"))
	}
	msgs = append(msgs, message("wamid.stranger", "19990000000", "1", "x"))
	for _, n := range []int{3, 40} {
		body := envelope(entry(waba, messagesChange(pnA, `"contacts":[`+strings.Join(contacts[:n], ",")+`],"messages":[`+
			strings.Join(msgs[:n], ",")+","+msgs[len(msgs)-1]+`]`)))
		evs := parse(t, body)
		for i, ev := range evs[:n] {
			if want := contacts[i]; string(ev.Context.Contact) != want {
				t.Errorf("%d contacts: event %d: contact %s, want %s", n, i, ev.Context.Contact, want)
			}
		}
		if c := evs[n].Context.Contact; c != nil {
			t.Errorf("%d contacts: sender without contact got %s", n, c)
		}
	}
	// A single contact goes with every item, matching or not.
	evs := parse(t, envelope(entry(waba, messagesChange(pnA, `"contacts":[`+contacts[0]+`],"messages":[`+msgs[5]+`]`))))
	if string(evs[0].Context.Contact) != contacts[0] {
		t.Errorf("only contact: %s", evs[0].Context.Contact)
	}
}

func TestParseItemDoesNotAliasBody(t *testing.T) {
	body := []byte(envelope(entry(waba, messagesChange(pnA, `"messages":[`+message("wamid.A", user, "1", "a")+`,`+message("wamid.B", user, "2", "b")+`]`))))
	orig := bytes.Clone(body)
	evs, err := messages.Parse(body, received)
	if err != nil {
		t.Fatal(err)
	}
	_ = append(evs[0].Item, "XXXXXXXX"...)
	_ = append(evs[0].Context.Metadata, "XXXXXXXX"...)
	if !bytes.Equal(body, orig) {
		t.Fatal("appending to an event's raw fields wrote into the body")
	}
}

// sha256Hex is the hash part of an identity: hex SHA-256 of the compacted item.
func sha256Hex(item string) string {
	var b bytes.Buffer
	_ = json.Compact(&b, []byte(item))
	return fmt.Sprintf("%x", sha256.Sum256(b.Bytes()))
}

// Meta's group statuses: one per participant in one body, each its own
// event; a call status and a message status with one id and value are two
// events; a reaction and its removal are two events.
func TestParseGroupStatusesCallsAndReactions(t *testing.T) {
	const pn = "106540352242922"
	groupStatus := func(participant string) string {
		return `{"id":"wamid.G1","status":"delivered","timestamp":"1739321024","recipient_id":"120363000000000001","recipient_type":"group","recipient_participant_id":"` + participant + `"}`
	}
	evs := parse(t, envelope(entry(waba, messagesChange(pn, `"statuses":[`+groupStatus("16505550001")+`,`+groupStatus("16505550002")+`,`+groupStatus("16505550003")+`]`))))
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	requireDistinct(t, evs)
	if want := messages.Identity("cloud", "status", pn, "messages", "wamid.G1", "delivered", "16505550002"); evs[1].Identity != want {
		t.Errorf("identity %q, want %q", evs[1].Identity, want)
	}

	st := `"statuses":[{"id":"wacid.X","status":"ACCEPTED","timestamp":"1739321024","type":"call","recipient_id":"16505551234"}]`
	msgStatus := parse(t, envelope(entry(waba, messagesChange(pn, st))))
	callStatus := parse(t, envelope(entry(waba, `{"field":"calls","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"`+pn+`"},`+st+`}}`)))
	if msgStatus[0].Key == callStatus[0].Key || callStatus[0].Kind != messages.KindCall || callStatus[0].Status != "ACCEPTED" {
		t.Errorf("call status %+v, message status %q", callStatus[0], msgStatus[0].Identity)
	}

	reaction := func(emoji string) messages.Event {
		return parse(t, envelope(entry(waba, messagesChange(pn, `"messages":[{"from":"16505551234","id":"wamid.R","timestamp":"1739321024","type":"reaction","reaction":{"message_id":"wamid.T"`+emoji+`}}]`))))[0]
	}
	added, removedEmpty, removedMissing := reaction(`,"emoji":"👍"`), reaction(`,"emoji":""`), reaction(``)
	if added.Key == removedEmpty.Key || removedEmpty.Key != removedMissing.Key {
		t.Errorf("reaction %q, removal %q and %q", added.Identity, removedEmpty.Identity, removedMissing.Identity)
	}
}

// Echoes and history carry messages: one event per message, marked, keyed
// by id and field.
func TestParseEchoesAndHistory(t *testing.T) {
	const pn = "106540352242922"
	msg := func(id string) string {
		return `{"from":"15550783881","to":"16505551234","id":"` + id + `","timestamp":"1739321024","type":"text","text":{"body":"x"}}`
	}
	echoes := parse(t, envelope(entry(waba, `{"field":"smb_message_echoes","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"`+pn+`"},"message_echoes":[`+msg("wamid.E1")+`,`+msg("wamid.E2")+`]}}`)))
	history := parse(t, envelope(entry(waba, `{"field":"history","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"`+pn+`"},"history":[{"metadata":{"phase":0},"threads":[{"id":"16505551234","messages":[`+msg("wamid.E1")+`]},{"id":"1","messages":[`+msg("wamid.H2")+`]}]},{"errors":[{"code":2593109,"title":"History sync is turned off"}]}]}}`)))
	inbound := parse(t, envelope(entry(waba, messagesChange(pn, `"messages":[`+msg("wamid.E1")+`]`))))
	if len(echoes) != 2 || echoes[0].Kind != messages.KindMessage || echoes[0].Direction != "outbound" || echoes[0].From != "16505551234" {
		t.Errorf("echoes %+v", echoes)
	}
	if len(history) != 3 || history[0].Direction != "history" || history[1].Direction != "history" || history[2].Kind != messages.KindError {
		t.Fatalf("history %+v", history)
	}
	if inbound[0].Direction != "" || inbound[0].Key == echoes[0].Key || inbound[0].Key == history[0].Key || echoes[0].Key == history[0].Key {
		t.Errorf("one wamid in three fields: %q %q %q", inbound[0].Identity, echoes[0].Identity, history[0].Identity)
	}
	if want := messages.Identity("cloud", "message", pn, "smb_message_echoes", "wamid.E2"); echoes[1].Identity != want {
		t.Errorf("identity %q, want %q", echoes[1].Identity, want)
	}
}

// No Cloud API event is Transient, with or without a time of its own: Meta
// retries for up to 7 days, so items without an id are deduplicated over the
// whole dedupe horizon (see DefaultRepeatWindow).
func TestParseCloudNeverTransient(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "meta_*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Cloud API fixtures: %v", err)
	}
	timestamp := regexp.MustCompile(`"timestamp"\s*:\s*("[^"]*"|[0-9]+)\s*,?`)
	for _, path := range files {
		body, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		untimed := timestamp.ReplaceAll(body, nil)
		untimed = regexp.MustCompile(`,(\s*})`).ReplaceAll(untimed, []byte("$1"))
		for _, b := range [][]byte{body, untimed} {
			evs := parse(t, string(b))
			for _, ev := range evs {
				if ev.Transient {
					t.Errorf("%s: %s event %q is Transient", filepath.Base(path), ev.Kind, ev.Identity)
				}
			}
		}
	}
	evs := parse(t, envelope(entry("1", `{"field":"future_field","value":{"x":1}}`)))
	if len(evs) != 1 || evs[0].Transient {
		t.Errorf("unknown field: %+v", evs)
	}
}
