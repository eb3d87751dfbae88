package chaos

import (
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"

	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/worker"
)

// Outcomes of a run at the sink.
const (
	RunApplied   = "applied"   // committed: the first time the sink saw the key
	RunDuplicate = "duplicate" // committed again under the same Idempotency-Key: suppressed
	RunStale     = "stale"     // refused 409: a later run of the key had a higher fencing number
	RunAborted   = "aborted"   // the worker went away (killed, or cancelled the handler) before the commit
	RunBad       = "bad"       // refused 400: not an event, or Idempotency-Key not the event's key
	RunRejected  = "rejected"  // refused 422 by Reject: a permanent failure, for the dead-letter stream
	RunInFlight  = "in-flight" // not finished yet
)

// Run is one forward received by the sink: the visible side effect of one
// handler run. It starts when the request arrives and ends when the sink
// commits (or refuses) it, or when the worker goes away.
type Run struct {
	ID       int       // its index in the sink's record
	Key      string    // Idempotency-Key
	Fence    int64     // Wagate-Fencing-Token
	Delivery uint64    // Wagate-Delivery: JetStream's delivery count
	Start    time.Time // the request arrived
	End      time.Time // committed, refused or abandoned; zero while in flight
	Outcome  string    // one of the Run* constants
	Item     []byte    // the event's item, as forwarded
}

// Sink is the forward target of the workers: a downstream that dedupes on
// Idempotency-Key (it applies each key once and answers 200 to repeats) and
// refuses a stale writer (a fencing number lower than one it has seen for
// the key, 409). Each request is held for Hold(key) before it is committed,
// so that a handler runs long enough to be killed, to outlive its lock, or
// to overlap another run of the same key if the lock failed.
type Sink struct {
	// Hold returns how long a forward of key is held before its commit.
	// Default: 20–80 ms at random.
	Hold func(key string) time.Duration
	// Reject, when set, makes the sink refuse every forward of the keys it
	// returns true for with 422, which the worker's forward handler treats
	// as permanent: those events must end in the dead-letter stream.
	Reject func(key string) bool

	srv      *httptest.Server
	mu       sync.Mutex
	runs     []*Run
	applied  map[string]bool
	maxFence map[string]int64
}

// NewSink starts a sink on a loopback port with its Hold and Reject (either
// may be nil). Both are set before it serves: neither may change after.
func NewSink(hold func(string) time.Duration, reject func(string) bool) *Sink {
	s := &Sink{Hold: hold, Reject: reject, applied: map[string]bool{}, maxFence: map[string]int64{}}
	s.srv = httptest.NewServer(s)
	return s
}

// URL is the sink's address, for WAGATE_FORWARD_URL.
func (s *Sink) URL() string { return s.srv.URL }

// Close stops the sink.
func (s *Sink) Close() { s.srv.Close() }

// ServeHTTP records one run.
func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	body, err := io.ReadAll(r.Body)
	key := r.Header.Get(worker.HeaderIdempotencyKey)
	fence, _ := strconv.ParseInt(r.Header.Get(worker.HeaderFencingToken), 10, 64)
	delivery, _ := strconv.ParseUint(r.Header.Get(worker.HeaderDelivery), 10, 64)
	run := &Run{Key: key, Fence: fence, Delivery: delivery, Start: start, Outcome: RunInFlight}
	s.mu.Lock()
	run.ID = len(s.runs)
	s.runs = append(s.runs, run)
	s.mu.Unlock()

	if err != nil {
		s.finish(run, RunAborted)
		return
	}
	ev, derr := messages.Decode(body)
	if derr != nil || ev.Key != key || fence < 1 {
		s.finish(run, RunBad)
		http.Error(w, "not an event, no fencing token, or Idempotency-Key is not the event's key", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	run.Item = ev.Item
	s.mu.Unlock()

	hold := DefaultHold(key)
	if s.Hold != nil {
		hold = s.Hold(key)
	}
	t := time.NewTimer(hold)
	defer t.Stop()
	select {
	case <-r.Context().Done():
		s.finish(run, RunAborted)
		return
	case <-t.C:
	}

	s.mu.Lock()
	outcome := RunApplied
	switch {
	case s.Reject != nil && s.Reject(key):
		s.mu.Unlock()
		s.finish(run, RunRejected)
		http.Error(w, "rejected by the sink", http.StatusUnprocessableEntity)
		return
	case fence < s.maxFence[key]:
		outcome = RunStale
	case s.applied[key]:
		outcome = RunDuplicate
	}
	if outcome != RunStale {
		s.maxFence[key] = fence
		s.applied[key] = true
	}
	run.End, run.Outcome = time.Now(), outcome
	s.mu.Unlock()
	if outcome == RunStale {
		http.Error(w, "stale fencing token", http.StatusConflict)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// DefaultHold holds a forward 20–80 ms, at random.
func DefaultHold(string) time.Duration {
	return 20*time.Millisecond + time.Duration(rand.IntN(60))*time.Millisecond
}

func (s *Sink) finish(run *Run, outcome string) {
	s.mu.Lock()
	run.End, run.Outcome = time.Now(), outcome
	s.mu.Unlock()
}

// Runs returns a copy of every run so far.
func (s *Sink) Runs() []Run {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Run, len(s.runs))
	for i, r := range s.runs {
		out[i] = *r
	}
	return out
}

// InFlight returns the runs not finished yet.
func (s *Sink) InFlight() []Run {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Run
	for _, r := range s.runs {
		if r.Outcome == RunInFlight {
			out = append(out, *r)
		}
	}
	return out
}

// Applied reports how many distinct keys the sink has applied.
func (s *Sink) Applied() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.applied)
}

// IsApplied reports whether key was applied.
func (s *Sink) IsApplied(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied[key]
}
