package chaos

import (
	"testing"
	"time"
)

func TestParseMark(t *testing.T) {
	at := time.Unix(1796033245, 982399000)
	for line, want := range map[string]Mark{
		`+1796033245.982399 [0 lua] "SET" "wa:k1" "31" "KEEPTTL"`:             {Key: "wa:k1", Fence: 3, At: at},
		`1796033245.982399 [0 lua] "SET" "wa:k1" "32" "PX" "604800000"`:       {Key: "wa:k1", Fence: 3, Done: true, At: at},
		`+1796033245.982399 [0 lua] "SET" "{wa:k2}" "1272" "KEEPTTL"`:         {Key: "{wa:k2}", Fence: 127, Done: true, At: at},
		`+1796033245.982399 [0 lua] "SET" "wa:k1" "a4" "KEEPTTL"`:             {Key: "wa:k1", Fence: 4, At: at},
		`+1796033245.982399 [0 lua] "SET" "wa:k1" "d4" "KEEPTTL"`:             {Key: "wa:k1", Fence: 4, Done: true, At: at},
		`+1796033245.982399 [0 lua] "SET" "wa:k1" "1" "KEEPTTL"`:              {},
		`+1796033245.982399 [0 lua] "SET" "wa:k1" "a" "KEEPTTL"`:              {},
		`+1796033245.982399 [0 lua] "SET" "{wa:k1}:l" "TOKEN" "PX" "2000"`:    {},
		`+1796033245.982399 [0 lua] "SET" "{wa:k1}:l" "31" "PX" "2000"`:       {},
		`+1796033245.982399 [0 127.0.0.1:1] "SET" "wa:k1" "p:o:1" "NX" "GET"`: {},
		`+1796033245.982399 [0 127.0.0.1:1] "SET" "wa:k1" "32"`:               {},
	} {
		got, ok := parseMark(line)
		if ok != (want.Key != "") || got != want {
			t.Errorf("parseMark(%s) = %+v, %v; want %+v", line, got, ok, want)
		}
	}
}
