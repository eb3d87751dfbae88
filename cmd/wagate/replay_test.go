package main

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
)

// planLine returns the dry-run line of key, or "".
func planLine(out, key string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, key) {
			return l
		}
	}
	return ""
}

// fields returns the whitespace-separated fields of a line.
func fields(l string) []string { return strings.Fields(l) }

func TestReplay(t *testing.T) {
	e := newOpsEnv(t, true)
	done, fresh, locked := e.event(messages.KindMessage), e.event(messages.KindMessage), e.event(messages.KindMessage)
	seqDone, seqFresh, seqLocked := e.publish(done), e.publish(fresh), e.publish(locked)
	firstFence := e.done(done.Key)
	// A live worker holds locked's lock for the whole test.
	lease, err := e.store.Begin(e.ctx(), locked.Key, dedupe.BeginOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("dry run lists and runs nothing", func(t *testing.T) {
		out := e.mustWagate("replay", "--all", "--dry-run")
		for _, c := range []struct {
			key    string
			seq    uint64
			state  string
			action string
		}{
			{done.Key, seqDone, "done", "skip"},
			{fresh.Key, seqFresh, "absent", "run"},
			{locked.Key, seqLocked, "accepted", "busy"},
		} {
			f := fields(planLine(out, c.key))
			if len(f) < 7 || f[0] != strconv.FormatUint(c.seq, 10) || f[3] != "message" || f[4] != c.state || f[5] != c.action {
				t.Errorf("dry-run line of %s: %q, want seq %d, kind message, state %s, action %s\n%s", c.key, f, c.seq, c.state, c.action, out)
			}
		}
		if !strings.Contains(out, "dry run: selected 3, would run 1, would skip 1 (done), busy 1") {
			t.Errorf("summary missing:\n%s", out)
		}
		if n := e.sink.count(); n != 0 {
			t.Errorf("dry run ran the handler %d times", n)
		}
		if rec := e.record(fresh.Key); rec.State != dedupe.Absent || rec.Locked {
			t.Errorf("dry run changed %s: %+v", fresh.Key, rec)
		}
	})

	t.Run("default runs only what never completed", func(t *testing.T) {
		out := e.mustWagate("replay", "--all")
		if !strings.Contains(out, "replay: selected 3, ran 1, skipped done 1, busy 1, failed 0") {
			t.Errorf("summary:\n%s", out)
		}
		runs := e.sink.of(fresh.Key)
		if len(runs) != 1 || runs[0].fence < 1 || runs[0].delivery != "0" {
			t.Fatalf("runs of the fresh key: %+v, want one with a fence and Wagate-Delivery 0", runs)
		}
		if n := len(e.sink.of(done.Key)) + len(e.sink.of(locked.Key)); n != 0 {
			t.Errorf("done or busy key ran %d times", n)
		}
		if !strings.Contains(out, locked.Key) || !strings.Contains(out, "busy") {
			t.Errorf("busy key not reported:\n%s", out)
		}
		if rec := e.record(fresh.Key); rec.State != dedupe.Done || rec.Locked || rec.Fence != runs[0].fence {
			t.Errorf("fresh key after replay: %+v, want done, unlocked, fence %d", rec, runs[0].fence)
		}
		// The live worker's lock is untouched: it can still extend it.
		if err := e.store.Extend(e.ctx(), lease, time.Minute); err != nil {
			t.Errorf("the live lock was disturbed: %v", err)
		}

		// Again: now everything but the locked key is done.
		out = e.mustWagate("replay", "--all")
		if !strings.Contains(out, "replay: selected 3, ran 0, skipped done 2, busy 1, failed 0") {
			t.Errorf("second replay summary:\n%s", out)
		}
		if n := e.sink.count(); n != 1 {
			t.Errorf("handler ran %d times in all, want 1", n)
		}
	})

	t.Run("force reruns with a higher fence", func(t *testing.T) {
		out := e.mustWagate("replay", "--key", done.Key, "--force", "-v")
		runs := e.sink.of(done.Key)
		if len(runs) != 1 || runs[0].fence <= firstFence {
			t.Fatalf("forced runs: %+v, want one with fence above %d\n%s", runs, firstFence, out)
		}
		if !strings.Contains(out, "replay: selected 1, ran 1, skipped done 0, busy 0, failed 0") {
			t.Errorf("summary:\n%s", out)
		}
		if rec := e.record(done.Key); rec.State != dedupe.Done || rec.Fence != runs[0].fence {
			t.Errorf("after the forced run: %+v", rec)
		}
	})

	t.Run("busy key is not run even with force", func(t *testing.T) {
		out := e.mustWagate("replay", "--wamid", locked.ID, "--account", testAccount, "--force")
		if !strings.Contains(out, "replay: selected 1, ran 0, skipped done 0, busy 1, failed 0") {
			t.Errorf("summary:\n%s", out)
		}
		if n := len(e.sink.of(locked.Key)); n != 0 {
			t.Errorf("locked key ran %d times", n)
		}
		if err := e.store.Extend(e.ctx(), lease, time.Minute); err != nil {
			t.Errorf("the live lock was disturbed: %v", err)
		}
	})

	t.Run("failed handler", func(t *testing.T) {
		ev := e.event(messages.KindMessage)
		e.publish(ev)
		e.sink.setStatus(ev.Key, http.StatusServiceUnavailable)
		out, err := e.wagate("replay", "--key", ev.Key)
		if !errorContains(err, "1 of 1 events failed") {
			t.Errorf("error %v, want one failed event\n%s", err, out)
		}
		if !strings.Contains(out, "failed 1") || !strings.Contains(out, "503") {
			t.Errorf("output does not report the failure:\n%s", out)
		}
		if rec := e.record(ev.Key); rec.State == dedupe.Done || rec.Locked {
			t.Errorf("after a failed run: %+v, want not done and unlocked", rec)
		}
	})

	t.Run("key not in the stream", func(t *testing.T) {
		missing := e.event(messages.KindMessage).Key
		out := e.mustWagate("replay", "--key", missing)
		if !strings.Contains(out, "not found in stream WAGATE_EVENTS: "+missing) || !strings.Contains(out, "selected 0") {
			t.Errorf("output:\n%s", out)
		}
	})
}

func TestReplaySelection(t *testing.T) {
	e := newOpsEnv(t, true)
	m1, m2 := e.event(messages.KindMessage), e.event(messages.KindMessage)
	st := e.event(messages.KindStatus)
	s1 := e.publish(m1)
	e.publish(m2)
	e.publish(st)
	// Stored times are the server's: take the time of m2's message as the cut.
	raw, err := e.js.Stream(e.ctx(), "WAGATE_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := raw.GetMsg(e.ctx(), s1+1)
	if err != nil {
		t.Fatal(err)
	}
	cut := msg.Time

	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"sequence range", []string{"--from-seq", strconv.FormatUint(s1, 10), "--to-seq", strconv.FormatUint(s1, 10)}, []string{m1.Key}},
		{"from a sequence", []string{"--from-seq", strconv.FormatUint(s1+1, 10)}, []string{m2.Key, st.Key}},
		{"subject", []string{"--subject", "wagate.events.cloud.status.>"}, []string{st.Key}},
		{"since", []string{"--since", cut.Format(time.RFC3339Nano)}, []string{m2.Key, st.Key}},
		{"until", []string{"--until", cut.Format(time.RFC3339Nano)}, []string{m1.Key, m2.Key}},
		{"status wamid", []string{"--wamid", st.ID, "--account", testAccount, "--kind", "status", "--status", "read"}, []string{st.Key}},
		{"two keys", []string{"--key", m1.Key, "--key", st.Key}, []string{m1.Key, st.Key}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := e.mustWagate(append([]string{"replay", "--dry-run"}, c.args...)...)
			want := map[string]bool{}
			for _, k := range c.want {
				want[k] = true
			}
			for _, ev := range []messages.Event{m1, m2, st} {
				if listed := planLine(out, ev.Key) != ""; listed != want[ev.Key] {
					t.Errorf("%s listed %t, want %t\n%s", ev.Key, listed, want[ev.Key], out)
				}
			}
			if !strings.Contains(out, "dry run: selected "+strconv.Itoa(len(c.want))+",") {
				t.Errorf("summary does not count %d:\n%s", len(c.want), out)
			}
		})
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"replay"}, "select events with"},
		{[]string{"replay", "--all", "--rate", "-1"}, "--rate"},
		{[]string{"replay", "--all", "--concurrency", "0"}, "--concurrency"},
		{[]string{"replay", "--from-seq", "5", "--to-seq", "2"}, "below --from-seq"},
		{[]string{"replay", "--since", "yesterday"}, "--since"},
		{[]string{"replay", "--wamid", "wamid.X"}, "--account"},
		{[]string{"replay", "--wamid", "wamid.X", "--account", "1", "--kind", "status"}, "needs --status"},
		{[]string{"replay", "--key", "wa:short"}, "not a dedupe key"},
	} {
		if out, err := e.wagate(c.args...); !errorContains(err, c.want) {
			t.Errorf("wagate %v: error %v, want one mentioning %q\n%s", c.args, err, c.want, out)
		}
	}
	if n := e.sink.count(); n != 0 {
		t.Errorf("selection tests ran the handler %d times", n)
	}
}

// TestReplayWithLiveWorker replays every event with --force while a worker
// consumes the same events: no key ever runs in two places at once (the sink
// fails the test), and each key's fences grow with every run.
func TestReplayWithLiveWorker(t *testing.T) {
	e := newOpsEnv(t, true)
	e.sink.delay = 20 * time.Millisecond
	var evs []messages.Event
	for range 20 {
		ev := e.event(messages.KindMessage)
		evs = append(evs, ev)
		e.publish(ev)
	}
	e.startWorker()
	out, err := e.wagate("replay", "--all", "--force", "--concurrency", "4")
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		for _, ev := range evs {
			if e.record(ev.Key).State != dedupe.Done {
				return false
			}
		}
		return true
	}, "not every event done")
	ran, busy := 0, 0
	for _, ev := range evs {
		runs := e.sink.of(ev.Key)
		if len(runs) == 0 {
			t.Errorf("%s never ran", ev.Key)
		}
		for i := 1; i < len(runs); i++ {
			if runs[i].fence <= runs[i-1].fence {
				t.Errorf("%s: fence %d after %d", ev.Key, runs[i].fence, runs[i-1].fence)
			}
		}
		for _, r := range runs {
			if r.delivery == "0" {
				ran++
			}
		}
	}
	// Every selected event ran in the replay or was busy with the worker.
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "replay: selected") {
			f := strings.Fields(strings.NewReplacer(",", "").Replace(l))
			// replay: selected N ran R skipped done S busy B failed F …
			n, _ := strconv.Atoi(f[2])
			r, _ := strconv.Atoi(f[4])
			busy, _ = strconv.Atoi(f[9])
			if n != len(evs) || r != ran || r+busy != n {
				t.Errorf("summary %q: want selected %d, ran %d (runs seen with delivery 0), ran+busy = selected", l, len(evs), ran)
			}
		}
	}
	t.Logf("replay ran %d, %d busy with the live worker", ran, busy)
}
