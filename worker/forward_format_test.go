package worker

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/ingest"
	"github.com/wagate/wagate/messages"
)

// providerFixtures returns the parsed events of every payload fixture of
// messages/testdata, by file, with the file's bytes.
func providerFixtures(t *testing.T) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "messages", "testdata", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}

func providerOf(name string) string {
	switch {
	case strings.HasPrefix(name, "wasender_"):
		return messages.ProviderWASender
	case strings.HasPrefix(name, "waha_"):
		return messages.ProviderWAHA
	case strings.HasPrefix(name, "evolution_"):
		return messages.ProviderEvolution
	}
	return messages.ProviderCloud
}

// roundTrip checks that every event of body, written in its provider's
// format (after a trip through the stream's encoding), parses back to
// exactly itself: one event, the same key, the same item bytes.
func roundTrip(t *testing.T, name, provider string, body []byte) {
	t.Helper()
	parse, _ := messages.Parser(provider)
	evs, err := parse(body, time.Now())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	f := &Forward{Format: FormatProvider}
	main := 0
	for _, ev := range evs {
		enc, err := ev.Encode()
		if err != nil {
			t.Fatal(err)
		}
		stored, err := messages.Decode(enc)
		if err != nil {
			t.Fatal(err)
		}
		out, err := f.body(stored)
		if err != nil {
			t.Errorf("%s: %s %s: %v", name, ev.Kind, ev.Type, err)
			continue
		}
		if out == nil {
			if !ev.Context.Frame.Covered {
				t.Errorf("%s: %s %s: nothing to send", name, ev.Kind, ev.Type)
			}
			continue
		}
		main++
		if !json.Valid(out) {
			t.Errorf("%s: %s %s: body is not JSON: %s", name, ev.Kind, ev.Type, out)
			continue
		}
		back, err := parse(out, time.Now())
		if err != nil {
			t.Errorf("%s: %s %s: %v\n%s", name, ev.Kind, ev.Type, err, out)
			continue
		}
		var got []messages.Event
		for _, b := range back {
			if !b.Context.Frame.Covered {
				got = append(got, b)
			}
		}
		if len(got) != 1 || got[0].Key != ev.Key || !bytes.Equal(got[0].Item, ev.Item) {
			t.Errorf("%s: %s %s (%s): body %s\nparses to %d events, want itself alone", name, ev.Kind, ev.Type, ev.Identity, out, len(got))
			for _, g := range got {
				t.Logf("  %s %s", g.Identity, g.Item)
			}
		}
		if provider == messages.ProviderCloud && ev.Kind == messages.KindMessage && len(ev.Context.Contact) > 0 &&
			!bytes.Contains(out, ev.Context.Contact) && !bytes.Contains(out, compact(ev.Context.Contact)) {
			t.Errorf("%s: message body lacks its contact %s", name, ev.Context.Contact)
		}
	}
	// A gateway body holding one item is sent on exactly as received,
	// Evolution API's apikey (the instance's API key) redacted.
	want := body
	if provider == messages.ProviderEvolution {
		want = evolutionAPIKey.ReplaceAll(body, []byte(`${1}"[redacted]"`))
		for _, ev := range evs {
			out, _ := f.body(ev)
			for _, m := range evolutionAPIKey.FindAllSubmatch(body, -1) {
				if bytes.Contains(out, m[2]) {
					t.Errorf("%s: body sent on holds the apikey %s:\n%s", name, m[2], out)
				}
			}
		}
	}
	if provider != messages.ProviderCloud && main == 1 {
		for _, ev := range evs {
			if out, _ := f.body(ev); out != nil && !bytes.Equal(out, want) {
				t.Errorf("%s: body sent on\n%s\nwant as received\n%s", name, out, want)
			}
		}
	}
}

// evolutionAPIKey matches an "apikey" member of an Evolution API envelope;
// its third submatch is the value.
var evolutionAPIKey = regexp.MustCompile(`("apikey"\s*:\s*)("(?:[^"\\]|\\.)*")`)

func compact(b []byte) []byte {
	var buf bytes.Buffer
	_ = json.Compact(&buf, b)
	return buf.Bytes()
}

func TestProviderFormatRoundTrip(t *testing.T) {
	for name, body := range providerFixtures(t) {
		roundTrip(t, name, providerOf(name), body)
	}
	// The peer corpus: bodies from each provider's documentation and SDKs.
	peers, _ := filepath.Glob(filepath.Join("..", "messages", "testdata", "peers", "*", "*.json"))
	for _, f := range peers {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, f, filepath.Base(filepath.Dir(f)), body)
	}
}

// A Cloud API batch: 2 entries × 2 changes × 3 messages, with statuses and
// a group, written with Meta's escapes and odd spacing, is split into one
// envelope per item, each holding the item's bytes as received.
func TestProviderFormatCloudBatch(t *testing.T) {
	body := cloudBatch()
	roundTrip(t, "batch", messages.ProviderCloud, body)
	evs, err := messages.Parse(body, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2*2*3+2 {
		t.Fatalf("%d events, want 14", len(evs))
	}
	f := &Forward{Format: FormatProvider}
	out, err := f.body(evs[0])
	if err != nil {
		t.Fatal(err)
	}
	want := `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","time":1700000000,"changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Sheena \u00e9"},"wa_id":"16505551234"}],"messages":[{ "from": "16505551234", "id": "wamid.E0M0", "timestamp": "1700000001", "type": "text", "text": {"body": "caf\u00e9 \ud83d\ude00 \/ 0"} }]},"field":"messages"}]}]}`
	if string(out) != want {
		t.Errorf("first body\n%s\nwant\n%s", out, want)
	}
	// A status carries no contact of a message.
	st, _ := f.body(evs[len(evs)-1])
	if bytes.Contains(st, []byte("contacts")) || !bytes.Contains(st, []byte(`"statuses":[`)) {
		t.Errorf("status body %s", st)
	}
}

// cloudBatch is a webhook of 2 entries × 2 changes × 3 messages, then a
// change with a group status, as Meta writes them (escaped non-ASCII).
func cloudBatch() []byte {
	var b strings.Builder
	b.WriteString(`{"object":"whatsapp_business_account","entry":[`)
	for e := range 2 {
		if e > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"id":"102290129340398","time":1700000000,"changes":[`)
		for c := range 2 {
			if c > 0 {
				b.WriteString(",")
			}
			b.WriteString(`{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Sheena \u00e9"},"wa_id":"16505551234"},{"profile":{"name":"Kai"},"wa_id":"16505550000"}],"messages":[`)
			for m := range 3 {
				if m > 0 {
					b.WriteString(", ")
				}
				from := "16505551234"
				if m == 2 {
					from = "16505550000"
				}
				id := "wamid.E" + string(rune('0'+e)) + "C" + string(rune('0'+c)) + "M" + string(rune('0'+m))
				id = strings.Replace(id, "C0", "", 1)
				b.WriteString(`{ "from": "` + from + `", "id": "` + id + `", "timestamp": "1700000001", "type": "text", "text": {"body": "caf\u00e9 \ud83d\ude00 \/ ` + string(rune('0'+m)) + `"} }`)
			}
			b.WriteString(`]},"field":"messages"}`)
		}
		b.WriteString(`]}`)
	}
	b.WriteString(`,{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"statuses":[` +
		`{"id":"wamid.G1","status":"read","timestamp":"1700000002","recipient_id":"120363000000000001@g.us","recipient_type":"group","recipient_participant_id":"16505551234"},` +
		`{"id":"wamid.G1","status":"read","timestamp":"1700000003","recipient_id":"120363000000000001@g.us","recipient_type":"group","recipient_participant_id":"16505550000"}]},"field":"messages"}]}]}`)
	return []byte(b.String())
}

// Unknown items of a Cloud API body are placed back where they were found.
func TestProviderFormatCloudUnknown(t *testing.T) {
	body := `{"object":"whatsapp_business_account","x":1,"entry":[7,{"id":"1","y":[2],"changes":[8,{"field":"messages","z":3,"value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"9"},"w":{"a":1},"messages":[5]}},{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"9"}}}]}]}`
	roundTrip(t, "unknowns", messages.ProviderCloud, []byte(body))
}

// A WASenderApi body of several items gives one body per item, the others
// left out of the array.
func TestProviderFormatGatewayBatch(t *testing.T) {
	body := []byte(`{"event":"messages.update","timestamp":1700000000,"sessionId":"s","data":[ {"key":{"id":"A1","fromMe":true,"remoteJid":"1@s.whatsapp.net"},"update":{"status":3}} , {"key":{"id":"A2","fromMe":true,"remoteJid":"1@s.whatsapp.net"},"update":{"status":4}} ]}`)
	roundTrip(t, "wasender batch", messages.ProviderWASender, body)
	evs, err := messages.ParseWASender(body, time.Now())
	if err != nil || len(evs) != 2 {
		t.Fatalf("%d events, %v", len(evs), err)
	}
	f := &Forward{Format: FormatProvider}
	out, _ := f.body(evs[1])
	want := `{"event":"messages.update","timestamp":1700000000,"sessionId":"s","data":[{"key":{"id":"A2","fromMe":true,"remoteJid":"1@s.whatsapp.net"},"update":{"status":4}}]}`
	if string(out) != want {
		t.Errorf("second body\n%s\nwant\n%s", out, want)
	}
}

// The request in the provider's format carries the provider's signature
// (checked by recomputing it as the provider's documentation says), the
// idempotency key and the fencing token.
func TestForwardProviderRequest(t *testing.T) {
	var (
		mu  sync.Mutex
		got []captured
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, captured{r.Method, r.Header.Clone(), body})
		mu.Unlock()
	}))
	defer srv.Close()
	f := NewForward(srv.URL, srv.Client())
	f.Format = FormatProvider
	f.Sign = ingest.SignRequest
	f.Secrets = map[string]string{
		messages.ProviderCloud:    "app-secret",
		messages.ProviderWASender: "wasender-secret",
		messages.ProviderWAHA:     "waha-key",
	}
	files := providerFixtures(t)
	for _, name := range []string{"meta_msg_reaction_escaped_emoji.json", "wasender_messages_received.json", "waha_message.json"} {
		provider := providerOf(name)
		parse, _ := messages.Parser(provider)
		evs, err := parse(files[name], time.Now())
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		got = nil
		mu.Unlock()
		ctx := WithRun(context.Background(), Run{Fence: 42, Delivery: 1})
		if err := f.Handle(ctx, evs[0]); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(got) != 1 {
			t.Fatalf("%s: %d requests", name, len(got))
		}
		req := got[0]
		if req.header.Get(HeaderIdempotencyKey) != evs[0].Key || req.header.Get(HeaderFencingToken) != "42" {
			t.Errorf("%s: headers %v", name, req.header)
		}
		secret := f.Secrets[provider]
		switch provider {
		case messages.ProviderCloud:
			m := hmac.New(sha256.New, []byte(secret))
			m.Write(req.body)
			if want := "sha256=" + hex.EncodeToString(m.Sum(nil)); req.header.Get("X-Hub-Signature-256") != want {
				t.Errorf("%s: X-Hub-Signature-256 %q, want %q", name, req.header.Get("X-Hub-Signature-256"), want)
			}
			m = hmac.New(sha1.New, []byte(secret))
			m.Write(req.body)
			if want := "sha1=" + hex.EncodeToString(m.Sum(nil)); req.header.Get("X-Hub-Signature") != want {
				t.Errorf("%s: X-Hub-Signature %q, want %q", name, req.header.Get("X-Hub-Signature"), want)
			}
		case messages.ProviderWASender:
			if req.header.Get("X-Webhook-Signature") != secret {
				t.Errorf("%s: X-Webhook-Signature %q", name, req.header.Get("X-Webhook-Signature"))
			}
		case messages.ProviderWAHA:
			m := hmac.New(sha512.New, []byte(secret))
			m.Write(req.body)
			if req.header.Get("X-Webhook-Hmac") != hex.EncodeToString(m.Sum(nil)) || req.header.Get("X-Webhook-Hmac-Algorithm") != "sha512" {
				t.Errorf("%s: WAHA HMAC headers %v", name, req.header)
			}
		}
	}
}

// Any Cloud API body: every event is written as a valid webhook holding its
// item's bytes, and never panics.
func FuzzProviderFormatCloud(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "messages", "testdata", "meta_*.json"))
	for _, name := range files {
		b, _ := os.ReadFile(name)
		f.Add(b)
	}
	f.Add(cloudBatch())
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, err := messages.Parse(body, time.Time{})
		if err != nil {
			return
		}
		fw := &Forward{Format: FormatProvider}
		for _, ev := range evs {
			out, err := fw.body(ev)
			if err != nil {
				t.Fatalf("%s %s: %v", ev.Kind, ev.Type, err)
			}
			if !json.Valid(out) || !bytes.Contains(out, ev.Item) {
				t.Fatalf("%s %s: body %q lacks item %q or is not JSON", ev.Kind, ev.Type, out, ev.Item)
			}
			back, err := messages.Parse(out, time.Time{})
			if err != nil {
				t.Fatalf("%s %s: body %q: %v", ev.Kind, ev.Type, out, err)
			}
			if ev.Kind != messages.KindUnknown && (len(back) != 1 || back[0].Key != ev.Key) {
				t.Fatalf("%s %s: body %q parses to %d events", ev.Kind, ev.Type, out, len(back))
			}
		}
	})
}
