package dedupe

import (
	"context"
	"fmt"
	"sync"
)

// ClaimAccepter is implemented by a Store that accepts earlier claims and
// claims new keys in one round trip: the ingress's group commit lets the
// accepted marks of the requests it answered ride with the claims of the
// requests waiting (design §2). A Store without it still works:
// ClaimAndAccept then calls Accept and Claim, both in flight together.
type ClaimAccepter interface {
	// ClaimAccept does what Accept(ctx, accept) and Claim(ctx, owner, keys)
	// do, in one round trip, and returns what each would have returned. A
	// key both accepted and claimed in one call is claimed after its accept
	// is applied.
	ClaimAccept(ctx context.Context, owner string, keys []string, accept []Claim) ClaimAccepted
}

// ClaimAccepted is the answer to ClaimAccept: Claim's claims (one per key,
// in order) and error, and Accept's error.
type ClaimAccepted struct {
	Claims    []Claim
	ClaimErr  error
	AcceptErr error
}

// ClaimAndAccept accepts the claims accept and claims keys for owner in s:
// with one ClaimAccept when s implements ClaimAccepter, else with Accept and
// Claim, both in flight together (a key both accepted and claimed may then
// be claimed before or after its accept: Pending or Accepted). Either list
// may be empty; its part then answers nil. It is safe for concurrent use
// when s is.
func ClaimAndAccept(ctx context.Context, s Store, owner string, keys []string, accept []Claim) ClaimAccepted {
	if len(keys) == 0 && len(accept) == 0 {
		return ClaimAccepted{}
	}
	if ca, ok := s.(ClaimAccepter); ok {
		out := ca.ClaimAccept(ctx, owner, keys, accept)
		if out.ClaimErr == nil && len(out.Claims) != len(keys) {
			out.Claims, out.ClaimErr = nil, fmt.Errorf("dedupe: claim-accept answered %d claims for %d keys", len(out.Claims), len(keys))
		}
		return out
	}
	var out ClaimAccepted
	var wg sync.WaitGroup
	if len(accept) > 0 {
		wg.Go(func() { out.AcceptErr = s.Accept(ctx, accept) })
	}
	if len(keys) > 0 {
		out.Claims, out.ClaimErr = s.Claim(ctx, owner, keys)
	}
	wg.Wait()
	return out
}
