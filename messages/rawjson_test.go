package messages

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// scan decodes a JSON value with members and elements into the values
// encoding/json gives with UseNumber, so the two can be compared.
func scan(t testing.TB, raw []byte) any {
	t.Helper()
	raw = trimSpace(raw)
	switch {
	case len(raw) == 0:
		t.Fatal("empty value")
	case raw[0] == '{':
		ms, ok := members(raw)
		if !ok {
			t.Fatalf("members(%q) failed", raw)
		}
		obj := map[string]any{}
		for _, m := range ms {
			if lookup(ms, m.name()) == nil {
				t.Fatalf("lookup(%q) found nothing", m.name())
			}
			obj[m.name()] = scan(t, m.value) // the last one wins, as in encoding/json
		}
		return obj
	case raw[0] == '[':
		els, ok := elements(raw)
		if !ok {
			t.Fatalf("elements(%q) failed", raw)
		}
		arr := []any{}
		for _, el := range els {
			arr = append(arr, scan(t, el))
		}
		return arr
	case raw[0] == '"':
		s, ok := decodeString(raw)
		if !ok {
			t.Fatalf("decodeString(%q) failed", raw)
		}
		return s
	case string(raw) == "true":
		return true
	case string(raw) == "false":
		return false
	case string(raw) == "null":
		return nil
	}
	return json.Number(raw)
}

func agree(t testing.TB, data []byte) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var want any
	if err := dec.Decode(&want); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	if got := scan(t, data); !reflect.DeepEqual(got, want) {
		t.Fatalf("scan(%q)\n got %#v\nwant %#v", data, got, want)
	}
}

var rawJSONSeeds = []string{
	`{}`, `[]`, ` { } `, `[ ]`, `{"a":1}`, `{"a" : [1, 2.5e3, -0, "x"] , "b":{"c":null}}`,
	`{"q":"\"}]{[","b":"\\","c":"\\\""}`, `["\\\\\"", "]", "}"]`,
	`{"\u0069d":"escaped name","id":"plain","id":"last"}`,
	`{"é":"\u00e9","e\u0301":"\ud83d\ude00","\ud800":"lone"}`,
	"{\"bad\":\"\xff\xfe\"}", `[true,false,null,{"":""}]`,
	`"top level string"`, `12`, `[[[[[]]]]]`, `{"a":{"b":{"c":{"d":[{"e":"f"}]}}}}`,
}

func TestRawJSONAgreesWithEncodingJSON(t *testing.T) {
	for _, s := range rawJSONSeeds {
		agree(t, []byte(s))
	}
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		agree(t, data)
	}
}

func TestRawJSONSubSlices(t *testing.T) {
	body := []byte(`{"a": {"x":"\/"} , "b":[1,"\ud83d\ude2e" ]}`)
	ms, ok := members(body)
	if !ok || len(ms) != 2 {
		t.Fatalf("members = %v, %v", ms, ok)
	}
	if string(ms[0].value) != `{"x":"\/"}` || string(ms[1].value) != `[1,"\ud83d\ude2e" ]` {
		t.Errorf("values %q %q", ms[0].value, ms[1].value)
	}
	els, ok := elements(ms[1].value)
	if !ok || len(els) != 2 || string(els[1]) != `"\ud83d\ude2e"` {
		t.Errorf("elements = %q, %v", els, ok)
	}
	for _, v := range [][]byte{ms[0].value, ms[1].value, els[0], els[1]} {
		if cap(v) != len(v) {
			t.Errorf("%q: capacity %d > length %d", v, cap(v), len(v))
		}
	}
}

func TestRawJSONRefusesWithoutPanic(t *testing.T) {
	for _, s := range []string{``, `{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":1 "b":2}`, `{"a":1}x`,
		`[`, `[1,]`, `[1 2]`, `[1]]`, `{"a":"unterminated}`, `{"a":[1,{]}`, `"\`, `{"\`} {
		if _, ok := members([]byte(s)); ok {
			t.Errorf("members(%q) accepted it", s)
		}
		if _, ok := elements([]byte(s)); ok {
			t.Errorf("elements(%q) accepted it", s)
		}
		_, _ = decodeString([]byte(s))
		_, _ = intOf([]byte(s))
		_ = idOf([]byte(s))
		_ = valueEnd([]byte(s), 0)
	}
}

func TestIntOf(t *testing.T) {
	for raw, want := range map[string]int64{
		`"1750275992"`: 1750275992, `1750275992`: 1750275992, `1.5e3`: 1500, `-3`: -3, `"007"`: 7,
	} {
		if got, ok := intOf([]byte(raw)); !ok || got != want {
			t.Errorf("intOf(%s) = %d, %v; want %d", raw, got, ok, want)
		}
	}
	for _, raw := range []string{`"1.5"`, `1.5`, `1e300`, `"x"`, `true`, `null`, `[]`, `""`, `"1e3"`, `9223372036854775808`} {
		if got, ok := intOf([]byte(raw)); ok {
			t.Errorf("intOf(%s) = %d, true; want false", raw, got)
		}
	}
}

// FuzzRawJSON checks that the zero-copy reader agrees with encoding/json on
// every valid JSON value, and never panics on invalid ones.
func FuzzRawJSON(f *testing.F) {
	for _, s := range rawJSONSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			_, _ = members(data)
			_, _ = elements(data)
			_ = valueEnd(data, 0)
			return
		}
		agree(t, data)
	})
}
