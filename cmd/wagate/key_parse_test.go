package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wagate/wagate/messages"
)

// groupAndCalls adds what the file fixtures lack: a group member's status
// and a call's event and status (shapes of Meta's "Webhooks for Groups API"
// and Calling API "API and Webhook Reference").
const groupAndCalls = `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[
{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":"106540352242922"},
 "statuses":[{"id":"wamid.G1","status":"read","timestamp":"1700000000","recipient_id":"120363000000000001@g.us","recipient_participant_id":"16505550001"}]}},
{"field":"calls","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":"106540352242922"},
 "calls":[{"id":"wacid.C1","from":"16505550002","to":"15550001111","event":"connect","timestamp":"1700000001"}],
 "statuses":[{"id":"wacid.C1","type":"call","status":"RINGING","timestamp":"1700000002","recipient_id":"16505550002"}]}}]}]}`

// Every Cloud API message, status and call of every fixture (the samples of
// "wagate send", the parser's own fixtures and groupAndCalls) has the key in
// "wagate key <id> --account … --kind … --status …" that messages.Parse
// gives it.
func TestKeyAgreesWithParse(t *testing.T) {
	files, err := filepath.Glob("samples/*.json")
	if err != nil {
		t.Fatal(err)
	}
	meta, err := filepath.Glob("../../messages/testdata/meta_*.json")
	if err != nil {
		t.Fatal(err)
	}
	bodies := map[string][]byte{"groupAndCalls": []byte(groupAndCalls)}
	for _, f := range append(files, meta...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		bodies[f] = b
	}
	if len(bodies) < 20 {
		t.Fatalf("only %d fixtures found", len(bodies))
	}
	kinds := map[messages.Kind]int{}
	participants := 0
	for name, body := range bodies {
		evs, err := messages.Parse(body, time.Unix(1700000000, 0))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, ev := range evs {
			switch ev.Kind {
			case messages.KindMessage, messages.KindStatus, messages.KindCall:
			default:
				continue
			}
			if ev.Fallback || ev.Type == "reaction" {
				continue // no usable id, or an identity holding the emoji: named by key
			}
			ref := eventRef{kind: string(ev.Kind), account: ev.Account, field: ev.Context.Field}
			switch {
			case ev.Kind == messages.KindStatus:
				ref.second = ev.Status
				ref.participant = participantOf(t, ev.Item)
				if ref.participant != "" {
					participants++
				}
			case ev.Kind == messages.KindCall && (ev.Type == "connect" || ev.Type == "terminate"):
				ref.second = ev.Type
			case ev.Kind == messages.KindCall:
				ref.second = ev.Status
			}
			key, identity, err := resolveKey(ev.ID, ref)
			if err != nil {
				t.Errorf("%s: %s %s: %v", name, ev.Kind, ev.ID, err)
				continue
			}
			if key != ev.Key || identity != ev.Identity {
				t.Errorf("%s: %s %s: wagate key gives %s (%s), Parse %s (%s)", name, ev.Kind, ev.ID, key, identity, ev.Key, ev.Identity)
			}
			kinds[ev.Kind]++
		}
	}
	if kinds[messages.KindMessage] == 0 || kinds[messages.KindStatus] == 0 || kinds[messages.KindCall] < 2 || participants == 0 {
		t.Errorf("fixtures cover %v and %d group statuses; want every kind, both call forms and a group status", kinds, participants)
	}
}

// participantOf returns the group participant a status item names.
func participantOf(t *testing.T, item []byte) string {
	t.Helper()
	var st map[string]any
	if err := json.Unmarshal(item, &st); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"recipient_participant_id", "participant_recipient_id", "recipient_participant_user_id"} {
		if s, _ := st[k].(string); s != "" {
			return s
		}
	}
	return ""
}
