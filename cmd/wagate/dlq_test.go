package main

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/nats-io/nats.go"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/worker"
)

// dlqSeqOf returns the SEQ column of key's line in a dlq list, or 0.
func dlqSeqOf(out, key string) uint64 {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == key {
			n, _ := strconv.ParseUint(f[0], 10, 64)
			return n
		}
	}
	return 0
}

func TestDLQ(t *testing.T) {
	e := newOpsEnv(t, true)
	e.startWorker()
	// The endpoint refuses a and b for good (400: permanent), accepts c.
	a, b, c := e.event(messages.KindMessage), e.event(messages.KindStatus), e.event(messages.KindMessage)
	e.sink.setStatus(a.Key, http.StatusBadRequest)
	e.sink.setStatus(b.Key, http.StatusBadRequest)
	seqA := e.publish(a)
	e.publish(b)
	e.publish(c)
	testenv.Eventually(t, 20*time.Second, func() bool {
		return e.streamMsgs("WAGATE_DLQ") == 2 && e.record(c.Key).State == dedupe.Done
	}, "a and b not dead-lettered, or c not done")

	out := e.mustWagate("dlq", "list")
	for _, ev := range []messages.Event{a, b} {
		var line string
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, ev.Key) {
				line = l
			}
		}
		f := strings.Fields(line)
		if len(f) < 7 || f[2] != "1" || f[3] != string(ev.Kind) || !strings.Contains(line, "HTTP 400 Bad Request") {
			t.Errorf("dlq list line of %s: %q, want deliveries 1, kind %s, the 400 as reason\n%s", ev.Key, line, ev.Kind, out)
		}
	}
	if strings.Contains(out, c.Key) || !strings.Contains(out, "2 dead letters") {
		t.Errorf("dlq list:\n%s", out)
	}
	dlqA, dlqB := dlqSeqOf(out, a.Key), dlqSeqOf(out, b.Key)
	if dlqA == 0 || dlqB == 0 {
		t.Fatalf("no SEQ for a or b:\n%s", out)
	}

	t.Run("filters", func(t *testing.T) {
		out := e.mustWagate("dlq", "list", "--key", b.Key)
		if !strings.Contains(out, b.Key) || strings.Contains(out, a.Key) || !strings.Contains(out, "1 dead letters") {
			t.Errorf("--key:\n%s", out)
		}
		out = e.mustWagate("dlq", "list", "--subject", "wagate.dlq.cloud.message.>")
		if !strings.Contains(out, a.Key) || strings.Contains(out, b.Key) {
			t.Errorf("--subject:\n%s", out)
		}
		out = e.mustWagate("dlq", "list", "--reason", "no such reason")
		if !strings.Contains(out, "0 dead letters") {
			t.Errorf("--reason:\n%s", out)
		}
	})

	t.Run("show", func(t *testing.T) {
		out := e.mustWagate("dlq", "show", strconv.FormatUint(dlqA, 10))
		data, err := a.Encode()
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"subject   wagate.dlq.cloud.message." + testAccount,
			worker.HeaderOriginalMsgID + ": " + a.Key,
			worker.HeaderOriginalSequence + ": " + strconv.FormatUint(seqA, 10),
			worker.HeaderOriginalSubject + ": " + messages.Subject(a),
			worker.HeaderDeliveries + ": 1",
			worker.HeaderError + ": permanent: forward: HTTP 400 Bad Request",
			"\n" + string(data) + "\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("dlq show lacks %q:\n%s", want, out)
			}
		}
		if _, err := e.wagate("dlq", "show", "999"); !errorContains(err, "no dead letter 999") {
			t.Errorf("show of a missing seq: %v", err)
		}
	})

	t.Run("requeue runs once more", func(t *testing.T) {
		e.sink.setStatus(a.Key, 0)
		out := e.mustWagate("dlq", "requeue", strconv.FormatUint(dlqA, 10))
		if !strings.Contains(out, "requeued 1, failed 0") {
			t.Errorf("requeue:\n%s", out)
		}
		testenv.Eventually(t, 20*time.Second, func() bool { return e.record(a.Key).State == dedupe.Done },
			"requeued event never done")
		runs := e.sink.of(a.Key)
		if len(runs) != 2 || runs[0].code != http.StatusBadRequest || runs[1].code != http.StatusOK || runs[1].fence <= runs[0].fence {
			t.Errorf("runs of a: %+v, want the refused one then one more with a higher fence", runs)
		}
		if n := e.streamMsgs("WAGATE_DLQ"); n != 1 {
			t.Errorf("dead letters after requeue: %d, want 1", n)
		}
		// The requeued copy is a message of its own in the events stream.
		st, err := e.js.Stream(e.ctx(), "WAGATE_EVENTS")
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(e.ctx())
		if err != nil {
			t.Fatal(err)
		}
		m, err := st.GetMsg(e.ctx(), info.State.LastSeq)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := m.Header.Get(nats.MsgIdHdr), a.Key+":requeue:"+strconv.FormatUint(dlqA, 10); got != want || m.Subject != messages.Subject(a) ||
			m.Header.Get(worker.HeaderRequeuedFrom) != strconv.FormatUint(dlqA, 10) || m.Header.Get(worker.HeaderError) != "" {
			t.Errorf("requeued message: subject %s, headers %v; want Nats-Msg-Id %s on %s without the dead-letter headers", m.Subject, m.Header, want, messages.Subject(a))
		}
		if _, err := e.wagate("dlq", "requeue"); !errorContains(err, "name dead letters") {
			t.Errorf("requeue without a selection: %v", err)
		}
	})

	t.Run("purge", func(t *testing.T) {
		out, err := e.wagate("dlq", "purge", "--all")
		if !errorContains(err, "confirm with --yes") || !strings.Contains(out, b.Key) {
			t.Errorf("purge without --yes: %v\n%s", err, out)
		}
		if n := e.streamMsgs("WAGATE_DLQ"); n != 1 {
			t.Fatalf("purge without --yes deleted: %d left, want 1", n)
		}
		out = e.mustWagate("dlq", "purge", "--key", b.Key, "--yes")
		if !strings.Contains(out, "purged 1 dead letters") || e.streamMsgs("WAGATE_DLQ") != 0 {
			t.Errorf("purge --key --yes: %d left\n%s", e.streamMsgs("WAGATE_DLQ"), out)
		}
		if rec := e.record(b.Key); rec.State == dedupe.Done {
			t.Errorf("purged event marked done: %+v", rec)
		}
	})
}

func TestDLQPurgeAll(t *testing.T) {
	e := newOpsEnv(t, true)
	e.startWorker()
	var keys []string
	for range 3 {
		ev := e.event(messages.KindMessage)
		e.sink.setStatus(ev.Key, http.StatusUnprocessableEntity)
		e.publish(ev)
		keys = append(keys, ev.Key)
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return e.streamMsgs("WAGATE_DLQ") == 3 }, "not 3 dead letters")
	out := e.mustWagate("dlq", "requeue", "--all", "--reason", "HTTP 422")
	if !strings.Contains(out, "requeued 3, failed 0") {
		t.Errorf("requeue --all:\n%s", out)
	}
	// Refused again: back in the dead-letter stream, each run twice in all.
	testenv.Eventually(t, 20*time.Second, func() bool { return e.streamMsgs("WAGATE_DLQ") == 3 }, "requeued events not dead-lettered again")
	for _, k := range keys {
		if n := len(e.sink.of(k)); n != 2 {
			t.Errorf("%s ran %d times, want 2", k, n)
		}
	}
	// Dead-lettered again under its requeue Nats-Msg-Id, it is still named
	// and found by its key.
	out = e.mustWagate("dlq", "list", "--key", keys[0])
	if !strings.Contains(out, "1 dead letters") || strings.Contains(out, ":requeue:") {
		t.Errorf("dlq list --key %s after a requeue:\n%s", keys[0], out)
	}
	out = e.mustWagate("dlq", "purge", "--all", "--yes")
	if !strings.Contains(out, "purged 3 dead letters") || e.streamMsgs("WAGATE_DLQ") != 0 {
		t.Errorf("purge --all --yes:\n%s", out)
	}
}

// Text of a dead letter (its reason, headers and payload: a downstream's
// answer, an item's content) is printed with its control characters escaped,
// so that it cannot drive the operator's terminal.
func TestDLQPrintEscapesControls(t *testing.T) {
	const hostile = "bad \x1b[2J\x1b]0;owned\x07 \u009b31m"
	l := letter{seq: 7, subject: "wagate.dlq.cloud.message.1.0", stored: time.Unix(1750000000, 0),
		header: nats.Header{"Wagate-Error": []string{hostile}}, data: []byte(`{"item":"` + hostile + `"}`), reason: hostile}
	var b strings.Builder
	printLetters(&b, []letter{l}, time.Unix(1750000100, 0))
	printLetter(&b, l)
	out := b.String()
	if strings.ContainsFunc(out, func(r rune) bool { return unicode.IsControl(r) && r != '\n' }) {
		t.Errorf("output holds control characters:\n%q", out)
	}
	if n := strings.Count(out, `bad \u001b[2J\u001b]0;owned\u0007 \u009b31m`); n != 3 {
		t.Errorf("reason, header and payload escaped %d times, want 3:\n%s", n, out)
	}
}
