// Package failpoint kills or slows a wagate process at named points of its
// pipeline, so that crash safety can be tested with real processes: the fault
// suite in scripts/chaos uses it, and an operator can use it the same way on a
// staging deployment.
//
// Failpoints are configured by one environment variable, read once when the
// process starts:
//
//	WAGATE_FAILPOINTS=ingest-after-claim=0.02,ingest-after-puback=2s@0.1,worker-before-finish=0.05
//
// Each entry is <point>=<action>:
//
//	0.02        kill the process with SIGKILL at that point with probability 0.02
//	            (any number in (0, 1]; 1 kills on the first hit)
//	300ms       sleep that long at that point, every time (a Go duration)
//	2s@0.1      sleep that long with probability 0.1
//
// Before a kill the process writes one line to stderr,
// "failpoint: <point>: kill", so that a test can count the kills it caused.
// The points are the Point constants; an unknown point, a malformed action or
// a repeated point makes the process write the error to stderr and exit with
// status 2 at start-up, before doing anything else.
//
// When WAGATE_FAILPOINTS is unset or empty, Hit costs one atomic load and does
// nothing. Never set it in production.
package failpoint

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Env is the environment variable that configures the failpoints.
const Env = "WAGATE_FAILPOINTS"

// Point names a place in the pipeline where a failpoint can fire.
type Point string

// The failpoints.
const (
	// IngestAfterClaim is in the ingress, after the claims of a request are
	// written and before its events are published.
	IngestAfterClaim Point = "ingest-after-claim"
	// IngestAfterPubAck is in the ingress, after every publish of a request
	// has its PubAck (or failed) and before the claims are accepted and the
	// provider answered.
	IngestAfterPubAck Point = "ingest-after-puback"
	// WorkerBeforeFinish is in the worker, after the handler returned nil
	// (its side effect is done) and before the key is marked done.
	WorkerBeforeFinish Point = "worker-before-finish"
	// WorkerAfterFinish is in the worker, after the key is marked done (or
	// the mark failed) and before the message is acknowledged.
	WorkerAfterFinish Point = "worker-after-finish"
)

// points lists every Point, for validation.
var points = []Point{IngestAfterClaim, IngestAfterPubAck, WorkerBeforeFinish, WorkerAfterFinish}

// action is what a failpoint does when hit.
type action struct {
	kill  bool
	sleep time.Duration
	prob  float64 // in (0, 1]
}

// active is set when at least one failpoint is configured; actions is then
// read-only.
var (
	active  atomic.Bool
	actions map[Point]action
)

func init() {
	if err := configure(os.Getenv(Env)); err != nil {
		fmt.Fprintf(os.Stderr, "failpoint: %s: %v\n", Env, err)
		os.Exit(2)
	}
}

// configure sets the failpoints from spec, a WAGATE_FAILPOINTS value. It is
// called once, before any Hit.
func configure(spec string) error {
	a, err := parse(spec)
	if err != nil {
		return err
	}
	actions = a
	active.Store(len(a) > 0)
	return nil
}

// parse checks a WAGATE_FAILPOINTS value and returns its actions by point.
// It returns an error naming the first entry that is malformed, names an
// unknown point, or repeats one. Empty entries are ignored.
func parse(spec string) (map[Point]action, error) {
	out := map[Point]action{}
	for entry := range strings.SplitSeq(spec, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, act, ok := strings.Cut(entry, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want <point>=<action>", entry)
		}
		p := Point(strings.TrimSpace(name))
		if !known(p) {
			return nil, fmt.Errorf("%q: unknown point %q (known: %s)", entry, p, list())
		}
		if _, dup := out[p]; dup {
			return nil, fmt.Errorf("%q: point %q given twice", entry, p)
		}
		a, err := parseAction(strings.TrimSpace(act))
		if err != nil {
			return nil, fmt.Errorf("%q: %w", entry, err)
		}
		out[p] = a
	}
	return out, nil
}

// parseAction reads "0.02" (kill), "300ms" (sleep) or "2s@0.1" (sleep with
// a probability).
func parseAction(s string) (action, error) {
	if p, err := strconv.ParseFloat(s, 64); err == nil {
		if !(p > 0 && p <= 1) {
			return action{}, fmt.Errorf("kill probability %v is not in (0, 1]", p)
		}
		return action{kill: true, prob: p}, nil
	}
	d, probText, hasProb := strings.Cut(s, "@")
	sleep, err := time.ParseDuration(d)
	if err != nil || sleep <= 0 {
		return action{}, fmt.Errorf("action %q: want a kill probability (0.02), a positive duration (300ms) or a duration@probability (2s@0.1)", s)
	}
	a := action{sleep: sleep, prob: 1}
	if hasProb {
		p, err := strconv.ParseFloat(probText, 64)
		if err != nil || !(p > 0 && p <= 1) {
			return action{}, fmt.Errorf("action %q: probability %q is not a number in (0, 1]", s, probText)
		}
		a.prob = p
	}
	return a, nil
}

func known(p Point) bool {
	for _, k := range points {
		if k == p {
			return true
		}
	}
	return false
}

func list() string {
	s := make([]string, len(points))
	for i, p := range points {
		s[i] = string(p)
	}
	return strings.Join(s, ", ")
}

// Hit fires the failpoint p if WAGATE_FAILPOINTS configures it: it kills the
// process (never returning) or sleeps, with the configured probability. It
// does nothing otherwise, at the cost of one atomic load. It is safe for
// concurrent use.
func Hit(p Point) {
	if !active.Load() {
		return
	}
	a, ok := actions[p]
	if !ok || (a.prob < 1 && rand.Float64() >= a.prob) {
		return
	}
	if !a.kill {
		time.Sleep(a.sleep)
		return
	}
	fmt.Fprintf(os.Stderr, "failpoint: %s: kill\n", p)
	if self, err := os.FindProcess(os.Getpid()); err == nil {
		_ = self.Kill()
	}
	// SIGKILL to oneself is delivered at once; nothing after the point may
	// run meanwhile.
	for {
		time.Sleep(time.Hour)
	}
}
