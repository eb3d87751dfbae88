package messages_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/messages"
)

var received = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

// want is what the tests check of one event.
type want struct {
	kind      messages.Kind
	account   string
	id        string
	typ       string
	status    string
	from      string
	ts        int64
	errCode   int // Errors[0].Code; 0: no errors
	fallback  bool
	entryID   string
	entryTime int64
	contact   string // wa_id of Context.Contact; "": none
	// rest are the identity parts after the id and status (a reaction's
	// "reaction" and emoji, a group status's participant); not compared.
	rest []string
}

func TestParseFixtures(t *testing.T) {
	const (
		waba    = "102290129340398"
		pnid    = "106540352242922"
		user    = "15550000001"
		pywaPN  = "1122334455667"
		pywaEnt = "1234567890987654321"
	)
	tests := map[string][]want{
		"meta_batch_two_changes_one_entry.json": {
			{kind: messages.KindMessage, account: "PHONE_NUMBER_ID", id: "wamid.ID", typ: "text", from: "PHONE_NUMBER", ts: 1669233778, entryID: "WHATSAPP_BUSINESS_ACCOUNT_ID", contact: "PHONE_NUMBER"},
			{kind: messages.KindMessage, account: "PHONE_NUMBER_ID", id: "wamid.ID", typ: "text", from: "PHONE_NUMBER", ts: 1669233779, entryID: "WHATSAPP_BUSINESS_ACCOUNT_ID", contact: "PHONE_NUMBER"},
		},
		"meta_field_account_update_restriction.json": {
			{kind: messages.KindField, account: waba, typ: "account_update", entryID: waba, entryTime: 1641330498},
		},
		"meta_field_message_template_status_update_rejected.json": {
			{kind: messages.KindField, account: waba, typ: "message_template_status_update", entryID: waba, entryTime: 1751247548},
		},
		"meta_field_phone_number_quality_update.json": {
			{kind: messages.KindField, account: waba, typ: "phone_number_quality_update", entryID: waba, entryTime: 1748454394},
		},
		"meta_msg_audio_voice.json": {
			{kind: messages.KindMessage, account: "1111111111111", id: "wamid.HBgLMTU1NTAwMDAwMDEVAgASGBRGQUtFMDAwMDAwMDAwMDAwMDAwMQA=", typ: "audio", from: "1111111111111", ts: 1673033070, entryID: "1111111111111", contact: "1111111111111"},
		},
		"meta_msg_button_template_quick_reply.json": {
			{kind: messages.KindMessage, account: pnid, id: "wamid.HBgLMTU1NTAwMDAwMDEVAgASGBRGQUtFMDAwMDAwMDAwMDAwMDAwNgA=", typ: "button", from: user, ts: 1750091045, entryID: waba, contact: user},
		},
		"meta_msg_contacts.json": {
			{kind: messages.KindMessage, account: "200000000000001", id: "wamid.HBgLMTU1NTAwMDAwMDEVAgASGBRGQUtFMDAwMDAwMDAwMDAwMDAwNQA=", typ: "contacts", from: "1111111111111", ts: 1673641462, entryID: "100000000000001", contact: "1111111111111"},
		},
		"meta_msg_document.json": {
			{kind: messages.KindMessage, account: "1111111111111", id: "wamid.HBgLMTU1NTAwMDAwMDEVAgASGBRGQUtFMDAwMDAwMDAwMDAwMDAwMgA=", typ: "document", from: "1111111111111", ts: 1673034392, entryID: "1111111111111", contact: "1111111111111"},
		},
		"meta_msg_image_with_media_url.json": {
			{kind: messages.KindMessage, account: pywaPN, id: "wamid.xyzxyz", typ: "image", from: user, ts: 1697043379, entryID: pywaEnt, contact: user},
		},
		"meta_msg_interactive_button_reply.json": {
			{kind: messages.KindMessage, account: pnid, id: "wamid.HBgLMTU1NTAwMDAwMDEVAgASGBRGQUtFMDAwMDAwMDAwMDAwMDAwOQA=", typ: "interactive", from: user, ts: 1714510003, entryID: waba, contact: user},
		},
		"meta_msg_interactive_list_reply.json": {
			{kind: messages.KindMessage, account: pnid, id: "wamid.HBgLMTU1NTAwMDAwMDEVAgASGBRGQUtFMDAwMDAwMDAwMDAwMDAxMQA=", typ: "interactive", from: user, ts: 1712595443, entryID: waba, contact: user},
		},
		"meta_msg_interactive_nfm_reply_flow.json": {
			{kind: messages.KindMessage, account: pywaPN, id: "wamid.wegrchytvwcggt==", typ: "interactive", from: user, ts: 1702502473, entryID: pywaEnt, contact: user},
		},
		"meta_msg_location_raw_slash_escapes.json": {
			{kind: messages.KindMessage, account: "200000000000001", id: "wamid.HBgLMTU1NTAwMDAwMDEVAgASGBRGQUtFMDAwMDAwMDAwMDAwMDAwNAA=", typ: "location", from: "1111111111111", ts: 1673641462, entryID: "100000000000001", contact: "1111111111111"},
		},
		"meta_msg_order.json": {
			{kind: messages.KindMessage, account: pnid, id: "wamid.HBgLMTU1NTAwMDAwMDEVAgASGBRGQUtFMDAwMDAwMDAwMDAwMDAwNgA=", typ: "order", from: user, ts: 1750096325, entryID: waba, contact: user},
		},
		"meta_msg_reaction_escaped_emoji.json": {
			{kind: messages.KindMessage, account: pywaPN, id: "wamid.xyzxyz", typ: "reaction", from: user, ts: 1697044456, entryID: pywaEnt, contact: user, rest: []string{"reaction", "\U0001F62E"}},
		},
		"meta_msg_sticker.json": {
			{kind: messages.KindMessage, account: "200000000000001", id: "wamid.HBgLMTU1NTAwMDAwMDEVAgASGBRGQUtFMDAwMDAwMDAwMDAwMDAwMwA=", typ: "sticker", from: "1111111111111", ts: 1673028387, entryID: "100000000000001", contact: "1111111111111"},
		},
		"meta_msg_text_ctwa_referral.json": {
			{kind: messages.KindMessage, account: pnid, id: "wamid.HBgLMTU1NTAwMDAwMDEVAgASGBRGQUtFMDAwMDAwMDAwMDAwMDAxMwA=", typ: "text", from: user, ts: 1750275992, entryID: waba, contact: user},
		},
		"meta_msg_text_reply_context.json": {
			{kind: messages.KindMessage, account: pywaPN, id: "wamid.xyzxyz", typ: "text", from: user, ts: 1697044746, entryID: pywaEnt, contact: user},
		},
		"meta_msg_text_with_bsuid.json": {
			{kind: messages.KindMessage, account: pywaPN, id: "wamid.xyzxyz", typ: "text", from: user, ts: 1697043223, entryID: pywaEnt, contact: user},
		},
		"meta_msg_unsupported_with_errors.json": {
			{kind: messages.KindMessage, account: pywaPN, id: "wamid.xyzxyz", typ: "unsupported", from: user, ts: 1697044706, errCode: 131051, entryID: pywaEnt, contact: user},
		},
		"meta_msg_video_forwarded.json": {
			{kind: messages.KindMessage, account: pywaPN, id: "wamid.xyzxyz", typ: "video", from: user, ts: 1697044362, entryID: pywaEnt, contact: user},
		},
		"meta_status_delivered_cbp_legacy.json": {
			{kind: messages.KindStatus, account: "200000000000001", id: "wamid.HBgLMTU1NTAwMDAwMDEVAgASGBRGQUtFMDAwMDAwMDAwMDAwMDAwMwA=", status: "delivered", from: "1111111111111", ts: 1673020317, entryID: "100000000000001"},
		},
		"meta_status_failed_131047_reengagement.json": {
			{kind: messages.KindStatus, account: "109999999999999", id: "wamid.HBgLMTU1NTAwMDAwMDEVAgASGBRGQUtFMDAwMDAwMDAwMDAwMDAxNQA=", status: "failed", from: "5511111111111", ts: 1682651887, errCode: 131047, entryID: "111111111111111"},
		},
		"meta_status_failed_131049.json": {
			{kind: messages.KindStatus, account: pnid, id: "wamid.HBgLMTU1NTAwMDAwMDEVAgARGBRGQUtFMDAwMDAwMDAwMDAwMDAxNAA=", status: "failed", from: user, ts: 1751142888, errCode: 131049, entryID: waba},
		},
		"meta_status_played_voice.json": {
			{kind: messages.KindStatus, account: pywaPN, id: "wamid.xyzxyz", status: "played", from: user, ts: 1689380458, entryID: "5467539754836534", contact: user},
		},
		"meta_status_sent_pmp.json": {
			{kind: messages.KindStatus, account: pnid, id: "wamid.HBgLMTU1NTAwMDAwMDEVAgASGBRGQUtFMDAwMDAwMDAwMDAwMDAwNgA=", status: "sent", from: user, ts: 1750030073, entryID: waba},
		},
		"meta_status_sent_v24_no_conversation_no_pricing.json": {
			{kind: messages.KindStatus, account: pnid, id: "wamid.HBgLMTU1NTAwMDAwMDEVAgASGBRGQUtFMDAwMDAwMDAwMDAwMDAwNgA=", status: "sent", from: user, ts: 1750030073, entryID: waba},
		},
		"wasender_messages_received.json": nil, // not a Cloud API body
		"wasender_messages_upsert.json":   nil, // not a Cloud API body
	}

	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, path := range files {
		name := filepath.Base(path)
		seen[name] = true
		wants, ok := tests[name]
		if !ok && !strings.HasPrefix(name, "meta_") {
			ok = true // another provider's body: Parse must refuse it (below)
		}
		if !ok {
			t.Errorf("%s: no expected events in the table: add them", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			evs, err := messages.Parse(body, received)
			if !strings.HasPrefix(name, "meta_") {
				if !errors.Is(err, messages.ErrNotWebhook) || evs != nil {
					t.Fatalf("Parse = %d events, %v; want nil, ErrNotWebhook", len(evs), err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			checkEvents(t, body, evs)
			if len(evs) != len(wants) {
				t.Fatalf("got %d events, want %d", len(evs), len(wants))
			}
			for i, w := range wants {
				checkEvent(t, i, evs[i], w)
			}
		})
	}
	for name := range tests {
		if !seen[name] {
			t.Errorf("%s: in the table but not in testdata", name)
		}
	}
}

// checkEvent compares ev with w.
func checkEvent(t *testing.T, i int, ev messages.Event, w want) {
	t.Helper()
	var errCode int
	if len(ev.Errors) > 0 {
		errCode = ev.Errors[0].Code
	}
	var contact struct {
		WaID string `json:"wa_id"`
	}
	if ev.Context.Contact != nil {
		if err := json.Unmarshal(ev.Context.Contact, &contact); err != nil {
			t.Errorf("event %d: contact: %v", i, err)
		}
	}
	got := want{
		kind: ev.Kind, account: ev.Account, id: ev.ID, typ: ev.Type, status: ev.Status,
		from: ev.From, ts: ev.Timestamp, errCode: errCode, fallback: ev.Fallback,
		entryID: ev.Context.EntryID, entryTime: ev.Context.EntryTime, contact: contact.WaID,
	}
	if !equalWant(got, w) {
		t.Errorf("event %d:\n got %+v\nwant %+v", i, got, w)
	}
	if ev.Provider != messages.ProviderCloud || ev.Context.Object != "whatsapp_business_account" {
		t.Errorf("event %d: provider %q, object %q", i, ev.Provider, ev.Context.Object)
	}
	if !ev.ReceivedAt.Equal(received) {
		t.Errorf("event %d: ReceivedAt %v, want %v", i, ev.ReceivedAt, received)
	}
	// The identity is made of the ids the table states.
	// Items of the calls field are kind call; every other item here came in
	// the messages field.
	var wantIdentity string
	switch {
	case w.fallback:
	case w.kind == messages.KindMessage:
		wantIdentity = messages.Identity(append([]string{"cloud", "message", w.account, "messages", w.id}, w.rest...)...)
	case w.kind == messages.KindStatus:
		wantIdentity = messages.Identity(append([]string{"cloud", "status", w.account, "messages", w.id, w.status}, w.rest...)...)
	case w.kind == messages.KindCall && w.status != "" && w.typ == "call":
		wantIdentity = messages.Identity("cloud", "call", w.account, "calls", w.id, "status", w.status)
	case w.kind == messages.KindCall:
		wantIdentity = messages.Identity("cloud", "call", w.account, "calls", w.id, "event", w.typ)
	}
	if wantIdentity != "" && ev.Identity != wantIdentity {
		t.Errorf("event %d: identity %q, want %q", i, ev.Identity, wantIdentity)
	}
}

var subjectToken = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// checkEvents checks what holds for every event of every body: the key's
// form, the subject's tokens, the item's bytes and the wire round trip.
func checkEvents(t testing.TB, body []byte, evs []messages.Event) {
	t.Helper()
	for i, ev := range evs {
		if len(ev.Key) != messages.KeyLen || !strings.HasPrefix(ev.Key, messages.KeyPrefix) {
			t.Fatalf("event %d: key %q: want %d bytes starting %q", i, ev.Key, messages.KeyLen, messages.KeyPrefix)
		}
		if ev.Key != messages.KeyOf(ev.Identity) {
			t.Fatalf("event %d: key %q is not KeyOf(%q)", i, ev.Key, ev.Identity)
		}
		subject := messages.Subject(ev)
		tokens := strings.Split(subject, ".")
		if len(tokens) != 6 {
			t.Fatalf("event %d: subject %q has %d tokens, want 6", i, subject, len(tokens))
		}
		if tokens[5] != strconv.Itoa(messages.Slot(ev)) {
			t.Fatalf("event %d: subject %q: want slot %d last", i, subject, messages.Slot(ev))
		}
		if s, conv := messages.Route(ev); s != subject || conv != messages.ConversationToken(ev) {
			t.Fatalf("event %d: Route = %q, %q; want %q, %q", i, s, conv, subject, messages.ConversationToken(ev))
		}
		if slot := messages.Slot(ev); slot < 0 || slot >= messages.Slots {
			t.Fatalf("event %d: slot %d out of [0, %d)", i, slot, messages.Slots)
		}
		for _, tok := range tokens {
			if !subjectToken.MatchString(tok) {
				t.Fatalf("event %d: subject %q: bad token %q", i, subject, tok)
			}
		}
		if !json.Valid(ev.Item) {
			t.Fatalf("event %d: item is not JSON: %q", i, ev.Item)
		}
		redacted := ev.Provider == messages.ProviderEvolution && bytes.Contains(ev.Item, []byte(`"apikey":"[redacted]"`))
		if !redacted && !bytes.Contains(body, ev.Item) {
			t.Fatalf("event %d: item is not a part of the body: %q", i, ev.Item)
		}
		if cap(ev.Item) != len(ev.Item) {
			t.Fatalf("event %d: item capacity %d > length %d: an append would write into the body", i, cap(ev.Item), len(ev.Item))
		}
		checkWire(t, i, ev)
		checkFrame(t, i, body, ev)
	}
}

// checkWire checks that Decode(Encode(ev)) gives ev back, with the item byte
// for byte.
func checkWire(t testing.TB, i int, ev messages.Event) {
	t.Helper()
	data, err := ev.Encode()
	if err != nil {
		t.Fatalf("event %d: Encode: %v", i, err)
	}
	if !bytes.Contains(data, ev.Item) {
		t.Fatalf("event %d: encoded event does not hold the item's exact bytes", i)
	}
	if n := int64(len(data)); n > ev.EncodedSize() {
		t.Fatalf("event %d: %d bytes encoded, above its EncodedSize %d", i, n, ev.EncodedSize())
	}
	back, err := messages.Decode(data)
	if err != nil {
		t.Fatalf("event %d: Decode: %v", i, err)
	}
	if !bytes.Equal(back.Item, ev.Item) {
		t.Fatalf("event %d: item after Decode %q, want %q", i, back.Item, ev.Item)
	}
	if !back.ReceivedAt.Equal(ev.ReceivedAt) {
		t.Fatalf("event %d: ReceivedAt after Decode %v, want %v", i, back.ReceivedAt, ev.ReceivedAt)
	}
	if !sameJSON(back.Context.Metadata, ev.Context.Metadata) || !sameJSON(back.Context.Contact, ev.Context.Contact) {
		t.Fatalf("event %d: context after Decode %+v, want %+v", i, back.Context, ev.Context)
	}
	// Compare the rest field by field (raw and time fields checked above).
	back.Item, ev.Item = nil, nil
	back.ReceivedAt, ev.ReceivedAt = time.Time{}, time.Time{}
	back.Context.Metadata, ev.Context.Metadata = nil, nil
	back.Context.Contact, ev.Context.Contact = nil, nil
	if len(ev.Errors) == 0 {
		ev.Errors = nil
	}
	if !equalEvents(back, ev) {
		t.Fatalf("event %d after Decode:\n got %+v\nwant %+v", i, back, ev)
	}
}

func equalEvents(a, b messages.Event) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

// sameJSON reports whether a and b are the same JSON once compacted (Encode
// writes the context's raw members compacted).
func sameJSON(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return false
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

// equalWant compares two wants, without rest.
func equalWant(a, b want) bool {
	a.rest, b.rest = nil, nil
	return reflect.DeepEqual(a, b)
}
