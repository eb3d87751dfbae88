package messages_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/messages"
)

// parseFile parses a fixture with the parser of provider.
func parseFile(t *testing.T, provider, path string) []messages.Event {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", path))
	if err != nil {
		t.Fatal(err)
	}
	parse, ok := messages.Parser(provider)
	if !ok {
		t.Fatalf("no parser for %s", provider)
	}
	evs, err := parse(body, time.Unix(1_700_000_000, 0))
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestConversation(t *testing.T) {
	cases := []struct {
		provider, path string
		kind           messages.Kind
		want           string
	}{
		{messages.ProviderCloud, "peers/cloud/WBAPI_Doc__group_message_text.json", messages.KindMessage,
			"cloud|106540352242922|group:HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA"},
		{messages.ProviderCloud, "peers/cloud/WBAPI_Doc__group_statuses_delivered_two_participants.json", messages.KindStatus,
			"cloud|BUSINESS_PHONE_NUMBER_ID|group:GROUP_ID"},
		{messages.ProviderEvolution, "evolution_messages_upsert.json", messages.KindMessage,
			"evolution|shop-main|user:5511900000001"},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			evs := parseFile(t, c.provider, c.path)
			n := 0
			for _, ev := range evs {
				if ev.Kind != c.kind {
					continue
				}
				n++
				if ev.Conversation != c.want {
					t.Errorf("%s %s: conversation %q, want %q", ev.Kind, ev.ID, ev.Conversation, c.want)
				}
				if tok := messages.ConversationToken(ev); !strings.HasPrefix(tok, "c") || len(tok) != 17 {
					t.Errorf("token %q", tok)
				}
			}
			if n == 0 {
				t.Fatalf("no %s event", c.kind)
			}
		})
	}
}

// A user's message and the statuses of the business's reply are one
// conversation; another user is another; a field change is none.
func TestConversationCloudUser(t *testing.T) {
	body := []byte(`{"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[
	 {"field":"messages","value":{"metadata":{"phone_number_id":"PN1"},
	  "messages":[{"from":"15550001","id":"wamid.1","timestamp":"1","type":"text","text":{"body":"hi"}},
	              {"from":"15550002","id":"wamid.2","timestamp":"1","type":"text","text":{"body":"hi"}}],
	  "statuses":[{"id":"wamid.3","status":"read","timestamp":"2","recipient_id":"15550001"}]}},
	 {"field":"account_update","value":{"event":"VERIFIED_ACCOUNT"}}]}]}`)
	evs, err := messages.Parse(body, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 4 {
		t.Fatalf("%d events", len(evs))
	}
	got := []string{evs[0].Conversation, evs[1].Conversation, evs[2].Conversation, evs[3].Conversation}
	want := []string{"cloud|PN1|user:15550001", "cloud|PN1|user:15550002", "cloud|PN1|user:15550001", ""}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d (%s): conversation %q, want %q", i, evs[i].Kind, got[i], want[i])
		}
	}
	if a, b := messages.Subject(evs[0]), messages.Subject(evs[2]); strings.TrimPrefix(a, "wagate.events.cloud.message.") !=
		strings.TrimPrefix(b, "wagate.events.cloud.status.") {
		t.Errorf("subjects %q and %q end differently", a, b)
	}
	if tok := messages.ConversationToken(evs[3]); tok != "_" {
		t.Errorf("field change token %q", tok)
	}
}

// TestSlot checks an event's slot against values worked out by hand from
// the SHA-256 of its conversation (or, without one, of its key): the first
// 8 bytes as a big-endian integer, modulo 32.
func TestSlot(t *testing.T) {
	for _, c := range []struct {
		ev   messages.Event
		want int
	}{
		// sha256("cloud|PN1|user:15550001") starts d61f9bba4766dc08: 0x…dc08 % 32 = 8.
		{messages.Event{Conversation: "cloud|PN1|user:15550001", Key: "ignored"}, 8},
		// No conversation: sha256("wg1:abc") starts d932da2a7475325c: 0x…325c % 32 = 28.
		{messages.Event{Key: "wg1:abc"}, 28},
	} {
		if got := messages.Slot(c.ev); got != c.want {
			t.Errorf("Slot(%+v) = %d, want %d", c.ev, got, c.want)
		}
	}
	// Every slot is used: 4,096 conversations leave none empty.
	used := map[int]bool{}
	for i := range 4096 {
		used[messages.Slot(messages.Event{Conversation: fmt.Sprintf("cloud|PN1|user:%d", i)})] = true
	}
	if len(used) != messages.Slots {
		t.Errorf("%d of %d slots used", len(used), messages.Slots)
	}
}
