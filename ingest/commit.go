package ingest

import (
	"context"
	"fmt"
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

// claimBatch claims keys, the keys of every request of one batch, in one
// store call bounded by Config.StoreTimeout, under an owner of its own, and
// checks the answer has one claim per key.
func (s *Server) claimBatch(keys []string) ([]dedupe.Claim, error) {
	owner, _ := s.requestOwner()
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
