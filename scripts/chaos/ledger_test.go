package chaos

import (
	"net/http"
	"testing"
	"time"

	"github.com/wagate/wagate/dedupe"
)

// TestCheck feeds the ledger hand-made observations, one fault each, and
// checks it counts exactly that fault: each assertion of the suite can fail.
func TestCheck(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	item := []byte(`{"id":"wamid.1"}`)
	body := func(keys ...string) *Body {
		return &Body{Keys: keys, Events: len(keys), OK: true, Attempts: []Attempt{{Code: http.StatusOK, Answer: Counts{Events: len(keys), Accepted: len(keys)}}}}
	}
	run := func(id int, key string, fence int64, start, end int, outcome string) Run {
		return Run{ID: id, Key: key, Fence: fence, Start: at(start), End: at(end), Outcome: outcome, Item: item}
	}
	done := func(fence int64) dedupe.Record { return dedupe.Record{State: dedupe.Done, Fence: fence} }
	mark := func(key string, fence int64, ms int) Mark {
		return Mark{Key: key, Done: true, Fence: fence, At: at(ms)}
	}
	// base is one event answered, stored, run once and marked done.
	base := func() Observed {
		return Observed{
			Bodies: []*Body{body("k")},
			Items:  map[string][]byte{"k": item},
			Runs:   []Run{run(0, "k", 1, 0, 50, RunApplied)},
			Marks:  []Mark{mark("k", 1, 60)},
			Stream: map[string]int{"k": 1},
			DLQ:    map[string]string{},
			Final:  map[string]dedupe.Record{"k": done(1)},
		}
	}
	for _, tc := range []struct {
		name  string
		edit  func(o *Observed)
		check func(r Result) bool
	}{
		{"clean", func(*Observed) {}, func(r Result) bool {
			return r.Answered == 1 && r.Forwarded == 1 && r.Lost == 0 && r.Overlaps == 0 &&
				r.RerunsAfterDone == 0 && r.RerunsAfterCrash == 0 && r.Requests == 1 && len(r.Examples) == 0
		}},
		{"lost", func(o *Observed) { o.Runs = nil; o.Marks = nil; o.Final = nil }, func(r Result) bool {
			return r.Lost == 1 && r.Unprocessed == 1 && r.Forwarded == 0
		}},
		{"dead-lettered is not lost", func(o *Observed) { o.Runs = nil; o.DLQ["k"] = "permanent" }, func(r Result) bool {
			return r.Lost == 0 && r.DeadLettered == 1 && r.Unprocessed == 0
		}},
		{"dead letter without a reason", func(o *Observed) { o.Runs = nil; o.DLQ["k"] = "" }, func(r Result) bool {
			return r.Lost == 1 && r.DLQNoReason == 1
		}},
		{"answered but not stored", func(o *Observed) { delete(o.Stream, "k") }, func(r Result) bool {
			return r.NotStored == 1
		}},
		{"stored twice", func(o *Observed) { o.Stream["k"] = 2 }, func(r Result) bool { return r.StoredTwice == 1 }},
		{"never answered", func(o *Observed) {
			o.Bodies[0].OK = false
			o.Bodies[0].Attempts = []Attempt{{Code: http.StatusServiceUnavailable}}
		}, func(r Result) bool {
			return r.Unanswered == 1 && r.Answered == 0 && r.Codes[http.StatusServiceUnavailable] == 1
		}},
		{"answer that does not add up", func(o *Observed) {
			o.Bodies[0].Attempts = []Attempt{{Code: http.StatusOK, Answer: Counts{Events: 1}}}
		}, func(r Result) bool { return r.AnswerMismatch == 1 }},
		{"overlap", func(o *Observed) {
			o.Runs = append(o.Runs, run(1, "k", 2, 40, 90, RunDuplicate))
			o.Final["k"] = done(2)
		}, func(r Result) bool { return r.Overlaps == 1 && r.RerunsAfterCrash == 1 }},
		{"re-run after a crash", func(o *Observed) {
			o.Runs = append(o.Runs, run(1, "k", 2, 3000, 3050, RunDuplicate))
			o.Marks = []Mark{mark("k", 2, 3060)}
			o.Final["k"] = done(2)
		}, func(r Result) bool {
			return r.RerunsAfterCrash == 1 && r.RerunsAfterDone == 0 && r.FenceNotIncreasing == 0 && r.DoneFenceMismatch == 0
		}},
		{"re-run after done", func(o *Observed) {
			o.Runs = append(o.Runs, run(1, "k", 2, 3000, 3050, RunDuplicate))
			o.Final["k"] = done(2)
		}, func(r Result) bool {
			return r.RerunsAfterDone == 1 && r.RerunsAfterDoneLost == 0 && r.RerunsAfterCrash == 0
		}},
		{"re-run after a done mark Redis lost", func(o *Observed) {
			o.Runs = append(o.Runs, run(1, "k", 1, 3000, 3050, RunDuplicate))
			o.StateLostAt = at(1000)
		}, func(r Result) bool { return r.RerunsAfterDone == 1 && r.RerunsAfterDoneLost == 1 }},
		{"fencing number not increasing", func(o *Observed) {
			o.Runs = append(o.Runs, run(1, "k", 1, 3000, 3050, RunDuplicate))
			o.Marks = []Mark{mark("k", 1, 3060)}
		}, func(r Result) bool {
			return r.FenceNotIncreasing == 1 && r.FenceNotIncreasingLost == 0 && r.RerunsAfterCrash == 1
		}},
		{"fencing number restarted with Redis's keys", func(o *Observed) {
			o.Runs = append(o.Runs, run(1, "k", 1, 3000, 3050, RunDuplicate))
			o.Marks = []Mark{mark("k", 1, 3060)}
			o.StateLostAt = at(1000)
		}, func(r Result) bool { return r.FenceNotIncreasing == 1 && r.FenceNotIncreasingLost == 1 }},
		{"stale writer", func(o *Observed) {
			o.Runs = append(o.Runs, run(1, "k", 2, 100, 150, RunDuplicate), run(2, "k", 1, 200, 250, RunStale))
			o.Marks = []Mark{mark("k", 2, 160)}
			o.Final["k"] = done(2)
		}, func(r Result) bool { return r.Stale == 1 && r.StaleLost == 0 && r.RerunsAfterDone == 1 }},
		{"not marked done", func(o *Observed) { o.Final["k"] = dedupe.Record{State: dedupe.Accepted, Fence: 1} },
			func(r Result) bool { return r.NotDone == 1 && r.NotDoneLost == 0 }},
		{"done by another run", func(o *Observed) { o.Final["k"] = done(7) },
			func(r Result) bool { return r.DoneFenceMismatch == 1 }},
		{"done mark MONITOR missed", func(o *Observed) { o.Marks = nil },
			func(r Result) bool { return r.MonitorMissed == 1 && r.RerunsAfterDone == 0 }},
		{"forward of an unknown key", func(o *Observed) { o.Runs = append(o.Runs, run(1, "x", 1, 0, 10, RunApplied)) },
			func(r Result) bool { return r.BadRuns == 1 && r.Forwarded == 1 }},
		{"forward with another item", func(o *Observed) { o.Runs[0].Item = []byte(`{"id":"wamid.2"}`) },
			func(r Result) bool { return r.ItemMismatch == 1 }},
		{"refused permanently and dead-lettered", func(o *Observed) {
			o.Runs[0].Outcome = RunRejected
			o.DLQ["k"] = "permanent: forward: HTTP 422 Unprocessable Entity"
		}, func(r Result) bool {
			return r.Rejected == 1 && r.RejectedNotDead == 0 && r.DeadNotRejected == 0 && r.Lost == 0 && r.Forwarded == 0
		}},
		{"refused permanently, not dead-lettered", func(o *Observed) { o.Runs[0].Outcome = RunRejected },
			func(r Result) bool { return r.Rejected == 1 && r.RejectedNotDead == 1 && r.Lost == 1 }},
		{"dead-lettered without failing", func(o *Observed) { o.DLQ["k"] = "max deliveries reached" },
			func(r Result) bool { return r.DeadNotRejected == 1 }},
		{"dead-lettered twice", func(o *Observed) {
			o.Runs[0].Outcome = RunRejected
			o.DLQ["k"] = "permanent: forward: HTTP 422 Unprocessable Entity"
			o.DeadLetters = map[string]int{"k": 2}
		}, func(r Result) bool { return r.DeadTwice == 1 && r.RejectedNotDead == 0 }},
		{"made to be refused, refused and dead-lettered once", func(o *Observed) {
			o.Runs[0].Outcome = RunRejected
			o.DLQ["k"] = "permanent: forward: HTTP 422 Unprocessable Entity"
			o.DeadLetters = map[string]int{"k": 1}
			o.Refused = map[string]bool{"k": true}
		}, func(r Result) bool { return r.Refused == 1 && r.RefusedNotDead == 0 && r.DeadTwice == 0 }},
		{"made to be refused, dead-lettered twice", func(o *Observed) {
			o.Runs[0].Outcome = RunRejected
			o.DLQ["k"] = "permanent: forward: HTTP 422 Unprocessable Entity"
			o.DeadLetters = map[string]int{"k": 2}
			o.Refused = map[string]bool{"k": true}
		}, func(r Result) bool { return r.Refused == 1 && r.RefusedNotDead == 1 && r.DeadTwice == 1 }},
		{"made to be refused, never reached the sink", func(o *Observed) {
			o.Runs = nil
			o.DLQ["k"] = "max deliveries reached"
			o.DeadLetters = map[string]int{"k": 1}
			o.Refused = map[string]bool{"k": true}
		}, func(r Result) bool { return r.Refused == 1 && r.RefusedNotDead == 1 && r.DeadNotRejected == 1 }},
		{"made to be refused, not dead-lettered", func(o *Observed) {
			o.Runs[0].Outcome = RunRejected
			o.Refused = map[string]bool{"k": true}
		}, func(r Result) bool { return r.Refused == 1 && r.RefusedNotDead == 1 && r.RejectedNotDead == 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base()
			tc.edit(&o)
			r := Check(o)
			if !tc.check(r) {
				t.Errorf("ledger %+v", r)
			}
		})
	}
}
