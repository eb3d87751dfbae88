package dedupetest

import (
	"errors"
	"sync"
	"testing"

	"github.com/wagate/wagate/dedupe"
)

// The batch cases run through dedupe.BeginAll and dedupe.FinishAll: a
// backend that implements dedupe.Batch is held to the answers of Begin and
// Finish, item by item; one that does not is checked through the fallback.

// testBeginBatchMixedStates begins a batch holding keys in every state, an
// invalid key and a repeated key, and checks each answer is Begin's.
func testBeginBatchMixedStates(t *testing.T, newStore storeFunc) {
	s, c := newStore(t, Horizon), ctx(t)
	absent, pending, accepted, done, busy, twice := newKey(t), newKey(t), newKey(t), newKey(t), newKey(t), newKey(t)
	claimOne(t, c, s, ownerA, pending, dedupe.Absent)
	a := claimOne(t, c, s, ownerA, accepted, dedupe.Absent)
	if err := s.Accept(c, []dedupe.Claim{a}); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	d := begin(t, c, s, done, lock(LockTTL))
	if err := s.Finish(c, d); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	holder := begin(t, c, s, busy, lock(LockTTL))

	keys := []string{absent, pending, accepted, done, busy, "", twice, twice}
	got := dedupe.BeginAll(c, s, keys, lock(LockTTL))
	if len(got) != len(keys) {
		t.Fatalf("BeginAll: %d answers for %d keys", len(got), len(keys))
	}
	for i, k := range keys[:3] {
		if got[i].Err != nil || got[i].Lease.Key != k || got[i].Lease.Token == "" || got[i].Lease.Fence != 1 {
			t.Fatalf("BeginAll item %d (%s): %+v, want a lease with fence 1", i, k, got[i])
		}
		want(t, c, s, k, Horizon, dedupe.Accepted, 1, true)
	}
	if !errors.Is(got[3].Err, dedupe.ErrDone) {
		t.Fatalf("BeginAll on a done key: %v, want ErrDone", got[3].Err)
	}
	if !errors.Is(got[4].Err, dedupe.ErrBusy) {
		t.Fatalf("BeginAll on a locked key: %v, want ErrBusy", got[4].Err)
	}
	if !errors.Is(got[5].Err, dedupe.ErrInvalidKey) {
		t.Fatalf("BeginAll on an empty key: %v, want ErrInvalidKey", got[5].Err)
	}
	won := 0
	for _, b := range got[6:] {
		switch {
		case b.Err == nil:
			won++
		case !errors.Is(b.Err, dedupe.ErrBusy):
			t.Fatalf("BeginAll on a repeated key: %v, want a lease or ErrBusy", b.Err)
		}
	}
	if won != 1 {
		t.Fatalf("a key repeated in one batch got %d leases, want 1", won)
	}
	// The refused items changed nothing.
	want(t, c, s, done, Horizon, dedupe.Done, 1, false)
	if err := s.Extend(c, holder, LockTTL); err != nil {
		t.Fatalf("the holder's lock after a refused batch Begin: %v", err)
	}

	// FinishAll: each lease as Finish answers it; a lost one changes nothing.
	if err := s.Unlock(c, got[2].Lease); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	leases := []dedupe.Lease{got[0].Lease, got[1].Lease, got[2].Lease, {Key: busy, Token: "not-the-holder", Fence: 1}}
	errs := dedupe.FinishAll(c, s, leases)
	if len(errs) != len(leases) {
		t.Fatalf("FinishAll: %d answers for %d leases", len(errs), len(leases))
	}
	for i, k := range keys[:2] {
		if errs[i] != nil {
			t.Fatalf("FinishAll item %d: %v", i, errs[i])
		}
		want(t, c, s, k, Horizon, dedupe.Done, 1, false)
		beginErr(t, c, s, k, lock(LockTTL), dedupe.ErrDone)
	}
	for i := 2; i < 4; i++ {
		if !errors.Is(errs[i], dedupe.ErrLockLost) {
			t.Fatalf("FinishAll item %d (lock not held): %v, want ErrLockLost", i, errs[i])
		}
	}
	want(t, c, s, accepted, Horizon, dedupe.Accepted, 1, false)
	want(t, c, s, busy, Horizon, dedupe.Accepted, 1, true)
}

// testBeginBatchConcurrent runs overlapping batches from many callers, as
// several workers fetching the same redeliveries do, and checks each key is
// locked by one caller only, with fence 1, and finished once.
func testBeginBatchConcurrent(t *testing.T, newStore storeFunc) {
	s, c := newStore(t, Horizon), ctx(t)
	keys := newKeys(t, 20)
	const callers = 8
	got := make([][]dedupe.Began, callers)
	var wg sync.WaitGroup
	for i := range callers {
		// Each caller begins every key, in its own order.
		order := make([]string, len(keys))
		for j := range keys {
			order[j] = keys[(j+i*3)%len(keys)]
		}
		wg.Go(func() { got[i] = dedupe.BeginAll(c, s, order, lock(LockTTL)) })
	}
	wg.Wait()
	held := map[string]dedupe.Lease{}
	for i, answers := range got {
		for _, b := range answers {
			switch {
			case b.Err == nil:
				if prev, ok := held[b.Lease.Key]; ok {
					t.Fatalf("key %s locked twice at once: %+v and %+v (caller %d)", b.Lease.Key, prev, b.Lease, i)
				}
				if b.Lease.Fence != 1 {
					t.Fatalf("key %s: fence %d, want 1", b.Lease.Key, b.Lease.Fence)
				}
				held[b.Lease.Key] = b.Lease
			case !errors.Is(b.Err, dedupe.ErrBusy):
				t.Fatalf("caller %d: %v, want a lease or ErrBusy", i, b.Err)
			}
		}
	}
	if len(held) != len(keys) {
		t.Fatalf("%d of %d keys locked, want every one", len(held), len(keys))
	}
	// Finish them in concurrent batches; then no caller can begin any.
	var leases []dedupe.Lease
	for _, l := range held {
		leases = append(leases, l)
	}
	half := len(leases) / 2
	var errs [2][]error
	wg.Go(func() { errs[0] = dedupe.FinishAll(c, s, leases[:half]) })
	wg.Go(func() { errs[1] = dedupe.FinishAll(c, s, leases[half:]) })
	wg.Wait()
	for _, part := range errs {
		for _, err := range part {
			if err != nil {
				t.Fatalf("FinishAll: %v", err)
			}
		}
	}
	for _, b := range dedupe.BeginAll(c, s, keys, lock(LockTTL)) {
		if !errors.Is(b.Err, dedupe.ErrDone) {
			t.Fatalf("BeginAll after the batch finish: %v, want ErrDone", b.Err)
		}
	}
}
