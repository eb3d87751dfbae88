package main

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/wagate/wagate/ingest"
)

// Step is the outcome of one load step against an HTTP target.
type Step struct {
	// LoadPct is the offered load in percent of the peak; 0 for the
	// closed-loop run that finds the peak.
	LoadPct float64 `json:"load_pct"`
	// OfferedRPS is the request rate the load generator paced; 0 for a
	// closed loop (each of Workers sends its next request on an answer).
	OfferedRPS float64 `json:"offered_rps"`
	// Workers is the number of concurrent requests of a closed loop.
	Workers int `json:"workers,omitempty"`
	// Requests is the number of requests sent; OK of them were answered 200.
	Requests int `json:"requests"`
	OK       int `json:"ok"`
	// Seconds is the time from the first request to the last answer.
	Seconds float64 `json:"seconds"`
	// RPS is OK / Seconds; EventsPerS counts the events of those bodies.
	RPS        float64 `json:"rps"`
	EventsPerS float64 `json:"events_per_s"`
	// Accepted and Duplicates sum the ingress's answers (0 for the echo
	// server); DuplicatePct is Duplicates over all their events.
	Accepted     int     `json:"accepted"`
	Duplicates   int     `json:"duplicates"`
	DuplicatePct float64 `json:"duplicate_pct"`
	// Latency of the answer seen by the load generator, in milliseconds.
	Latency Percentiles `json:"latency_ms"`
	// Errors holds up to 5 distinct errors, when some requests failed.
	Errors []string `json:"errors,omitempty"`
	// CPU is the processors' use during the step.
	CPU *CPU `json:"cpu,omitempty"`
}

// Percentiles of a latency sample, in milliseconds.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

// percentiles returns the exact nearest-rank percentiles of d (sorted in
// place).
func percentiles(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	slices.Sort(d)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(d)))) - 1
		i = max(0, min(i, len(d)-1))
		return ms(d[i])
	}
	return Percentiles{P50: at(0.50), P99: at(0.99), P999: at(0.999), Max: ms(d[len(d)-1])}
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// attack is one load run: a closed loop of workers when rate is 0, else an
// open loop at rate requests per second.
type attack struct {
	url      string
	load     *workload
	rate     int
	workers  int
	duration time.Duration
}

// maxOpenWorkers caps the concurrent requests of an open loop that falls
// behind its rate.
const maxOpenWorkers = 256

// run sends the load and measures it.
func (a attack) run(ctx context.Context) Step {
	opts := []func(*vegeta.Attacker){
		vegeta.Workers(uint64(a.workers)),
		vegeta.KeepAlive(true),
		vegeta.Timeout(30 * time.Second),
		vegeta.MaxBody(4096),
	}
	pacer := vegeta.ConstantPacer{}
	st := Step{}
	if a.rate > 0 {
		pacer = vegeta.ConstantPacer{Freq: a.rate, Per: time.Second}
		st.OfferedRPS = float64(a.rate)
		opts = append(opts, vegeta.MaxWorkers(maxOpenWorkers), vegeta.Connections(maxOpenWorkers))
	} else {
		st.Workers = a.workers
		opts = append(opts, vegeta.MaxWorkers(uint64(a.workers)), vegeta.Connections(a.workers))
	}
	atk := vegeta.NewAttacker(opts...)
	stop := context.AfterFunc(ctx, func() { atk.Stop() })
	defer stop()

	var (
		lat        []time.Duration
		begin, end time.Time
		errs       = map[string]struct{}{}
	)
	for r := range atk.Attack(a.load.targeter(a.url), pacer, a.duration, "") {
		st.Requests++
		lat = append(lat, r.Latency)
		if begin.IsZero() || r.Timestamp.Before(begin) {
			begin = r.Timestamp
		}
		if e := r.Timestamp.Add(r.Latency); e.After(end) {
			end = e
		}
		if r.Code != http.StatusOK {
			if len(errs) < 5 {
				msg := r.Error
				if msg == "" {
					msg = http.StatusText(int(r.Code))
				}
				errs[msg] = struct{}{}
			}
			continue
		}
		st.OK++
		var ans ingest.Answer
		if json.Unmarshal(r.Body, &ans) == nil {
			st.Accepted += ans.Accepted
			st.Duplicates += ans.Duplicates
		}
	}
	for e := range errs {
		st.Errors = append(st.Errors, e)
	}
	slices.Sort(st.Errors)
	if st.Requests > 0 {
		st.Seconds = end.Sub(begin).Seconds()
	}
	if st.Seconds > 0 {
		st.RPS = float64(st.OK) / st.Seconds
		st.EventsPerS = st.RPS * float64(a.load.perBody)
	}
	if n := st.Accepted + st.Duplicates; n > 0 {
		st.DuplicatePct = 100 * float64(st.Duplicates) / float64(n)
	}
	st.Latency = percentiles(lat)
	return st
}
