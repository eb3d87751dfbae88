package chaos

import (
	"bytes"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/wagate/wagate/dedupe"
)

// Observed is everything a scenario saw, from every side.
type Observed struct {
	// Bodies are the provider's bodies with every answer.
	Bodies []*Body
	// Items is each sent event's item JSON by key.
	Items map[string][]byte
	// Runs are the sink's runs.
	Runs []Run
	// Marks are the Begins and done marks Redis executed, in its order.
	Marks []Mark
	// MonitorGaps counts the MONITOR reconnections (Redis restarts).
	MonitorGaps int
	// Stream counts the events stream's messages by Nats-Msg-Id.
	Stream map[string]int
	// Conversations lists, per conversation token (Wagate-Conversation), the keys
	// of the events stream in stream order.
	Conversations map[string][]string
	// DLQ is each dead-lettered key's Wagate-Error.
	DLQ map[string]string
	// DeadLetters counts the dead letters of each key.
	DeadLetters map[string]int
	// Refused holds the keys of the events the sink was made to refuse
	// permanently (Provider.RefuseEvery).
	Refused map[string]bool
	// Final is the store's final record of every sent key.
	Final map[string]dedupe.Record
	// StateLostAt is when Redis lost its keys (a restart without
	// persistence); zero if it never did.
	StateLostAt time.Time
}

// Result is the ledger of one scenario: the table row, and every count an
// assertion looks at.
type Result struct {
	Scenario string
	Seconds  float64 // wall time of the scenario

	// The table.
	Requests         int // POST attempts, retries included
	Events           int // distinct events sent
	Answered         int // distinct events covered by a 200
	Forwarded        int // distinct events applied by the sink
	DeadLettered     int // distinct events in the dead-letter stream
	DupSuppressed    int // deliveries in 200-answered bodies beyond each event's first
	Lost             int // answered 200, neither forwarded nor dead-lettered with a reason
	Overlaps         int // runs of a key that started before an earlier run of it ended
	RerunsAfterDone  int // runs of a key that started after its done mark
	RerunsAfterCrash int // other runs after a key's first: the earlier run died or lost its lock

	// Provider side.
	Unanswered     int         // bodies never answered 200 before the provider's deadline
	Codes          map[int]int // answers by status code; 0 = no answer (transport error or timeout)
	Timeouts       int         // attempts the provider gave up on (slower than its timeout)
	AnswerMismatch int         // 200 answers whose counts do not add up to the body's events

	// Sink side.
	Aborted      int // runs whose worker went away before the commit
	Rejected     int // distinct keys the sink refused as a permanent failure
	Stale        int // runs refused for a stale fencing number
	BadRuns      int // forwards that were not a sent event under its own key
	ItemMismatch int // forwards whose item differs from the one sent

	// Stream, dead letters and store.
	NotStored          int // answered 200 but absent from the events stream (G1)
	StoredTwice        int // keys stored more than once in the events stream
	Unprocessed        int // in the events stream, neither forwarded nor dead-lettered (G3)
	DLQNoReason        int // dead letters without Wagate-Error
	DeadTwice          int // keys dead-lettered more than once
	RejectedNotDead    int // keys the sink refused permanently, not dead-lettered with the 422 as the reason
	DeadNotRejected    int // dead letters of keys the sink never refused
	Refused            int // keys made to be refused (Observed.Refused)
	RefusedNotDead     int // of those, keys not refused by the sink and dead-lettered once with its 422
	FenceNotIncreasing int // re-runs whose fencing number is not above every earlier run's
	NotDone            int // forwarded keys whose final state is not done
	DoneFenceMismatch  int // done marks whose fencing number is not the last committed run's
	MonitorMissed      int // keys done in the store whose done mark MONITOR never saw

	// Of the above, those the documented limit of a Redis without
	// persistence explains: the key's state was written before the loss.
	RerunsAfterDoneLost    int
	FenceNotIncreasingLost int
	StaleLost              int
	NotDoneLost            int
	DoneFenceMismatchLost  int

	// Examples of each violation, for the failure message.
	Examples []string
}

func (r *Result) example(format string, args ...any) {
	if len(r.Examples) < 12 {
		r.Examples = append(r.Examples, fmt.Sprintf(format, args...))
	}
}

// Check computes the ledger of o.
func Check(o Observed) Result {
	r := Result{Codes: map[int]int{}, Events: len(o.Items)}
	lost := func(t time.Time) bool { return !o.StateLostAt.IsZero() && t.Before(o.StateLostAt) }

	// Provider: what was answered.
	answered := map[string]bool{}
	deliveries := 0
	for _, b := range o.Bodies {
		for _, a := range b.Attempts {
			r.Requests++
			r.Codes[a.Code]++
			if a.Timeout {
				r.Timeouts++
			}
			if a.Code != http.StatusOK {
				continue
			}
			deliveries += a.Answer.Events
			if a.Answer.Events != b.Events || a.Answer.Accepted+a.Answer.Duplicates != b.Events {
				r.AnswerMismatch++
				r.example("answer %+v to a body of %d events", a.Answer, b.Events)
			}
		}
		if !b.OK {
			r.Unanswered++
			r.example("body never answered 200 after %d attempts: %v", len(b.Attempts), lastErr(b))
			continue
		}
		for _, k := range b.Keys {
			answered[k] = true
		}
	}
	r.Answered = len(answered)
	r.DupSuppressed = deliveries - len(answered)

	// Sink: what ran.
	byKey := map[string][]Run{}
	applied := map[string]bool{}
	rejected := map[string]bool{}
	for _, run := range o.Runs {
		want, sent := o.Items[run.Key]
		switch {
		case run.Outcome == RunBad || !sent:
			r.BadRuns++
			r.example("forward of key %q fence %d: not a sent event under its key", run.Key, run.Fence)
			continue
		case run.Item != nil && !bytes.Equal(run.Item, want):
			r.ItemMismatch++
			r.example("forward of %s: item %s, sent %s", run.Key, run.Item, want)
		}
		switch run.Outcome {
		case RunApplied:
			applied[run.Key] = true
		case RunAborted:
			r.Aborted++
		case RunStale:
			r.Stale++
		case RunRejected:
			rejected[run.Key] = true
		}
		byKey[run.Key] = append(byKey[run.Key], run)
	}
	r.Forwarded = len(applied)

	// Done marks, by key: the first one seen.
	doneAt := map[string]time.Time{}
	for _, m := range o.Marks {
		if _, ok := doneAt[m.Key]; m.Done && !ok {
			doneAt[m.Key] = m.At
		}
	}

	for key, runs := range byKey {
		sort.Slice(runs, func(i, j int) bool {
			if !runs[i].Start.Equal(runs[j].Start) {
				return runs[i].Start.Before(runs[j].Start)
			}
			return runs[i].ID < runs[j].ID
		})
		var maxEnd time.Time
		var maxFence int64
		for i, run := range runs {
			end := run.End
			if run.Outcome == RunInFlight {
				end = time.Now().Add(time.Hour)
			}
			if i > 0 {
				if run.Start.Before(maxEnd) {
					r.Overlaps++
					r.example("overlap on %s: run fence %d started %v before an earlier run ended", key, run.Fence, maxEnd.Sub(run.Start))
				}
				if d, ok := doneAt[key]; ok && run.Start.After(d) {
					r.RerunsAfterDone++
					if lost(d) {
						r.RerunsAfterDoneLost++
					} else {
						r.example("re-run of %s (fence %d, delivery %d) %v after its done mark", key, run.Fence, run.Delivery, run.Start.Sub(d))
					}
				} else {
					r.RerunsAfterCrash++
					if run.Fence <= maxFence {
						r.FenceNotIncreasing++
						if lost(runs[i-1].Start) {
							r.FenceNotIncreasingLost++
						} else {
							r.example("re-run of %s with fence %d after a run with fence %d", key, run.Fence, maxFence)
						}
					}
				}
			}
			if end.After(maxEnd) {
				maxEnd = end
			}
			maxFence = max(maxFence, run.Fence)
			if run.Outcome == RunStale && lost(runs[0].Start) {
				r.StaleLost++
			}
		}
	}

	// The events stream and the dead letters.
	for key, n := range o.Stream {
		if n > 1 {
			r.StoredTwice++
			r.example("%s stored %d times in the events stream", key, n)
		}
		if !applied[key] && o.DLQ[key] == "" {
			r.Unprocessed++
			r.example("%s stored but neither forwarded nor dead-lettered", key)
		}
	}
	for key, reason := range o.DLQ {
		if reason == "" {
			r.DLQNoReason++
			r.example("dead letter of %s without a reason", key)
		}
	}
	r.DeadLettered = len(o.DLQ)
	r.Rejected = len(rejected)
	for key := range rejected {
		if reason, ok := o.DLQ[key]; !ok || !strings.Contains(reason, "HTTP 422") {
			r.RejectedNotDead++
			r.example("%s refused permanently by the sink (422) but not dead-lettered with that reason: %q", key, reason)
		}
	}
	for key := range o.DLQ {
		if !rejected[key] {
			r.DeadNotRejected++
			r.example("%s dead-lettered although the sink never refused it: %s", key, o.DLQ[key])
		}
	}
	for key, n := range o.DeadLetters {
		if n > 1 {
			r.DeadTwice++
			r.example("%s dead-lettered %d times", key, n)
		}
	}
	r.Refused = len(o.Refused)
	for key := range o.Refused {
		if reason := o.DLQ[key]; !rejected[key] || o.DeadLetters[key] != 1 || !strings.Contains(reason, "HTTP 422") {
			r.RefusedNotDead++
			r.example("%s made to be refused: refused by the sink %v, dead-lettered %d times, reason %q", key, rejected[key], o.DeadLetters[key], reason)
		}
	}
	for key := range answered {
		if o.Stream[key] == 0 {
			r.NotStored++
			r.example("%s answered 200 but not in the events stream", key)
		}
		if !applied[key] && o.DLQ[key] == "" {
			r.Lost++
			r.example("%s answered 200 but neither forwarded nor dead-lettered", key)
		}
	}

	// The store's final word.
	for key := range applied {
		if _, dead := o.DLQ[key]; dead {
			continue
		}
		runs := byKey[key]
		var last *Run
		for i := range runs {
			if runs[i].Outcome == RunApplied || runs[i].Outcome == RunDuplicate {
				last = &runs[i]
			}
		}
		rec := o.Final[key]
		switch {
		case rec.State != dedupe.Done:
			r.NotDone++
			if lost(last.End) {
				r.NotDoneLost++
			} else {
				r.example("%s forwarded but its final state is %s", key, rec.State)
			}
		case rec.Fence != last.Fence:
			r.DoneFenceMismatch++
			if lost(runs[0].Start) {
				r.DoneFenceMismatchLost++
			} else {
				r.example("%s done with fence %d, but its last committed run had fence %d", key, rec.Fence, last.Fence)
			}
		}
		if rec.State == dedupe.Done {
			if _, seen := doneAt[key]; !seen {
				r.MonitorMissed++
			}
		}
	}
	return r
}

func lastErr(b *Body) string {
	if len(b.Attempts) == 0 {
		return "never sent"
	}
	a := b.Attempts[len(b.Attempts)-1]
	return fmt.Sprintf("code %d %s", a.Code, a.Err)
}
