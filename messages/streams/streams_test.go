package streams

import (
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestDLQSubject(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"wagate.events.cloud.message.106540352242922", "wagate.dlq.cloud.message.106540352242922"},
		{"wagate.events.cloud.status._", "wagate.dlq.cloud.status._"},
		{"other.subject", "wagate.dlq.other.subject"},
		{"wagate.events.", "wagate.dlq.wagate.events."},
	} {
		if got := DLQSubject(tc.in); got != tc.want {
			t.Errorf("DLQSubject(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestMaxDeliveriesAdvisory(t *testing.T) {
	if got, want := (Config{}).MaxDeliveriesAdvisory(), "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.WAGATE_EVENTS.wagate-workers"; got != want {
		t.Errorf("default: got %q, want %q", got, want)
	}
	c := Config{Events: "EV", Consumer: "c1"}
	if got, want := c.MaxDeliveriesAdvisory(), "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.EV.c1"; got != want {
		t.Errorf("custom: got %q, want %q", got, want)
	}
}

// sameSettings compares every setting EventsStream and DLQStream set: a
// setting added to either and not compared would never reach a live stream
// (Ensure leaves a stream with the same settings alone).
func TestSameSettingsCoversEverySetting(t *testing.T) {
	c := Config{Replicas: 3, MaxAge: time.Hour, DuplicateWindow: time.Minute}
	for _, want := range []struct {
		name string
		sc   func() jetstream.StreamConfig
	}{{"events", c.EventsStream}, {"dlq", c.DLQStream}} {
		base := want.sc()
		if !sameSettings(base, base) {
			t.Fatalf("%s: sameSettings of a config with itself is false", want.name)
		}
		v := reflect.ValueOf(base)
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if f.Name == "Name" || v.Field(i).IsZero() {
				continue
			}
			live := base
			reflect.ValueOf(&live).Elem().Field(i).SetZero()
			if sameSettings(live, base) {
				t.Errorf("%s: sameSettings ignores %s, which Ensure sets", want.name, f.Name)
			}
		}
	}
}
