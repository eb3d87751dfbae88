package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// encodeReflect is the reflective encoding Encode replaced: encoding/json
// with HTML escaping off, the item spliced in exactly as received. Encode
// must write the same bytes.
func encodeReflect(ev Event) ([]byte, error) {
	if ev.Item != nil && !json.Valid(ev.Item) {
		return nil, errors.New("item is not valid JSON")
	}
	type plain Event
	p := plain(ev)
	item := p.Item
	p.Item = nil
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	out := bytes.TrimRight(buf.Bytes(), "\n")
	const placeholder = `"item":null`
	i := bytes.Index(out, []byte(placeholder))
	if item == nil {
		item = json.RawMessage("null")
	}
	res := append([]byte{}, out[:i]...)
	res = append(append(res, `"item":`...), item...)
	return append(res, out[i+len(placeholder):]...), nil
}

// checkEncode checks that Encode writes what encodeReflect writes, and fails
// where it fails.
func checkEncode(t *testing.T, name string, ev Event) {
	t.Helper()
	got, gotErr := ev.Encode()
	want, wantErr := encodeReflect(ev)
	if (gotErr != nil) != (wantErr != nil) {
		t.Fatalf("%s: Encode error %v, encoding/json error %v", name, gotErr, wantErr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: Encode wrote\n%s\nencoding/json writes\n%s", name, got, want)
	}
	if gotErr != nil {
		return
	}
	// EncodedSize bounds the output, and is off by no more than its fixed
	// parts and the spaces Encode removes from raw members.
	size, c := ev.EncodedSize(), &ev.Context
	spaces := 0
	for _, raw := range [][]byte{c.Metadata, c.Contact, c.Frame.Object, c.Frame.EntryID, c.Frame.EntryTime, c.Frame.Field, c.Frame.MessagingProduct, c.Frame.Array} {
		for _, b := range raw {
			if isSpace(b) {
				spaces++
			}
		}
	}
	if n := int64(len(got)); n > size || size-n > int64(encodedFixed+encodedError*len(ev.Errors)+spaces) {
		t.Fatalf("%s: EncodedSize %d for %d bytes encoded", name, size, n)
	}
}

// TestEncodeAsEncodingJSON encodes every event of every fixture, and events
// with every optional field set, escapes and invalid UTF-8, and checks the
// bytes against encoding/json's.
func TestEncodeAsEncodingJSON(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	at := time.Date(2026, 12, 7, 4, 30, 1, 123456789, time.FixedZone("", 3600))
	n := 0
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, parse := range []func([]byte, time.Time) ([]Event, error){Parse, ParseWASender, ParseWAHA, ParseEvolution} {
			evs, err := parse(body, at)
			if err != nil {
				continue
			}
			for _, ev := range evs {
				checkEncode(t, filepath.Base(f), ev)
				n++
			}
		}
	}
	if n < len(files) {
		t.Fatalf("only %d events from %d fixtures", n, len(files))
	}
	full := Event{
		Key: "wa:abc", Identity: "cloud|message|wamid.1|😮 \"q\" \\ <a>&\u2028\u2029\x01\x1f\b\f\n\r\t\x7f", Provider: "cloud",
		Kind: KindStatus, Account: "123", ID: "wamid.1", Type: "text", Status: "failed", From: "\xff\xfe15550001",
		Timestamp: -17, ReceivedAt: at, Fallback: true, Transient: true, Direction: "outbound",
		Errors: []Error{{Code: 131047, Title: "Re-engagement", Message: "m", Details: "d", Href: "h"}, {Code: 0}},
		Item:   json.RawMessage(` { "a" : [1, "\u00e9"] } `),
		Context: Context{Object: "whatsapp_business_account", EntryID: "1", EntryTime: 1750275992, Field: "messages",
			Metadata: json.RawMessage(`{ "phone_number_id" : "123" }`), Contact: json.RawMessage(`{"wa_id":"1"}`),
			Frame: Frame{Object: json.RawMessage(`"whatsapp_business_account"`), EntryID: json.RawMessage(`"1"`),
				EntryTime: json.RawMessage(`1750275992`), Field: json.RawMessage(` "messages" `),
				MessagingProduct: json.RawMessage(`"whatsapp"`), Array: json.RawMessage(`"messages"`),
				Body: true, Before: []byte(`{"a":[`), After: []byte("]}\xff"), Covered: true}},
	}
	checkEncode(t, "every field", full)
	checkEncode(t, "zero", Event{})
	checkEncode(t, "empty errors", Event{Errors: []Error{}})
	checkEncode(t, "empty frame members", Event{Context: Context{Frame: Frame{Object: json.RawMessage{}, Before: []byte{}}}})
	checkEncode(t, "frame alone", Event{Context: Context{Frame: Frame{After: []byte("}")}}})
	bad := full
	bad.Context.Metadata = json.RawMessage(`{"a":`)
	checkEncode(t, "invalid metadata", bad)
	bad = full
	bad.Item = json.RawMessage(`{`)
	checkEncode(t, "invalid item", bad)
	bad = full
	bad.ReceivedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	checkEncode(t, "year 10000", bad)
}

// FuzzEncode checks Encode against encoding/json on arbitrary strings and
// raw members.
func FuzzEncode(f *testing.F) {
	f.Add("wa:k", "cloud|message|x", "15550001", "text", `{"a":1}`, `{"b": "c"}`, int64(1), int64(0))
	f.Add("\xff<>&\u2028", "\x00\x1f\"\\", "😮", "", `[1, 2]`, ``, int64(-1), int64(1<<40))
	f.Fuzz(func(t *testing.T, key, identity, from, typ, item, meta string, ts, nanos int64) {
		ev := Event{
			Key: key, Identity: identity, Provider: identity, Kind: Kind(typ), Account: from, ID: key,
			Type: typ, Status: from, From: from, Timestamp: ts, ReceivedAt: time.Unix(ts%(1<<34), nanos%1e9).UTC(),
			Direction: typ, Errors: []Error{{Code: int(ts), Title: identity, Message: from}},
			Context: Context{Object: typ, EntryID: key, EntryTime: nanos, Field: identity},
		}
		if item != "" {
			ev.Item = json.RawMessage(item)
		}
		if meta != "" {
			ev.Context.Metadata = json.RawMessage(meta)
			ev.Context.Contact = json.RawMessage(strings.TrimSpace(meta))
			ev.Context.Frame.Array = json.RawMessage(meta)
		}
		ev.Context.Frame.Before = []byte(identity)
		ev.Context.Frame.Body = ts%2 == 0
		ev.Context.Frame.Covered = nanos%2 == 0
		checkEncode(t, "fuzz", ev)
	})
}

// wireEvent returns the event of a Cloud API text message with its contact,
// as the ingress receives it: compact, as Meta sends it.
func wireEvent(tb testing.TB) Event {
	pretty, err := os.ReadFile("testdata/meta_msg_text_reply_context.json")
	if err != nil {
		tb.Fatal(err)
	}
	var body bytes.Buffer
	if err := json.Compact(&body, pretty); err != nil {
		tb.Fatal(err)
	}
	evs, err := Parse(body.Bytes(), time.Now())
	if err != nil || len(evs) == 0 {
		tb.Fatalf("Parse = %d events, %v", len(evs), err)
	}
	return evs[0]
}

// BenchmarkEncode encodes one message event: Encode, then the encoding/json
// form it replaced.
func BenchmarkEncode(b *testing.B) {
	ev := wireEvent(b)
	for _, c := range []struct {
		name   string
		encode func(Event) ([]byte, error)
	}{{"append", Event.Encode}, {"encoding-json", encodeReflect}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.encode(ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// checkDecode checks that where Decode reads data itself, it reads what
// json.Unmarshal reads.
func checkDecode(t *testing.T, data []byte) {
	t.Helper()
	got, ok := decodeEncoded(data)
	if !ok {
		return
	}
	var want Event
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatalf("decodeEncoded accepted %q, which json.Unmarshal refuses: %v", data, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeEncoded(%q)\n = %#v\njson.Unmarshal gives\n   %#v", data, got, want)
	}
}

// TestDecodeAsEncodingJSON decodes every fixture event's encoding, and
// variants Encode never writes, and checks the result against json.Unmarshal's.
func TestDecodeAsEncodingJSON(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	fast := 0
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, parse := range []func([]byte, time.Time) ([]Event, error){Parse, ParseWASender, ParseWAHA, ParseEvolution} {
			evs, _ := parse(body, time.Now())
			for _, ev := range evs {
				data, err := ev.Encode()
				if err != nil {
					t.Fatal(err)
				}
				checkDecode(t, data)
				if _, ok := decodeEncoded(data); ok {
					fast++
				}
			}
		}
	}
	if fast == 0 {
		t.Fatal("no encoded event was read by the fast path")
	}
	for _, data := range []string{
		`{"key":"wa:a","KEY":"wa:b"}`,
		`{"key":"wa:a","key":"wa:b"}`,
		`{"key":"wa:a","item":null,"context":null}`,
		`{"key":"wa:a","timestamp":1.5}`,
		`{"key":"wa:a","timestamp":"1"}`,
		`{"key":"wa:a","received_at":"2026-12-07T04:30:01.5+01:00","fallback":true,"transient":false}`,
		`{"key":"wa:a","errors":[{"code":1,"Title":"t"}],"context":{"metadata":{"a" : 1},"contact":[1]}}`,
		`{"key":"\u0077a:\ud83d","id":"\ufffd\u2028","context":{"object":"x","object":"y"}}`,
		"{\"key\":\"wa:\xff\"}",
		` {"key":"wa:a"} `,
		`[]`,
	} {
		checkDecode(t, []byte(data))
		// Decode gives what json.Unmarshal gives, by either path.
		got, gotErr := Decode([]byte(data))
		var want Event
		wantErr := json.Unmarshal([]byte(data), &want)
		if wantErr == nil && (want.Key == "" || !strings.HasPrefix(want.Key, KeyPrefix)) {
			wantErr = errors.New("no key")
		}
		if (gotErr != nil) != (wantErr != nil) || (gotErr == nil && !reflect.DeepEqual(got, want)) {
			t.Fatalf("Decode(%q) = %#v, %v; json.Unmarshal gives %#v, %v", data, got, gotErr, want, wantErr)
		}
	}
}

// FuzzDecode checks the fast path of Decode against json.Unmarshal.
func FuzzDecode(f *testing.F) {
	ev := Event{Key: "wa:k", Identity: "i", ReceivedAt: time.Unix(1, 2).UTC(), Item: json.RawMessage(`{"a":1}`),
		Errors: []Error{{Code: 1}}, Context: Context{Object: "o", EntryTime: 3, Metadata: json.RawMessage(`{}`),
			Frame: Frame{Field: json.RawMessage(`"messages"`), Body: true, Before: []byte("{\"x\":"), After: []byte("}")}}}
	data, err := ev.Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"key":"wa:a","item":[1,2],"timestamp":-0,"fallback":false}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecode(t, data)
	})
}

// BenchmarkDecode decodes one message event: Decode, then json.Unmarshal.
func BenchmarkDecode(b *testing.B) {
	data, err := wireEvent(b).Encode()
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		decode func([]byte) error
	}{
		{"direct", func(d []byte) error { _, err := Decode(d); return err }},
		{"encoding-json", func(d []byte) error { var ev Event; return json.Unmarshal(d, &ev) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.decode(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// fill sets every field of v, recursively, to a value that is not zero, so
// that a field added to Event, Context, Frame or Error and not written by
// Encode (or not read by Decode) fails the tests below.
func fill(t *testing.T, v reflect.Value) {
	switch {
	case v.Type() == reflect.TypeFor[time.Time]():
		v.Set(reflect.ValueOf(time.Date(2026, 12, 7, 4, 50, 0, 1, time.UTC)))
		return
	case v.Type() == reflect.TypeFor[json.RawMessage]():
		v.SetBytes([]byte(`"raw"`))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("wa:x")
	case reflect.Int, reflect.Int64:
		v.SetInt(7)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			v.SetBytes([]byte("b"))
			return
		}
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(t, v.Index(0))
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(t, v.Field(i))
			}
		}
	default:
		t.Fatalf("fill: no value for a %s", v.Type())
	}
}

// TestWireCoversEveryField encodes an event with every field set, checks
// the bytes against encoding/json's, and that the fast path of Decode reads
// it back to the same event.
func TestWireCoversEveryField(t *testing.T) {
	var ev Event
	fill(t, reflect.ValueOf(&ev).Elem())
	checkEncode(t, "every field set", ev)
	data, err := ev.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, ok := decodeEncoded(data)
	if !ok {
		t.Fatalf("decodeEncoded refused %s: a member Encode writes is not read", data)
	}
	if !reflect.DeepEqual(back, ev) {
		t.Fatalf("decodeEncoded(Encode(ev))\n = %#v\nwant %#v", back, ev)
	}
}

// TestDecodeOwnsItsBytes checks that a decoded event shares no bytes with
// the payload (the worker's NATS client reuses its buffers), and that its
// raw members share none with each other: appending to one, or writing into
// it, changes no other.
func TestDecodeOwnsItsBytes(t *testing.T) {
	ev := wireEvent(t)
	ev.Context.Contact = json.RawMessage(`{"wa_id":"15550000001"}`)
	data, err := ev.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want, err := Decode(bytes.Clone(data))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Context.Metadata == nil || got.Context.Contact == nil || got.Item == nil {
		t.Fatalf("decoded event lacks raw members: %#v", got)
	}
	for i := range data {
		data[i] = 'x'
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after the payload was overwritten:\n%#v\nwant\n%#v", got, want)
	}
	for _, r := range []json.RawMessage{got.Item, got.Context.Metadata, got.Context.Contact} {
		_ = append(r, bytes.Repeat([]byte{'!'}, cap(r)-len(r))...) // fills its capacity, reallocating nothing
	}
	got.Item[0] = '!'
	got.Context.Metadata[len(got.Context.Metadata)-1] = '!'
	want.Item[0] = '!'
	want.Context.Metadata[len(want.Context.Metadata)-1] = '!'
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after writes into Item and Metadata:\n%#v\nwant\n%#v", got, want)
	}
}
