package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/failpoint"
	"github.com/wagate/wagate/internal/redact"
	"github.com/wagate/wagate/messages"
)

// Outcomes of an event, the values of the "outcome" label of
// wagate_ingest_events_total.
const (
	outcomeAccepted    = "accepted"    // claimed, published, stored
	outcomeDuplicate   = "duplicate"   // already accepted or done (or twice in one body): not published
	outcomeRepublished = "republished" // claim pending elsewhere: published again with the same Nats-Msg-Id, stored
	outcomeBypassed    = "bypassed"    // the claim failed (FailOpen): published without a claim, stored
	outcomeRejected    = "rejected"    // not stored: the request is answered 503
)

// Answer is the JSON body of every answer to a webhook POST. Providers ignore
// it; it tells a person (or wagate send) what became of the events.
type Answer struct {
	// Events is the number of events in the body.
	Events int `json:"events"`
	// Accepted counts the events this request added to the stream
	// (published, or republished over a pending claim, or published without
	// a claim under FailOpen, and not dropped by JetStream as a duplicate).
	Accepted int `json:"accepted"`
	// Duplicates counts the events an earlier delivery had already stored:
	// found accepted or done at the claim, repeated within the body, or
	// published again and dropped by JetStream's duplicate window.
	Duplicates int `json:"duplicates"`
	// Error says why the request was refused; empty on 200.
	Error string `json:"error,omitempty"`
}

// appendJSON appends a's JSON encoding and a newline to b: what
// encoding/json's Encoder writes, without its reflection (every request's
// answer is one).
func (a Answer) appendJSON(b []byte) []byte {
	b = append(b, `{"events":`...)
	b = strconv.AppendInt(b, int64(a.Events), 10)
	b = append(b, `,"accepted":`...)
	b = strconv.AppendInt(b, int64(a.Accepted), 10)
	b = append(b, `,"duplicates":`...)
	b = strconv.AppendInt(b, int64(a.Duplicates), 10)
	if a.Error != "" {
		text, _ := json.Marshal(a.Error) // a string always marshals
		b = append(append(b, `,"error":`...), text...)
	}
	return append(b, "}\n"...)
}

// accept claims, publishes and accounts for the events of one request, and
// returns the answer: 200 when every event is stored (or a duplicate), 503
// otherwise. It runs to the end even if the provider hangs up, so that every
// claim it takes is accepted or released.
func (s *Server) accept(ctx context.Context, events []messages.Event) (int, Answer) {
	ans := Answer{Events: len(events)}
	ctx = context.WithoutCancel(ctx)
	_, req := s.requestOwner()
	// The request's logger is built on first use: most requests log nothing.
	var reqLog *slog.Logger
	log := func() *slog.Logger {
		if reqLog == nil {
			reqLog = s.log.With("req", req)
		}
		return reqLog
	}
	// Lines about single events are bounded per request (eventLog).
	evLog := &eventLog{base: s.log, log: log}
	defer evLog.close()

	for i := range events {
		if events[i].Fallback {
			s.metrics.fallback.WithLabelValues(string(events[i].Kind)).Inc()
			evLog.write(slog.LevelInfo, "ingest: fallback identity", func() []any { return eventAttrs(&events[i]) })
		}
	}

	// One claim per distinct key: an item repeated in one body is a duplicate.
	uniq := make([]*messages.Event, 0, len(events))
	keys := make([]string, 0, len(events))
	// A few keys are compared one by one; a map is made for more.
	var seen map[string]struct{}
	if len(events) > 8 {
		seen = make(map[string]struct{}, len(events))
	}
	for i := range events {
		ev := &events[i]
		var repeated bool
		if seen != nil {
			_, repeated = seen[ev.Key]
		} else {
			repeated = slices.Contains(keys, ev.Key)
		}
		if repeated {
			ans.Duplicates++
			s.count(ev, outcomeDuplicate)
			s.logDuplicate(log(), "ingest: duplicate in the same body", eventAttrs(ev)...)
			continue
		}
		if seen != nil {
			seen[ev.Key] = struct{}{}
		}
		uniq = append(uniq, ev)
		keys = append(keys, ev.Key)
	}

	// The claims go to the store with those of every request waiting now.
	claims, err := s.claim(keys)
	bypass := false
	if err != nil {
		if s.cfg.RedisPolicy == FailClosed || errors.Is(err, errStoreSlow) {
			// A store that answers a ping but not the claim in time is slow,
			// not down: fail-open would publish without dedupe for as long
			// as it stays slow. The provider retries.
			log().Warn("ingest: claim failed; refusing the request", "err", err, "events", len(uniq), "policy", s.cfg.RedisPolicy)
			for _, ev := range uniq {
				s.count(ev, outcomeRejected)
			}
			ans.Error = "dedupe store unavailable"
			return http.StatusServiceUnavailable, ans
		}
		log().Warn("ingest: claim failed; publishing without claims (fail-open)", "err", err, "events", len(uniq))
		bypass = true
	}

	// Decide what to publish.
	var (
		pub      []*messages.Event
		pubClaim []dedupe.Claim // parallel to pub; zero when bypassing
	)
	for i, ev := range uniq {
		if bypass {
			pub = append(pub, ev)
			pubClaim = append(pubClaim, dedupe.Claim{})
			continue
		}
		switch cl := claims[i]; cl.Prior {
		case dedupe.Accepted, dedupe.Done:
			ans.Duplicates++
			s.count(ev, outcomeDuplicate)
			s.logDuplicate(log(), "ingest: duplicate", append(eventAttrs(ev), "state", cl.Prior.String())...)
		default: // Absent, Pending
			pub = append(pub, ev)
			pubClaim = append(pubClaim, cl)
		}
	}
	if len(pub) == 0 {
		return http.StatusOK, ans
	}

	failpoint.Hit(failpoint.IngestAfterClaim)
	results := s.publishAll(ctx, pub)
	failpoint.Hit(failpoint.IngestAfterPubAck)

	var stored, release []dedupe.Claim
	failed := 0
	for i, ev := range pub {
		cl, r := pubClaim[i], results[i]
		if r.err != nil {
			failed++
			s.count(ev, outcomeRejected)
			if errors.Is(r.err, nats.ErrMaxPayload) {
				// Not transient: every retry of this webhook fails the same way.
				evLog.write(slog.LevelError, "ingest: event larger than the NATS server's max_payload; it cannot be stored until max_payload is raised",
					func() []any { return append(eventAttrs(ev), "err", r.err) })
			} else {
				evLog.write(slog.LevelWarn, "ingest: publish failed", func() []any { return append(eventAttrs(ev), "err", r.err) })
			}
			if !bypass && cl.Prior == dedupe.Absent {
				release = append(release, cl)
			}
			continue
		}
		if r.ack.Duplicate {
			ans.Duplicates++
		} else {
			ans.Accepted++
		}
		// The attributes are built only for a line that is written: the
		// common case, a new event stored, logs at debug level.
		attrs := func() []any {
			return append(eventAttrs(ev), "seq", r.ack.Sequence, "stream_duplicate", r.ack.Duplicate)
		}
		switch {
		case bypass:
			s.count(ev, outcomeBypassed)
			evLog.write(slog.LevelInfo, "ingest: stored without a claim", attrs)
		case cl.Prior == dedupe.Absent:
			s.count(ev, outcomeAccepted)
			stored = append(stored, cl)
			evLog.write(slog.LevelDebug, "ingest: stored", attrs)
		default:
			s.count(ev, outcomeRepublished)
			stored = append(stored, cl)
			evLog.write(slog.LevelInfo, "ingest: republished over a pending claim", attrs)
		}
	}

	if len(release) > 0 {
		if err := s.storeCall(ctx, func(ctx context.Context) error { return s.store.Release(ctx, release) }); err != nil {
			// The keys stay pending until the horizon; a retry republishes them.
			log().Error("ingest: release failed", "err", err, "keys", keysOf(release))
		}
	}
	if len(stored) > 0 {
		// The accepted mark is not on the ack path (G4: the answer waits for
		// the claim and the publish only), and goes to the store with the
		// next claim batch, or with the marks of every request answered
		// meanwhile. Were it lost, the keys would stay pending: a retry
		// publishes them again with the same Nats-Msg-Id, which JetStream
		// drops within its duplicate window, and a worker's done mark ends
		// the rest.
		s.markAccepted(stored, func(err error) {
			if err != nil {
				s.log.Warn("ingest: accept failed", "req", req, "err", err, "keys", keysOf(stored))
			}
		})
	}
	if failed > 0 {
		log().Warn("ingest: request refused: events not stored", "failed", failed, "events", len(events))
		ans.Error = fmt.Sprintf("%d of %d events not stored", failed, len(events))
		return http.StatusServiceUnavailable, ans
	}
	return http.StatusOK, ans
}

// storeCall runs f under Config.StoreTimeout.
func (s *Server) storeCall(ctx context.Context, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	return f(ctx)
}

// count counts one event's outcome.
func (s *Server) count(ev *messages.Event, outcome string) {
	s.metrics.event(ev.Kind, outcome).Inc()
}

// keysOf returns the keys of claims, for the logs.
func keysOf(claims []dedupe.Claim) []string {
	keys := make([]string, len(claims))
	for i, cl := range claims {
		keys[i] = cl.Key
	}
	return keys
}

// eventAttrs returns the log attributes of an event: its key first, and
// nothing that holds content or an unmasked phone number.
func eventAttrs(ev *messages.Event) []any {
	attrs := []any{"key", ev.Key, "provider", ev.Provider, "kind", string(ev.Kind), "account", ev.Account}
	if ev.Type != "" {
		attrs = append(attrs, "type", ev.Type)
	}
	if ev.Status != "" {
		attrs = append(attrs, "status", ev.Status)
	}
	if ev.From != "" {
		attrs = append(attrs, "from", redact.Phone(ev.From))
	}
	return attrs
}
