package dedupetest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/wagate/wagate/dedupe"
)

// Owners of the suite's claims: two ingress processes.
const (
	ownerA = "ingress-a"
	ownerB = "ingress-b"
)

func testClaimAbsentThenPending(t *testing.T, newStore storeFunc) {
	s, c, k := newStore(t, Horizon), ctx(t), newKey(t)
	first := claimOne(t, c, s, ownerA, k, dedupe.Absent)
	want(t, c, s, k, Horizon, dedupe.Pending, 0, false)

	// Another ingress sees the claim in flight and the token it can accept.
	second := claimOne(t, c, s, ownerB, k, dedupe.Pending)
	if second.Token != first.Token {
		t.Fatalf("second claim observed token %q, want the first claim's %q", second.Token, first.Token)
	}
	// The same owner again sees the same.
	third := claimOne(t, c, s, ownerA, k, dedupe.Pending)
	if third.Token != first.Token {
		t.Fatalf("third claim observed token %q, want %q", third.Token, first.Token)
	}
	// The republishing ingress accepts with the observed token.
	if err := s.Accept(c, []dedupe.Claim{second}); err != nil {
		t.Fatalf("Accept(observed token): %v", err)
	}
	claimOne(t, c, s, ownerA, k, dedupe.Accepted)
}

func testClaimEmpty(t *testing.T, newStore storeFunc) {
	s, c := newStore(t, Horizon), ctx(t)
	for _, keys := range [][]string{nil, {}} {
		got, err := s.Claim(c, ownerA, keys)
		if err != nil || len(got) != 0 {
			t.Fatalf("Claim(%#v) = %v, %v; want no claims, nil", keys, got, err)
		}
	}
	if err := s.Accept(c, nil); err != nil {
		t.Fatalf("Accept(nil): %v", err)
	}
	if err := s.Release(c, nil); err != nil {
		t.Fatalf("Release(nil): %v", err)
	}
	// Claims with an empty Token are skipped.
	k := newKey(t)
	skip := []dedupe.Claim{{Key: k, Prior: dedupe.Accepted}}
	if err := s.Accept(c, skip); err != nil {
		t.Fatalf("Accept(empty token): %v", err)
	}
	if err := s.Release(c, skip); err != nil {
		t.Fatalf("Release(empty token): %v", err)
	}
	want(t, c, s, k, Horizon, dedupe.Absent, 0, false)
}

func testAcceptThenAccepted(t *testing.T, newStore storeFunc) {
	s, c, k := newStore(t, Horizon), ctx(t), newKey(t)
	cl := claimOne(t, c, s, ownerA, k, dedupe.Absent)
	if err := s.Accept(c, []dedupe.Claim{cl}); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	want(t, c, s, k, Horizon, dedupe.Accepted, 0, false)
	claimOne(t, c, s, ownerB, k, dedupe.Accepted)
	// Accepting twice changes nothing.
	if err := s.Accept(c, []dedupe.Claim{cl}); err != nil {
		t.Fatalf("Accept again: %v", err)
	}
	want(t, c, s, k, Horizon, dedupe.Accepted, 0, false)
	// Releasing an accepted key changes nothing.
	if err := s.Release(c, []dedupe.Claim{cl}); err != nil {
		t.Fatalf("Release after Accept: %v", err)
	}
	claimOne(t, c, s, ownerB, k, dedupe.Accepted)
}

// foreignTokens returns tokens that are not key's: a real pending token of
// another key claimed by another owner, and junk.
func foreignTokens(t *testing.T, s dedupe.Store, key string) []dedupe.Claim {
	t.Helper()
	other := claimOne(t, ctx(t), s, ownerB, newKey(t), dedupe.Absent)
	return []dedupe.Claim{
		{Key: key, Prior: dedupe.Absent, Token: other.Token},
		{Key: key, Prior: dedupe.Absent, Token: "p:" + ownerB + ":1"},
		{Key: key, Prior: dedupe.Absent, Token: "bogus"},
		{Key: key, Prior: dedupe.Absent, Token: "d1"},
	}
}

func testAcceptWrongToken(t *testing.T, newStore storeFunc) {
	s, c, k := newStore(t, Horizon), ctx(t), newKey(t)
	cl := claimOne(t, c, s, ownerA, k, dedupe.Absent)
	for _, wrong := range foreignTokens(t, s, k) {
		if err := s.Accept(c, []dedupe.Claim{wrong}); err != nil {
			t.Fatalf("Accept(token %q): %v", wrong.Token, err)
		}
		want(t, c, s, k, Horizon, dedupe.Pending, 0, false)
		if got := claimOne(t, c, s, ownerB, k, dedupe.Pending); got.Token != cl.Token {
			t.Fatalf("after Accept(token %q): token %q, want %q", wrong.Token, got.Token, cl.Token)
		}
	}
	// Accepting an absent key does not create it.
	absent := newKey(t)
	if err := s.Accept(c, []dedupe.Claim{{Key: absent, Token: cl.Token}}); err != nil {
		t.Fatalf("Accept(absent key): %v", err)
	}
	want(t, c, s, absent, Horizon, dedupe.Absent, 0, false)
}

func testAcceptNeverOverDoneOrBegun(t *testing.T, newStore storeFunc) {
	s, c := newStore(t, Horizon), ctx(t)

	// Done: a late Accept or Release of the original claim changes nothing.
	done := newKey(t)
	cl := claimOne(t, c, s, ownerA, done, dedupe.Absent)
	l := begin(t, c, s, done, lock(LockTTL))
	if err := s.Finish(c, l); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if err := s.Accept(c, []dedupe.Claim{cl}); err != nil {
		t.Fatalf("Accept over done: %v", err)
	}
	want(t, c, s, done, Horizon, dedupe.Done, 1, false)
	if err := s.Release(c, []dedupe.Claim{cl}); err != nil {
		t.Fatalf("Release over done: %v", err)
	}
	want(t, c, s, done, Horizon, dedupe.Done, 1, false)
	claimOne(t, c, s, ownerB, done, dedupe.Done)

	// Begun from pending (the worker got the event before the PubAck came
	// back): Accept and Release keep the state, its fence and the lock.
	begun := newKey(t)
	cl = claimOne(t, c, s, ownerA, begun, dedupe.Absent)
	l = begin(t, c, s, begun, lock(LockTTL))
	if err := s.Accept(c, []dedupe.Claim{cl}); err != nil {
		t.Fatalf("Accept over begun: %v", err)
	}
	want(t, c, s, begun, Horizon, dedupe.Accepted, 1, true)
	if err := s.Release(c, []dedupe.Claim{cl}); err != nil {
		t.Fatalf("Release over begun: %v", err)
	}
	want(t, c, s, begun, Horizon, dedupe.Accepted, 1, true)
	if err := s.Unlock(c, l); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	if l2 := begin(t, c, s, begun, lock(LockTTL)); l2.Fence != 2 {
		t.Fatalf("Begin after Accept and Release over a begun key: fence %d, want 2", l2.Fence)
	}
}

func testReleaseOwnPendingOnly(t *testing.T, newStore storeFunc) {
	s, c, k := newStore(t, Horizon), ctx(t), newKey(t)
	cl := claimOne(t, c, s, ownerA, k, dedupe.Absent)
	for _, wrong := range foreignTokens(t, s, k) {
		if err := s.Release(c, []dedupe.Claim{wrong}); err != nil {
			t.Fatalf("Release(token %q): %v", wrong.Token, err)
		}
		if got := claimOne(t, c, s, ownerB, k, dedupe.Pending); got.Token != cl.Token {
			t.Fatalf("after Release(token %q): token %q, want %q", wrong.Token, got.Token, cl.Token)
		}
	}
	if err := s.Release(c, []dedupe.Claim{cl}); err != nil {
		t.Fatalf("Release: %v", err)
	}
	want(t, c, s, k, Horizon, dedupe.Absent, 0, false)
	// The provider's retry claims the key afresh.
	again := claimOne(t, c, s, ownerB, k, dedupe.Absent)
	// The old claim no longer releases it.
	if again.Token != cl.Token {
		if err := s.Release(c, []dedupe.Claim{cl}); err != nil {
			t.Fatalf("Release(stale): %v", err)
		}
		claimOne(t, c, s, ownerA, k, dedupe.Pending)
	}
	// Releasing an absent key is not an error.
	if err := s.Release(c, []dedupe.Claim{{Key: newKey(t), Token: cl.Token}}); err != nil {
		t.Fatalf("Release(absent key): %v", err)
	}
}

func testClaimBatch1000(t *testing.T, newStore storeFunc) {
	s, c := newStore(t, Horizon), ctx(t)
	keys := newKeys(t, 1000)
	first := claim(t, c, s, ownerA, keys...)
	for _, cl := range first {
		if cl.Prior != dedupe.Absent {
			t.Fatalf("first claim of %s: prior %v, want absent", cl.Key, cl.Prior)
		}
		checkToken(t, cl)
	}
	second := claim(t, c, s, ownerB, keys...)
	for i, cl := range second {
		if cl.Prior != dedupe.Pending || cl.Token != first[i].Token {
			t.Fatalf("second claim of %s: %v %q, want pending %q", cl.Key, cl.Prior, cl.Token, first[i].Token)
		}
	}
	// Accept every other key, release the rest.
	var accept, release []dedupe.Claim
	for i, cl := range first {
		if i%2 == 0 {
			accept = append(accept, cl)
		} else {
			release = append(release, cl)
		}
	}
	if err := s.Accept(c, accept); err != nil {
		t.Fatalf("Accept(%d): %v", len(accept), err)
	}
	if err := s.Release(c, release); err != nil {
		t.Fatalf("Release(%d): %v", len(release), err)
	}
	third := claim(t, c, s, ownerB, keys...)
	for i, cl := range third {
		wantPrior := dedupe.Accepted
		if i%2 == 1 {
			wantPrior = dedupe.Absent
		}
		if cl.Prior != wantPrior {
			t.Fatalf("third claim of key %d: prior %v, want %v", i, cl.Prior, wantPrior)
		}
		checkToken(t, cl)
	}
}

func testClaimBatchMixedStates(t *testing.T, newStore storeFunc) {
	s, c := newStore(t, Horizon), ctx(t)
	pending, accepted, done, locked := newKey(t), newKey(t), newKey(t), newKey(t)
	p := claimOne(t, c, s, ownerA, pending, dedupe.Absent)
	a := claimOne(t, c, s, ownerA, accepted, dedupe.Absent)
	if err := s.Accept(c, []dedupe.Claim{a}); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	l := begin(t, c, s, done, lock(LockTTL))
	if err := s.Finish(c, l); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	begin(t, c, s, locked, lock(LockTTL))

	absent1, absent2 := newKey(t), newKey(t)
	keys := []string{done, absent1, pending, accepted, locked, absent2, pending}
	wantPrior := []dedupe.State{dedupe.Done, dedupe.Absent, dedupe.Pending, dedupe.Accepted, dedupe.Accepted, dedupe.Absent, dedupe.Pending}
	got := claim(t, c, s, ownerB, keys...)
	for i, cl := range got {
		if cl.Prior != wantPrior[i] {
			t.Fatalf("claim %d (%s): prior %v, want %v", i, cl.Key, cl.Prior, wantPrior[i])
		}
		checkToken(t, cl)
		if cl.Prior == dedupe.Pending && cl.Token != p.Token {
			t.Fatalf("claim %d: token %q, want %q", i, cl.Token, p.Token)
		}
	}
	// The absent ones are now claimed.
	want(t, c, s, absent1, Horizon, dedupe.Pending, 0, false)
	want(t, c, s, absent2, Horizon, dedupe.Pending, 0, false)
}

func testClaimRepeatedKeyInBatch(t *testing.T, newStore storeFunc) {
	s, c, k := newStore(t, Horizon), ctx(t), newKey(t)
	got := claim(t, c, s, ownerA, k, k, k)
	checkOneWinner(t, got)
}

// checkOneWinner checks that exactly one of claims on one key found it absent
// and that every other one found it pending with the winner's token.
func checkOneWinner(t *testing.T, claims []dedupe.Claim) {
	t.Helper()
	winners := 0
	var token string
	for _, cl := range claims {
		checkToken(t, cl)
		if cl.Prior == dedupe.Absent {
			winners++
			token = cl.Token
		}
	}
	if winners != 1 {
		t.Fatalf("%d claims found the key absent, want exactly 1: %+v", winners, claims)
	}
	for _, cl := range claims {
		if cl.Prior != dedupe.Absent && (cl.Prior != dedupe.Pending || cl.Token != token) {
			t.Fatalf("claim %+v, want pending with the winner's token %q", cl, token)
		}
	}
}

func testClaimConcurrent(t *testing.T, newStore storeFunc) {
	s, c, k := newStore(t, Horizon), ctx(t), newKey(t)
	const n = 32
	claims := make([]dedupe.Claim, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			got, err := s.Claim(c, fmt.Sprintf("ingress-%d", i), []string{k})
			if err == nil && len(got) != 1 {
				err = fmt.Errorf("%d claims for one key", len(got))
			}
			if err != nil {
				errs[i] = err
				return
			}
			claims[i] = got[0]
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("claimer %d: %v", i, err)
		}
	}
	checkOneWinner(t, claims)
}

func testHorizon(t *testing.T, newStore storeFunc) {
	s, c := newStore(t, ShortHorizon), ctx(t)

	// A claim lives the horizon.
	claimed, r := written(t, c, s, ShortHorizon, func(k string) error {
		claimOne(t, c, s, ownerA, k, dedupe.Absent)
		return nil
	})
	wantRecord(t, claimed, r, ShortHorizon, dedupe.Pending, 0, false)
	// Done keeps the horizon as TTL; so does a state that Begin creates.
	done, r := written(t, c, s, ShortHorizon, func(k string) error {
		claimOne(t, c, s, ownerA, k, dedupe.Absent)
		return s.Finish(c, begin(t, c, s, k, lock(LockTTL)))
	})
	wantRecord(t, done, r, ShortHorizon, dedupe.Done, 1, false)
	begun, r := written(t, c, s, ShortLockTTL, func(k string) error {
		begin(t, c, s, k, lock(ShortLockTTL))
		return nil
	})
	wantRecord(t, begun, r, ShortHorizon, dedupe.Accepted, 1, true)

	for _, k := range []string{claimed, done, begun} {
		eventually(t, func() bool {
			return lookup(t, c, s, k).State == dedupe.Absent
		}, "key %s still present after the %v horizon", k, ShortHorizon)
	}
	want(t, c, s, claimed, ShortHorizon, dedupe.Absent, 0, false)
	claimOne(t, c, s, ownerB, claimed, dedupe.Absent)
	claimOne(t, c, s, ownerB, done, dedupe.Absent)
}
