// Package dedupetest is the contract suite of dedupe.Store: every backend
// runs it unchanged, against a real server, and must pass it whole.
//
// The suite works only through the Store interface. Each subtest makes its own
// keys with messages.KeyOf of a random identity, so stores may share one
// server, one database or one bucket, and subtests run in parallel.
package dedupetest

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/messages"
)

// Durations the suite gives to stores and locks.
const (
	// Horizon is the horizon of the stores most subtests use: long enough
	// that no key expires while a subtest runs.
	Horizon = time.Hour
	// ShortHorizon is the horizon of the store the expiry subtests use.
	ShortHorizon = 1500 * time.Millisecond
	// LockTTL is the TTL of locks that must outlive their subtest.
	LockTTL = time.Minute
	// ShortLockTTL is the TTL of locks that the suite lets expire.
	ShortLockTTL = 200 * time.Millisecond
	// ExpiryWait bounds every poll for an expiry.
	ExpiryWait = 20 * time.Second
	// opTimeout bounds each subtest's calls.
	opTimeout = 60 * time.Second
)

// storeFunc makes a store for one subtest; see Run.
type storeFunc = func(t *testing.T, horizon time.Duration) dedupe.Store

// Run runs the contract suite against the stores newStore returns: one
// parallel subtest per behaviour, each calling newStore once for a store with
// the given horizon (Horizon or ShortHorizon). newStore must return a store
// on a real backend, which may be shared with other subtests (keys are unique
// per subtest), and close what it opens with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T, horizon time.Duration) dedupe.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, newStore storeFunc)
	}{
		{"ClaimAbsentThenPending", testClaimAbsentThenPending},
		{"ClaimEmpty", testClaimEmpty},
		{"AcceptThenAccepted", testAcceptThenAccepted},
		{"AcceptWrongToken", testAcceptWrongToken},
		{"AcceptNeverOverDoneOrBegun", testAcceptNeverOverDoneOrBegun},
		{"ReleaseOwnPendingOnly", testReleaseOwnPendingOnly},
		{"ClaimBatch1000", testClaimBatch1000},
		{"ClaimBatchMixedStates", testClaimBatchMixedStates},
		{"ClaimRepeatedKeyInBatch", testClaimRepeatedKeyInBatch},
		{"ClaimConcurrent", testClaimConcurrent},
		{"ClaimAndAcceptMixed", testClaimAndAcceptMixed},
		{"ClaimAndAcceptConcurrent", testClaimAndAcceptConcurrent},
		{"Horizon", testHorizon},
		{"BeginFromEachState", testBeginFromEachState},
		{"BeginBusy", testBeginBusy},
		{"UnlockThenBegin", testUnlockThenBegin},
		{"LockExpiry", testLockExpiry},
		{"LockExpiryWithoutNewHolder", testLockExpiryWithoutNewHolder},
		{"FinishThenDone", testFinishThenDone},
		{"BeginConcurrent", testBeginConcurrent},
		{"ExtendKeepsLock", testExtendKeepsLock},
		{"BeginBatchMixedStates", testBeginBatchMixedStates},
		{"BeginBatchConcurrent", testBeginBatchConcurrent},
		{"InvalidArguments", testInvalidArguments},
		{"LookupAbsent", testLookupAbsent},
		{"Ping", testPing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore)
		})
	}
}

// ctx returns a context for t's calls, bounded by opTimeout.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), opTimeout)
	t.Cleanup(cancel)
	return c
}

// newKey returns a dedupe key no other subtest or run uses.
func newKey(t *testing.T) string {
	return messages.KeyOf("dedupetest|" + t.Name() + "|" + rand.Text())
}

// newKeys returns n fresh keys.
func newKeys(t *testing.T, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = newKey(t)
	}
	return keys
}

// claim claims keys and checks the answer's length and keys.
func claim(t *testing.T, c context.Context, s dedupe.Store, owner string, keys ...string) []dedupe.Claim {
	t.Helper()
	got, err := s.Claim(c, owner, keys)
	if err != nil {
		t.Fatalf("Claim(%q, %d keys): %v", owner, len(keys), err)
	}
	if len(got) != len(keys) {
		t.Fatalf("Claim(%q, %d keys) returned %d claims", owner, len(keys), len(got))
	}
	for i, cl := range got {
		if cl.Key != keys[i] {
			t.Fatalf("Claim: claim %d has key %q, want %q (order must follow keys)", i, cl.Key, keys[i])
		}
	}
	return got
}

// claimOne claims key and checks its prior state.
func claimOne(t *testing.T, c context.Context, s dedupe.Store, owner, key string, want dedupe.State) dedupe.Claim {
	t.Helper()
	cl := claim(t, c, s, owner, key)[0]
	if cl.Prior != want {
		t.Fatalf("Claim(%q, %s): prior %v, want %v", owner, key, cl.Prior, want)
	}
	checkToken(t, cl)
	return cl
}

// checkToken checks a claim's Token against its Prior.
func checkToken(t *testing.T, cl dedupe.Claim) {
	t.Helper()
	switch cl.Prior {
	case dedupe.Absent, dedupe.Pending:
		if cl.Token == "" {
			t.Fatalf("claim of %s: prior %v with an empty Token", cl.Key, cl.Prior)
		}
	default:
		if cl.Token != "" {
			t.Fatalf("claim of %s: prior %v with Token %q, want empty", cl.Key, cl.Prior, cl.Token)
		}
	}
}

// begin takes key's lock and checks the lease.
func begin(t *testing.T, c context.Context, s dedupe.Store, key string, opts dedupe.BeginOptions) dedupe.Lease {
	t.Helper()
	l, err := s.Begin(c, key, opts)
	if err != nil {
		t.Fatalf("Begin(%s, %+v): %v", key, opts, err)
	}
	if l.Key != key || l.Token == "" || l.Fence < 1 {
		t.Fatalf("Begin(%s): lease %+v, want the key, a token and a fence >= 1", key, l)
	}
	return l
}

// beginErr checks Begin fails with want.
func beginErr(t *testing.T, c context.Context, s dedupe.Store, key string, opts dedupe.BeginOptions, want error) {
	t.Helper()
	l, err := s.Begin(c, key, opts)
	if !errors.Is(err, want) {
		t.Fatalf("Begin(%s, %+v) = %+v, %v; want %v", key, opts, l, err, want)
	}
}

// lookup returns key's record.
func lookup(t *testing.T, c context.Context, s dedupe.Store, key string) dedupe.Record {
	t.Helper()
	r, err := s.Lookup(c, key)
	if err != nil {
		t.Fatalf("Lookup(%s): %v", key, err)
	}
	return r
}

// want checks key's state, last fence and lock, and that its TTL lies in
// (0, horizon] unless it is absent.
func want(t *testing.T, c context.Context, s dedupe.Store, key string, horizon time.Duration, state dedupe.State, fence int64, locked bool) dedupe.Record {
	t.Helper()
	r := lookup(t, c, s, key)
	wantRecord(t, key, r, horizon, state, fence, locked)
	return r
}

// wantRecord is want for a record r of key already looked up.
func wantRecord(t *testing.T, key string, r dedupe.Record, horizon time.Duration, state dedupe.State, fence int64, locked bool) {
	t.Helper()
	if r.State != state || r.Fence != fence || r.Locked != locked {
		t.Fatalf("Lookup(%s) = state %v, fence %d, locked %v (raw %q); want %v, %d, %v",
			key, r.State, r.Fence, r.Locked, r.Raw, state, fence, locked)
	}
	if state == dedupe.Absent {
		if r.TTL != 0 {
			t.Fatalf("Lookup(%s): absent with TTL %v, want 0", key, r.TTL)
		}
	} else if r.TTL <= 0 || r.TTL > horizon {
		t.Fatalf("Lookup(%s): TTL %v, want in (0, %v]", key, r.TTL, horizon)
	}
}

// lock is BeginOptions with the given TTL.
func lock(ttl time.Duration) dedupe.BeginOptions { return dedupe.BeginOptions{TTL: ttl} }

// inTime runs try with fresh keys until one run finishes within limit of
// its start, at most ten times. try writes state that lives limit (a lock
// of ShortLockTTL, a key of ShortHorizon) and checks it still there; a run
// that took longer than limit (a backend that answers one request at a time
// to a parallel suite) may see it expired, which proves nothing, so try
// checks only what it read on time: it returns false, without failing, when
// late(start, limit).
func inTime(t *testing.T, limit time.Duration, try func(start time.Time) bool) {
	t.Helper()
	for i := range 10 {
		start := time.Now()
		if try(start) {
			return
		}
		t.Logf("try %d took %v, longer than the %v it checks within; trying again with fresh keys", i+1, time.Since(start).Round(time.Millisecond), limit)
	}
	t.Fatalf("ten tries each took longer than the %v they check within: the backend is too slow for this subtest", limit)
}

// written calls write on a fresh key, then looks the key up, and returns
// both, within limit of the write's start (see inTime): write makes state
// that lives limit, and its error fails the subtest.
func written(t *testing.T, c context.Context, s dedupe.Store, limit time.Duration, write func(key string) error) (key string, r dedupe.Record) {
	t.Helper()
	inTime(t, limit, func(start time.Time) bool {
		key = newKey(t)
		err := write(key)
		r = lookup(t, c, s, key)
		if late(start, limit) {
			return false
		}
		if err != nil {
			t.Fatalf("writing %s: %v", key, err)
		}
		return true
	})
	return key, r
}

// late reports whether state that lives limit, written at start, may have
// expired.
func late(start time.Time, limit time.Duration) bool { return time.Since(start) >= limit }

// eventually polls cond until it holds, bounded by ExpiryWait.
func eventually(t *testing.T, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(ExpiryWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: "+msg, append([]any{ExpiryWait}, args...)...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
