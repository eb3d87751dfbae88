package dedupetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/dedupe"
)

func testBeginFromEachState(t *testing.T, newStore storeFunc) {
	s, c := newStore(t, Horizon), ctx(t)
	absent, pending, accepted := newKey(t), newKey(t), newKey(t)
	claimOne(t, c, s, ownerA, pending, dedupe.Absent)
	a := claimOne(t, c, s, ownerA, accepted, dedupe.Absent)
	if err := s.Accept(c, []dedupe.Claim{a}); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	for _, k := range []string{absent, pending, accepted} {
		l := begin(t, c, s, k, lock(LockTTL))
		if l.Fence != 1 {
			t.Fatalf("Begin(%s): fence %d, want 1", k, l.Fence)
		}
		// Begin leaves the key accepted, so the ingress sees a duplicate.
		want(t, c, s, k, Horizon, dedupe.Accepted, 1, true)
		claimOne(t, c, s, ownerB, k, dedupe.Accepted)
	}
}

func testBeginBusy(t *testing.T, newStore storeFunc) {
	s, c, k := newStore(t, Horizon), ctx(t), newKey(t)
	l := begin(t, c, s, k, lock(LockTTL))
	beginErr(t, c, s, k, lock(LockTTL), dedupe.ErrBusy)
	beginErr(t, c, s, k, dedupe.BeginOptions{TTL: LockTTL, Force: true}, dedupe.ErrBusy)
	want(t, c, s, k, Horizon, dedupe.Accepted, 1, true)
	// A refused Begin issues no fence and leaves the lock alone.
	if err := s.Extend(c, l, LockTTL); err != nil {
		t.Fatalf("Extend after refused Begins: %v", err)
	}
	if err := s.Unlock(c, l); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	if l2 := begin(t, c, s, k, lock(LockTTL)); l2.Fence != 2 {
		t.Fatalf("Begin after Unlock: fence %d, want 2", l2.Fence)
	}
}

// checkLost checks that every use of a lost lease fails with ErrLockLost.
func checkLost(t *testing.T, s dedupe.Store, l dedupe.Lease) {
	t.Helper()
	c := ctx(t)
	if err := s.Extend(c, l, LockTTL); !errors.Is(err, dedupe.ErrLockLost) {
		t.Fatalf("Extend(lost lease fence %d) = %v, want ErrLockLost", l.Fence, err)
	}
	if err := s.Finish(c, l); !errors.Is(err, dedupe.ErrLockLost) {
		t.Fatalf("Finish(lost lease fence %d) = %v, want ErrLockLost", l.Fence, err)
	}
	if err := s.Unlock(c, l); !errors.Is(err, dedupe.ErrLockLost) {
		t.Fatalf("Unlock(lost lease fence %d) = %v, want ErrLockLost", l.Fence, err)
	}
}

func testUnlockThenBegin(t *testing.T, newStore storeFunc) {
	s, c, k := newStore(t, Horizon), ctx(t), newKey(t)
	var prev dedupe.Lease
	for fence := int64(1); fence <= 5; fence++ {
		l := begin(t, c, s, k, lock(LockTTL))
		if l.Fence != fence {
			t.Fatalf("Begin %d: fence %d, want %d", fence, l.Fence, fence)
		}
		if l.Token == prev.Token {
			t.Fatalf("Begin %d: token %q reused", fence, l.Token)
		}
		if prev.Token != "" {
			checkLost(t, s, prev)
		}
		if err := s.Unlock(c, l); err != nil {
			t.Fatalf("Unlock %d: %v", fence, err)
		}
		// Unlock keeps the fence and does not mark done.
		want(t, c, s, k, Horizon, dedupe.Accepted, fence, false)
		checkLost(t, s, l)
		prev = l
	}
}

func testLockExpiry(t *testing.T, newStore storeFunc) {
	s, c, k := newStore(t, Horizon), ctx(t), newKey(t)
	claimOne(t, c, s, ownerA, k, dedupe.Absent)
	old := begin(t, c, s, k, lock(ShortLockTTL))

	// Another worker takes the lock once it expires.
	var next dedupe.Lease
	eventually(t, func() bool {
		l, err := s.Begin(c, k, lock(LockTTL))
		switch {
		case errors.Is(err, dedupe.ErrBusy):
			return false
		case err != nil:
			t.Fatalf("Begin while waiting for expiry: %v", err)
		}
		next = l
		return true
	}, "lock of %s (TTL %v) never expired", k, ShortLockTTL)
	if next.Fence <= old.Fence {
		t.Fatalf("fence after expiry %d, want more than %d", next.Fence, old.Fence)
	}
	if next.Token == old.Token {
		t.Fatalf("token %q reused after expiry", next.Token)
	}

	checkLost(t, s, old)
	// The stale holder's Finish did not mark the key done, nor touch the new lock.
	want(t, c, s, k, Horizon, dedupe.Accepted, next.Fence, true)
	beginErr(t, c, s, k, lock(LockTTL), dedupe.ErrBusy)
	if err := s.Finish(c, next); err != nil {
		t.Fatalf("Finish(new lease): %v", err)
	}
	want(t, c, s, k, Horizon, dedupe.Done, next.Fence, false)
}

func testLockExpiryWithoutNewHolder(t *testing.T, newStore storeFunc) {
	s, c, k := newStore(t, Horizon), ctx(t), newKey(t)
	old := begin(t, c, s, k, lock(ShortLockTTL))
	eventually(t, func() bool { return !lookup(t, c, s, k).Locked }, "lock of %s (TTL %v) never expired", k, ShortLockTTL)
	checkLost(t, s, old)
	want(t, c, s, k, Horizon, dedupe.Accepted, 1, false)
	if l := begin(t, c, s, k, lock(LockTTL)); l.Fence != 2 {
		t.Fatalf("Begin after expiry: fence %d, want 2", l.Fence)
	}
}

func testFinishThenDone(t *testing.T, newStore storeFunc) {
	s, c, k := newStore(t, Horizon), ctx(t), newKey(t)
	cl := claimOne(t, c, s, ownerA, k, dedupe.Absent)
	if err := s.Accept(c, []dedupe.Claim{cl}); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	l := begin(t, c, s, k, lock(LockTTL))
	if err := s.Finish(c, l); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	want(t, c, s, k, Horizon, dedupe.Done, 1, false)
	checkLost(t, s, l)
	want(t, c, s, k, Horizon, dedupe.Done, 1, false)

	beginErr(t, c, s, k, lock(LockTTL), dedupe.ErrDone)
	claimOne(t, c, s, ownerB, k, dedupe.Done)

	// A forced replay runs again, with a higher fence, and ends done again.
	forced := begin(t, c, s, k, dedupe.BeginOptions{TTL: LockTTL, Force: true})
	if forced.Fence != 2 {
		t.Fatalf("forced Begin: fence %d, want 2", forced.Fence)
	}
	if r := lookup(t, c, s, k); !r.Locked || r.Fence != 2 {
		t.Fatalf("during a forced run: %+v, want locked with fence 2", r)
	}
	beginErr(t, c, s, k, dedupe.BeginOptions{TTL: LockTTL, Force: true}, dedupe.ErrBusy)
	if err := s.Finish(c, forced); err != nil {
		t.Fatalf("Finish(forced): %v", err)
	}
	want(t, c, s, k, Horizon, dedupe.Done, 2, false)
	beginErr(t, c, s, k, lock(LockTTL), dedupe.ErrDone)
	if again := begin(t, c, s, k, dedupe.BeginOptions{TTL: LockTTL, Force: true}); again.Fence != 3 {
		t.Fatalf("second forced Begin: fence %d, want 3", again.Fence)
	}
}

func testBeginConcurrent(t *testing.T, newStore storeFunc) {
	s, c, k := newStore(t, Horizon), ctx(t), newKey(t)
	claimOne(t, c, s, ownerA, k, dedupe.Absent)
	const n = 32
	leases := make([]dedupe.Lease, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { leases[i], errs[i] = s.Begin(c, k, lock(LockTTL)) })
	}
	wg.Wait()
	var won []dedupe.Lease
	for i, err := range errs {
		switch {
		case err == nil:
			won = append(won, leases[i])
		case !errors.Is(err, dedupe.ErrBusy):
			t.Fatalf("Begin %d: %v, want a lease or ErrBusy", i, err)
		}
	}
	if len(won) != 1 {
		t.Fatalf("%d of %d concurrent Begins got a lease, want exactly 1: %+v", len(won), n, won)
	}
	if won[0].Fence != 1 {
		t.Fatalf("winning lease has fence %d, want 1", won[0].Fence)
	}
	want(t, c, s, k, Horizon, dedupe.Accepted, 1, true)
}

func testExtendKeepsLock(t *testing.T, newStore storeFunc) {
	s, c := newStore(t, Horizon), ctx(t)
	var k, clock string
	var l dedupe.Lease
	inTime(t, ShortLockTTL, func(start time.Time) bool {
		k, clock = newKey(t), newKey(t)
		// clock's lock, taken after k's with the same TTL, expires no earlier
		// than k's would have: it tells when k's original TTL has passed, in the
		// backend's own time.
		l = begin(t, c, s, k, lock(ShortLockTTL))
		begin(t, c, s, clock, lock(ShortLockTTL))
		err := s.Extend(c, l, LockTTL)
		if err != nil && late(start, ShortLockTTL) {
			return false
		}
		if err != nil {
			t.Fatalf("Extend: %v", err)
		}
		return true
	})
	eventually(t, func() bool { return !lookup(t, c, s, clock).Locked }, "control lock (TTL %v) never expired", ShortLockTTL)

	want(t, c, s, k, Horizon, dedupe.Accepted, 1, true)
	beginErr(t, c, s, k, lock(LockTTL), dedupe.ErrBusy)
	if err := s.Extend(c, l, LockTTL); err != nil {
		t.Fatalf("Extend again: %v", err)
	}
	if err := s.Finish(c, l); err != nil {
		t.Fatalf("Finish after Extend: %v", err)
	}
	want(t, c, s, k, Horizon, dedupe.Done, 1, false)
}

func testInvalidArguments(t *testing.T, newStore storeFunc) {
	s, c, k := newStore(t, Horizon), ctx(t), newKey(t)
	for _, ttl := range []time.Duration{0, -time.Second} {
		l, err := s.Begin(c, k, lock(ttl))
		if err == nil || errors.Is(err, dedupe.ErrBusy) || errors.Is(err, dedupe.ErrDone) {
			t.Fatalf("Begin(TTL %v) = %+v, %v; want an invalid-argument error", ttl, l, err)
		}
	}
	want(t, c, s, k, Horizon, dedupe.Absent, 0, false)

	l := begin(t, c, s, k, lock(LockTTL))
	if err := s.Extend(c, l, 0); err == nil || errors.Is(err, dedupe.ErrLockLost) {
		t.Fatalf("Extend(TTL 0) = %v, want an invalid-argument error", err)
	}
	// A zero lease holds nothing.
	for name, err := range map[string]error{
		"Extend": s.Extend(c, dedupe.Lease{Key: k}, LockTTL),
		"Finish": s.Finish(c, dedupe.Lease{Key: k}),
		"Unlock": s.Unlock(c, dedupe.Lease{Key: k}),
	} {
		if !errors.Is(err, dedupe.ErrLockLost) {
			t.Fatalf("%s(lease without token) = %v, want ErrLockLost", name, err)
		}
	}
	want(t, c, s, k, Horizon, dedupe.Accepted, 1, true)

	// The empty key is refused everywhere.
	if _, err := s.Claim(c, ownerA, []string{k, ""}); !errors.Is(err, dedupe.ErrInvalidKey) {
		t.Fatalf(`Claim(""): %v, want ErrInvalidKey`, err)
	}
	if _, err := s.Begin(c, "", lock(LockTTL)); !errors.Is(err, dedupe.ErrInvalidKey) {
		t.Fatalf(`Begin(""): %v, want ErrInvalidKey`, err)
	}
	if _, err := s.Lookup(c, ""); !errors.Is(err, dedupe.ErrInvalidKey) {
		t.Fatalf(`Lookup(""): %v, want ErrInvalidKey`, err)
	}
}

func testLookupAbsent(t *testing.T, newStore storeFunc) {
	s, c, k := newStore(t, Horizon), ctx(t), newKey(t)
	if r := lookup(t, c, s, k); r != (dedupe.Record{}) {
		t.Fatalf("Lookup(absent) = %+v, want the zero Record", r)
	}
}

func testPing(t *testing.T, newStore storeFunc) {
	if err := newStore(t, Horizon).Ping(ctx(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}
