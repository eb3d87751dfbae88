package messages

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// A body that fans out into more events than the bound stops at the bound
// with ErrTooManyEvents, for every provider; one at the bound parses whole.
func TestParseMax(t *testing.T) {
	cloud := func(n int) []byte {
		items := strings.TrimSuffix(strings.Repeat(`{},`, n), ",")
		return []byte(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"1","phone_number_id":"2"},"statuses":[` + items + `]}}]}]}`)
	}
	wasender := func(n int) []byte { // n-1 unknown top-level keys, and data
		var b strings.Builder
		b.WriteString(`{"event":"messages.upsert","data":{}`)
		for i := range n - 1 {
			fmt.Fprintf(&b, `,"k%d":1`, i)
		}
		return []byte(b.String() + `}`)
	}
	waha := func(n int) []byte {
		var b strings.Builder
		b.WriteString(`{"event":"message","session":"s","payload":{"id":"x","from":"1@c.us","body":"b"}`)
		for i := range n - 1 {
			fmt.Fprintf(&b, `,"k%d":1`, i)
		}
		return []byte(b.String() + `}`)
	}
	for _, c := range []struct {
		provider string
		body     func(int) []byte
	}{{ProviderCloud, cloud}, {ProviderWASender, wasender}, {ProviderWAHA, waha}} {
		const max = 50
		parse, _ := Parser(c.provider)
		full, err := parse(c.body(max), time.Now())
		if err != nil || len(full) != max {
			t.Fatalf("%s: the test body makes %d events (%v), want %d", c.provider, len(full), err, max)
		}
		evs, ok, err := ParseMax(c.provider, c.body(max), time.Now(), max)
		if !ok || err != nil || len(evs) != max {
			t.Errorf("%s at the bound: %d events, ok %v, err %v; want %d", c.provider, len(evs), ok, err, max)
		}
		evs, _, err = ParseMax(c.provider, c.body(100*max), time.Now(), max)
		var tm *TooManyEventsError
		if !errors.Is(err, ErrTooManyEvents) || !errors.As(err, &tm) || tm.Max != max || evs != nil {
			t.Errorf("%s past the bound: %d events, err %v; want ErrTooManyEvents naming %d", c.provider, len(evs), err, max)
		}
		if evs, _, err := ParseMax(c.provider, c.body(3*max), time.Now(), 0); err != nil || len(evs) != 3*max {
			t.Errorf("%s without a bound: %d events, %v", c.provider, len(evs), err)
		}
	}
	if _, ok, _ := ParseMax("nobody", nil, time.Now(), 1); ok {
		t.Error("unknown provider: ok")
	}
}
