package worker

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/messages/streams"
)

func TestVerdict(t *testing.T) {
	sc := streams.Config{MaxDeliver: 3, BackOff: []time.Duration{time.Second, 5 * time.Second}}
	down := errors.New("dial tcp: connection refused")
	failed := errors.New("HTTP 503")
	for _, tc := range []struct {
		name string
		a    attempt
		want outcome
	}{
		{"undecodable", attempt{delivered: 1, decodeErr: errors.New("no key")},
			outcome{action: actDeadLetter, label: outcomeDeadLetter, cause: causeUndecodable, reason: "undecodable: no key"}},
		{"invalid key", attempt{delivered: 1, beginErr: fmt.Errorf("dedupe: begin: %w", dedupe.ErrInvalidKey)},
			outcome{action: actDeadLetter, label: outcomeDeadLetter, cause: causeUndecodable, reason: "undecodable: dedupe: begin: dedupe: invalid key"}},
		{"done", attempt{delivered: 1, beginErr: dedupe.ErrDone},
			outcome{action: actAck, label: outcomeDuplicate}},
		{"done on the last delivery", attempt{delivered: 3, beginErr: dedupe.ErrDone},
			outcome{action: actAck, label: outcomeDuplicate}},
		{"busy", attempt{delivered: 1, beginErr: dedupe.ErrBusy},
			outcome{action: actNak, label: outcomeBusy, delay: time.Second, reason: "busy: " + dedupe.ErrBusy.Error()}},
		{"store down", attempt{delivered: 2, beginErr: down},
			outcome{action: actNak, label: outcomeStoreError, delay: 5 * time.Second, reason: "dedupe store: " + down.Error()}},
		{"store down on the last delivery", attempt{delivered: 3, beginErr: down},
			outcome{action: actDeadLetter, label: outcomeDeadLetter, cause: causeExhausted, reason: "dedupe store: " + down.Error() + " (last of 3 deliveries)"}},
		{"success", attempt{delivered: 3},
			outcome{action: actAck, label: outcomeDone}},
		{"success, lock lost at finish", attempt{delivered: 1, finishErr: dedupe.ErrLockLost},
			outcome{action: actNak, label: outcomeLockLost, delay: time.Second, reason: "finish: " + dedupe.ErrLockLost.Error()}},
		{"success, store down at finish", attempt{delivered: 1, finishErr: down},
			outcome{action: actNak, label: outcomeStoreError, delay: time.Second, reason: "finish: " + down.Error()}},
		{"permanent", attempt{delivered: 1, handlerErr: Permanent(failed)},
			outcome{action: actDeadLetter, label: outcomeDeadLetter, cause: causePermanent, reason: "permanent: HTTP 503"}},
		{"wrapped permanent", attempt{delivered: 1, handlerErr: fmt.Errorf("send: %w", Permanent(failed))},
			outcome{action: actDeadLetter, label: outcomeDeadLetter, cause: causePermanent, reason: "send: permanent: HTTP 503"}},
		{"transient", attempt{delivered: 1, handlerErr: failed},
			outcome{action: actNak, label: outcomeRetry, delay: time.Second, reason: "HTTP 503"}},
		{"transient, schedule repeats its last step", attempt{delivered: 2, handlerErr: failed},
			outcome{action: actNak, label: outcomeRetry, delay: 5 * time.Second, reason: "HTTP 503"}},
		{"transient on the last delivery", attempt{delivered: 3, handlerErr: failed},
			outcome{action: actDeadLetter, label: outcomeDeadLetter, cause: causeExhausted, reason: "HTTP 503 (last of 3 deliveries)"}},
		{"interrupted by shutdown", attempt{delivered: 1, handlerErr: context.Canceled, interrupted: true},
			outcome{action: actNak, label: outcomeInterrupted, reason: "shutdown: context canceled"}},
		{"lock lost while running", attempt{delivered: 1, handlerErr: context.Canceled, lockLost: true},
			outcome{action: actNak, label: outcomeLockLost, delay: time.Second, reason: "lock lost: context canceled"}},
		{"success after shutdown began", attempt{delivered: 1, interrupted: true},
			outcome{action: actAck, label: outcomeDone}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := verdict(tc.a, sc); got != tc.want {
				t.Errorf("verdict(%+v)\n got %+v\nwant %+v", tc.a, got, tc.want)
			}
		})
	}
}

func TestVerdictUnlimitedDeliveries(t *testing.T) {
	sc := streams.Config{MaxDeliver: -1, BackOff: []time.Duration{time.Second}}
	got := verdict(attempt{delivered: 1000, handlerErr: errors.New("x")}, sc)
	if got.action != actNak {
		t.Errorf("MaxDeliver -1: %+v, want a Nak", got)
	}
}

func TestOneLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\r\nb", 10, "a  b"},
		{"bad \x1b[2J\x1b]0;title\x07 \u009b31m\tx\u2028y\x7f", 40, "bad  [2J ]0;title   31m x y "},
		{"abcdef", 3, "abc"},
		{"héllo", 2, "h"}, // never cuts a rune in two
		{"", 5, ""},
	} {
		if got := oneLine(tc.in, tc.n); got != tc.want {
			t.Errorf("oneLine(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
