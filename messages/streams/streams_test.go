package streams

import "testing"

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
