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
//     in one Claim call (one Redis pipeline), under one owner per batch;
//   - publishes: every event of a request is published without waiting
//     (PublishMsgAsync), then the request waits for its own PubAcks only;
//   - accepted marks: the stored claims of every request answered while the
//     previous Accept was on the wire go in the next Accept call.
//
// A batch leaves as soon as the previous one of its kind returns: nothing
// waits for a timer, so an idle ingress answers a lone request as fast as
// before. Each request still gets its own claims, its own PubAcks and its
// own answer: a request is answered 200 only after every one of its events
// has a PubAck (G1), and a request whose publishes fail releases only its
// own unstored claims. A failed Claim call fails every request of its batch
// alike (FailOpen publishes them without claims, FailClosed answers 503).

// maxClaimBatch bounds the keys of one Claim call that holds more than one
// request; a single request with more keys is claimed alone.
const maxClaimBatch = 4096

// commits holds the group commits of a Server.
type commits struct {
	claims *group.Committer[string, dedupe.Claim]
	marks  *group.Committer[dedupe.Claim, struct{}]

	asyncOnce sync.Once
	async     jetstream.JetStream // nil: publish through Server.publish
}

// newCommits returns the group commits of s.
func (s *Server) newCommits() *commits {
	return &commits{
		claims: group.New(maxClaimBatch, s.claimBatch),
		marks:  group.New(0, s.markBatch),
	}
}

// claimChunk is the most keys claimed in one store call: a larger batch (a
// request with many events) is claimed in several calls, each bounded by
// Config.StoreTimeout, so that a healthy store answers each one in time.
const claimChunk = 1000

// errStoreSlow is returned by claimBatch when the store did not answer a
// claim within Config.StoreTimeout but answers a ping: it is slow, not
// unreachable, and FailOpen does not apply.
var errStoreSlow = errors.New("ingest: dedupe store too slow for the claim")

// claimBatch claims keys, the keys of every request of one batch, under an
// owner of its own, in store calls of at most claimChunk keys, each bounded
// by Config.StoreTimeout, and checks the answers have one claim per key.
// When a call fails, the claims already taken are released (best effort) and
// the error returned; it wraps errStoreSlow when the call ran out of time
// and the store still answers a ping.
func (s *Server) claimBatch(keys []string) ([]dedupe.Claim, error) {
	owner, _ := s.requestOwner()
	claims := make([]dedupe.Claim, 0, len(keys))
	for len(claims) < len(keys) {
		part := keys[len(claims):min(len(keys), len(claims)+claimChunk)]
		got, err := s.claimOnce(owner, part)
		if err != nil {
			s.releaseTaken(claims)
			if timedOut(err) && s.storeCall(context.Background(), s.store.Ping) == nil {
				err = fmt.Errorf("%w: %w", errStoreSlow, err)
			}
			return nil, err
		}
		claims = append(claims, got...)
	}
	return claims, nil
}

// claimOnce claims keys in one store call bounded by Config.StoreTimeout,
// and checks the answer has one claim per key.
func (s *Server) claimOnce(owner string, keys []string) ([]dedupe.Claim, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
	defer cancel()
	start := time.Now()
	claims, err := s.store.Claim(ctx, owner, keys)
	s.metrics.claim.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, err
	}
	if len(claims) != len(keys) {
		return nil, fmt.Errorf("ingest: store answered %d claims for %d keys", len(claims), len(keys))
	}
	for i, cl := range claims {
		if cl.Key != keys[i] {
			return nil, fmt.Errorf("ingest: store answered claim %d for another key", i)
		}
	}
	return claims, nil
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
