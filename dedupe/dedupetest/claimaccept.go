package dedupetest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/wagate/wagate/dedupe"
)

// claimAndAccept runs dedupe.ClaimAndAccept and fails t on an error of
// either part.
func claimAndAccept(t *testing.T, s dedupe.Store, owner string, keys []string, accept []dedupe.Claim) []dedupe.Claim {
	t.Helper()
	out := dedupe.ClaimAndAccept(ctx(t), s, owner, keys, accept)
	if out.AcceptErr != nil || out.ClaimErr != nil {
		t.Fatalf("ClaimAndAccept(%d keys, %d accepts): accept %v, claim %v", len(keys), len(accept), out.AcceptErr, out.ClaimErr)
	}
	if len(out.Claims) != len(keys) {
		t.Fatalf("ClaimAndAccept: %d claims for %d keys", len(out.Claims), len(keys))
	}
	return out.Claims
}

// testClaimAndAcceptMixed accepts claims (own tokens, a wrong one) while it
// claims keys of every state, in one call, and checks each part answers as
// Accept and Claim alone would.
func testClaimAndAcceptMixed(t *testing.T, newStore storeFunc) {
	s, c := newStore(t, Horizon), ctx(t)
	mine := claim(t, c, s, ownerA, newKeys(t, 3)...)
	wrong := claimOne(t, c, s, ownerA, newKey(t), dedupe.Absent)
	accepted := claimOne(t, c, s, ownerA, newKey(t), dedupe.Absent)
	if err := s.Accept(c, []dedupe.Claim{accepted}); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	pending := claimOne(t, c, s, ownerA, newKey(t), dedupe.Absent)
	fresh := newKey(t)

	accept := append(mine[:len(mine):len(mine)], dedupe.Claim{Key: wrong.Key, Token: "p:" + ownerB + ":1"})
	got := claimAndAccept(t, s, ownerB, []string{fresh, accepted.Key, pending.Key}, accept)
	for i, want := range []dedupe.State{dedupe.Absent, dedupe.Accepted, dedupe.Pending} {
		if got[i].Prior != want {
			t.Errorf("claim %d: prior %v, want %v", i, got[i].Prior, want)
		}
	}
	checkToken(t, got[0])
	if got[2].Token != pending.Token {
		t.Errorf("claim of a pending key: token %q, want %q", got[2].Token, pending.Token)
	}
	for _, cl := range mine {
		want(t, c, s, cl.Key, Horizon, dedupe.Accepted, 0, false)
	}
	want(t, c, s, wrong.Key, Horizon, dedupe.Pending, 0, false)
	want(t, c, s, fresh, Horizon, dedupe.Pending, 0, false)

	// Either part alone.
	if got := claimAndAccept(t, s, ownerB, nil, got[:1]); len(got) != 0 {
		t.Errorf("accept only: %d claims, want none", len(got))
	}
	want(t, c, s, fresh, Horizon, dedupe.Accepted, 0, false)
	only := newKey(t)
	if got := claimAndAccept(t, s, ownerB, []string{only}, nil); got[0].Prior != dedupe.Absent {
		t.Errorf("claim only: prior %v, want absent", got[0].Prior)
	}

	// A key accepted and claimed in one call: a ClaimAccepter applies the
	// accept first; otherwise the claim may see either.
	both := claimOne(t, c, s, ownerA, newKey(t), dedupe.Absent)
	got = claimAndAccept(t, s, ownerB, []string{both.Key}, []dedupe.Claim{both})
	_, ordered := s.(dedupe.ClaimAccepter)
	if p := got[0].Prior; p != dedupe.Accepted && (ordered || p != dedupe.Pending) {
		t.Errorf("claim of a key accepted in the same call: prior %v (ClaimAccepter %v)", p, ordered)
	}
	want(t, c, s, both.Key, Horizon, dedupe.Accepted, 0, false)
}

// testClaimAndAcceptConcurrent runs many ingress batches at once, each
// accepting the claims of its previous one while it claims new keys, and
// checks every key is claimed once and ends accepted.
func testClaimAndAcceptConcurrent(t *testing.T, newStore storeFunc) {
	s := newStore(t, Horizon)
	const batches, rounds, size = 8, 5, 20
	claimed := make([][]dedupe.Claim, batches)
	var wg sync.WaitGroup
	for b := range batches {
		wg.Go(func() {
			var prev []dedupe.Claim
			for range rounds {
				keys := newKeys(t, size)
				out := dedupe.ClaimAndAccept(ctx(t), s, fmt.Sprintf("ingress-%d", b), keys, prev)
				if out.AcceptErr != nil || out.ClaimErr != nil || len(out.Claims) != size {
					t.Errorf("batch %d: accept %v, claim %v, %d claims", b, out.AcceptErr, out.ClaimErr, len(out.Claims))
					return
				}
				claimed[b] = append(claimed[b], out.Claims...)
				prev = out.Claims
			}
			if out := dedupe.ClaimAndAccept(ctx(t), s, "", nil, prev); out.AcceptErr != nil {
				t.Errorf("batch %d: last accept: %v", b, out.AcceptErr)
			}
		})
	}
	wg.Wait()
	c := ctx(t)
	for b, claims := range claimed {
		if len(claims) != rounds*size {
			t.Fatalf("batch %d: %d claims, want %d", b, len(claims), rounds*size)
		}
		for _, cl := range claims {
			if cl.Prior != dedupe.Absent {
				t.Fatalf("batch %d: fresh key %s claimed with prior %v", b, cl.Key, cl.Prior)
			}
			want(t, c, s, cl.Key, Horizon, dedupe.Accepted, 0, false)
		}
	}
}
