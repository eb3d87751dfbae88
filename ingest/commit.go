package ingest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/group"
)

// Group commit (design §2). Under concurrency the ingress shares its round
// trips between the requests waiting at a moment:
//
//   - claims: the keys of every request waiting for a claim go to the store
//     in one call (one Redis pipeline), under one owner per batch;
//   - publishes: every event of a request is published without waiting
//     (PublishMsgAsync), then the request waits for its own PubAcks only;
//   - accepted marks: the stored claims of a request answered while a claim
//     batch is on the wire ride with the next claim batch
//     (dedupe.ClaimAndAccept: one pipeline on Redis), or alone if no claim
//     waits when that batch returns; with no claim batch on the wire they
//     go with the marks of every request answered while the previous
//     Accept was on the wire, in the next Accept call.
//
// A batch leaves as soon as the previous one of its kind returns: nothing
// waits for a timer, so an idle ingress answers a lone request as fast as
// before. Each request still gets its own claims, its own PubAcks and its
// own answer: a request is answered 200 only after every one of its events
// has a PubAck (G1), and a request whose publishes fail releases only its
// own unstored claims. A failed claim fails every request of its batch
// alike (FailOpen publishes them without claims, FailClosed answers 503); a
// failed accept of marks riding with it fails none of them.

// maxClaimBatch bounds the items (keys to claim, marks riding along) of one
// claim batch that holds more than one request; a single request with more
// keys is claimed alone.
const maxClaimBatch = 4096

// commits holds the group commits of a Server.
type commits struct {
	claims *group.Committer[storeOp, opResult]
	marks  *group.Committer[dedupe.Claim, struct{}]

	asyncOnce sync.Once
	async     jetstream.JetStream // nil: publish through Server.publish
}

// storeOp is one item of a claim batch: a key to claim, or a stored claim
// to mark accepted, riding along.
type storeOp struct {
	key    string       // the key to claim, unless accept
	mark   dedupe.Claim // the claim to mark accepted, when accept
	accept bool
}

// opResult is the result of one storeOp: the claim of its key, or the
// error of its part of the batch (the claim's, or the accept's).
type opResult struct {
	claim dedupe.Claim
	err   error
}

// newCommits returns the group commits of s.
func (s *Server) newCommits() *commits {
	return &commits{
		claims: group.New(maxClaimBatch, s.storeBatch),
		marks:  group.New(0, s.markBatch),
	}
}

// claim claims keys, one request's, in the next claim batch, and returns
// one claim per key, in order.
func (s *Server) claim(keys []string) ([]dedupe.Claim, error) {
	ops := make([]storeOp, len(keys))
	for i, k := range keys {
		ops[i].key = k
	}
	res, err := s.commits.claims.Do(ops)
	if err != nil {
		return nil, err
	}
	claims := make([]dedupe.Claim, len(res))
	for i, r := range res {
		if r.err != nil {
			return nil, r.err
		}
		claims[i] = r.claim
	}
	return claims, nil
}

// markAccepted marks stored, one request's stored claims, accepted after
// the request is answered: riding with the next claim batch while one is on
// the wire, else with the next Accept call while one is on the wire, else
// in an Accept call of their own on a goroutine; s.marks and s.marking count
// it until done has received the error (called once).
func (s *Server) markAccepted(stored []dedupe.Claim, done func(error)) {
	s.marking.Add(1)
	s.marks.Add(1)
	finish := func(err error) {
		defer s.marks.Done()
		defer s.marking.Add(-1)
		done(err)
	}
	ops := make([]storeOp, len(stored))
	for i, cl := range stored {
		ops[i] = storeOp{mark: cl, accept: true}
	}
	rode := s.commits.claims.Ride(ops, func(res []opResult, err error) {
		for _, r := range res {
			if r.err != nil {
				err = r.err
				break
			}
		}
		finish(err)
	})
	if rode {
		return
	}
	// With an Accept call on the wire, the marks ride with the next one;
	// else they lead one, from a goroutine of their own.
	if s.commits.marks.Ride(stored, func(_ []struct{}, err error) { finish(err) }) {
		return
	}
	go func() {
		_, err := s.commits.marks.Do(stored)
		finish(err)
	}()
}

// claimChunk is the most keys claimed (or marks accepted) in one store
// call: a larger batch (a request with many events) is claimed in several
// calls, each bounded by Config.StoreTimeout, so that a healthy store
// answers each one in time.
const claimChunk = 1000

// errStoreSlow is returned by storeBatch when the store did not answer a
// claim within Config.StoreTimeout but answers a ping: it is slow, not
// unreachable, and FailOpen does not apply.
var errStoreSlow = errors.New("ingest: dedupe store too slow for the claim")

// storeBatch claims the keys of ops, the keys of every request of one
// batch, under an owner of its own, and marks accepted the claims riding
// with them, in store calls of at most claimChunk keys and claimChunk marks
// each, bounded by Config.StoreTimeout, and checks the answers have one
// claim per key. When a claim call fails, the claims already taken are
// released (best effort), and every key's result is the error; it wraps
// errStoreSlow when the call ran out of time and the store still answers a
// ping. Marks left unsent get the same error.
func (s *Server) storeBatch(ops []storeOp) ([]opResult, error) {
	owner, _ := s.requestOwner()
	keys := make([]string, 0, len(ops))
	var marks []dedupe.Claim
	for _, op := range ops {
		if op.accept {
			marks = append(marks, op.mark)
		} else {
			keys = append(keys, op.key)
		}
	}
	claims := make([]dedupe.Claim, 0, len(keys))
	var claimErr, markErr error
	sent := 0 // marks sent
	for len(claims) < len(keys) || sent < len(marks) {
		part := keys[len(claims):min(len(keys), len(claims)+claimChunk)]
		m := marks[sent:min(len(marks), sent+claimChunk)]
		out := s.claimOnce(owner, part, m)
		sent += len(m)
		if out.AcceptErr != nil {
			markErr = out.AcceptErr
		}
		if err := out.ClaimErr; err != nil {
			s.releaseTaken(claims)
			if timedOut(err) && s.storeCall(context.Background(), s.store.Ping) == nil {
				err = fmt.Errorf("%w: %w", errStoreSlow, err)
			}
			claimErr = err
			if sent < len(marks) && markErr == nil {
				markErr = err
			}
			break
		}
		claims = append(claims, out.Claims...)
	}
	res := make([]opResult, len(ops))
	next := 0
	for i, op := range ops {
		switch {
		case op.accept:
			res[i].err = markErr
		case claimErr != nil:
			res[i].err = claimErr
		default:
			res[i].claim = claims[next]
			next++
		}
	}
	return res, nil
}

// claimOnce claims keys and marks the claims marks accepted in one store
// call bounded by Config.StoreTimeout, and checks the answer has one claim
// per key.
func (s *Server) claimOnce(owner string, keys []string, marks []dedupe.Claim) dedupe.ClaimAccepted {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
	defer cancel()
	start := time.Now()
	out := dedupe.ClaimAndAccept(ctx, s.store, owner, keys, marks)
	if len(keys) == 0 {
		return out
	}
	s.metrics.claim.Observe(time.Since(start).Seconds())
	if out.ClaimErr != nil {
		return out
	}
	if len(out.Claims) != len(keys) {
		out.Claims, out.ClaimErr = nil, fmt.Errorf("ingest: store answered %d claims for %d keys", len(out.Claims), len(keys))
		return out
	}
	for i, cl := range out.Claims {
		if cl.Key != keys[i] {
			out.Claims, out.ClaimErr = nil, fmt.Errorf("ingest: store answered claim %d for another key", i)
			return out
		}
	}
	return out
}

// timedOut reports whether err is a deadline's: the context's, or a socket
// deadline set from it (go-redis applies the context's deadline to the
// connection, whose error is then a net timeout).
func timedOut(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

// releaseTaken releases the claims a batch took (prior state absent) when a
// later call of the batch failed. A failed release leaves the keys pending
// until the horizon: the provider's retry publishes them again with the same
// Nats-Msg-Id.
func (s *Server) releaseTaken(claims []dedupe.Claim) {
	var taken []dedupe.Claim
	for _, cl := range claims {
		if cl.Prior == dedupe.Absent {
			taken = append(taken, cl)
		}
	}
	for i := 0; i < len(taken); i += claimChunk {
		part := taken[i:min(len(taken), i+claimChunk)]
		if err := s.storeCall(context.Background(), func(ctx context.Context) error { return s.store.Release(ctx, part) }); err != nil {
			s.log.Warn("ingest: release after a failed claim failed", "err", err, "keys", len(taken))
			return
		}
	}
}

// markBatch moves the stored claims of every request of one batch to
// Accepted, in one store call bounded by Config.StoreTimeout.
func (s *Server) markBatch(claims []dedupe.Claim) ([]struct{}, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
	defer cancel()
	if err := s.store.Accept(ctx, claims); err != nil {
		return nil, err
	}
	return make([]struct{}, len(claims)), nil
}
