package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/wagate/wagate/messages"
)

// PublishFunc publishes one event's message to JetStream and returns its
// PubAck. msg carries the subject, the encoded event and the headers
// Nats-Msg-Id (the dedupe key), Nats-Expected-Stream, Wagate-Provider,
// Wagate-Kind and Wagate-Received-At. It must return when ctx is done, and
// be safe for concurrent use.
type PublishFunc func(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error)

// maxInflight bounds the publishes of one request awaiting their PubAck.
const maxInflight = 256

// errNotConnected fails a publish at once while the NATS connection is down,
// instead of buffering it for a reconnection the request will not wait for.
var errNotConnected = errors.New("ingest: NATS not connected")

// publishJetStream is the default PublishFunc.
func (s *Server) publishJetStream(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
	if nc := s.js.Conn(); nc != nil && !nc.IsConnected() {
		return nil, fmt.Errorf("%w (%s)", errNotConnected, nc.Status())
	}
	return s.js.PublishMsg(ctx, msg)
}

// message returns the stream message of ev.
func (s *Server) message(ev *messages.Event) (*nats.Msg, error) {
	data, err := ev.Encode()
	if err != nil {
		return nil, err
	}
	// The header's values share one array, and its map is made at its size
	// (room left for the trace context): one allocation each, not one per
	// header.
	subject, conv := messages.Route(*ev)
	v := [...]string{ev.Key, s.cfg.Streams.Events, ev.Provider, string(ev.Kind), ev.ReceivedAt.UTC().Format(time.RFC3339Nano), conv}
	h := make(nats.Header, 8)
	h[jetstream.MsgIDHeader] = v[0:1:1]
	h[jetstream.ExpectedStreamHeader] = v[1:2:2]
	h[messages.HeaderProvider] = v[2:3:3]
	h[messages.HeaderKind] = v[3:4:4]
	h[messages.HeaderReceivedAt] = v[4:5:5]
	if conv != "_" {
		h[messages.HeaderConversation] = v[5:6:6]
	}
	return &nats.Msg{Subject: subject, Data: data, Header: h}, nil
}

// publishChunk is the number of events given one Config.PublishTimeout: a
// larger batch is given one more for each publishChunk events, so that a
// healthy JetStream stores a large batch in time.
const publishChunk = 1000

// publishAll publishes every event and waits for every PubAck, all within
// Config.PublishTimeout for each publishChunk events. It returns one result
// per event, in order.
//
// The events go out without a round trip each (PublishMsgAsync), on a
// JetStream context of the server's own on the connection of the one New
// was given; then publishAll waits for their PubAcks. With WithPublisher, or
// a JetStream without a connection, each event goes through the PublishFunc,
// concurrently (at most maxInflight at a time).
func (s *Server) publishAll(ctx context.Context, evs []*messages.Event) []published {
	chunks := time.Duration((len(evs) + publishChunk - 1) / publishChunk)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout*max(chunks, 1))
	defer cancel()
	if js := s.asyncJetStream(); js != nil {
		return s.publishAsync(ctx, js, evs)
	}
	res := make([]published, len(evs))
	sem := make(chan struct{}, maxInflight)
	var wg sync.WaitGroup
	for i, ev := range evs {
		msg, err := s.message(ev)
		if err != nil {
			res[i].err = err
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			res[i].err = ctx.Err()
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			start := time.Now()
			ack, err := s.publishOne(ctx, msg)
			s.metrics.publish.Observe(time.Since(start).Seconds())
			res[i] = published{ack: ack, err: err}
		})
	}
	wg.Wait()
	return res
}

// asyncJetStream returns the JetStream context of the asynchronous
// publishes, made on first use, or nil when events go through the
// PublishFunc (WithPublisher, or no connection).
func (s *Server) asyncJetStream() jetstream.JetStream {
	c := s.commits
	c.asyncOnce.Do(func() {
		nc := s.js.Conn()
		if s.wrapped || nc == nil {
			return
		}
		// A PubAck that never comes fails its publish after PublishTimeout
		// and frees its slot; a reconnection fails every pending one.
		js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(s.cfg.PublishTimeout))
		if err != nil {
			s.log.Warn("ingest: no asynchronous publisher; publishing one event at a time", "err", err)
			return
		}
		c.async = js
	})
	return c.async
}

// publishAsync publishes every event with PublishMsgAsync, then waits for
// each PubAck until ctx is done.
func (s *Server) publishAsync(ctx context.Context, js jetstream.JetStream, evs []*messages.Event) []published {
	res := make([]published, len(evs))
	if nc := js.Conn(); !nc.IsConnected() {
		err := fmt.Errorf("%w (%s)", errNotConnected, nc.Status())
		for i := range res {
			res[i].err = err
		}
		return res
	}
	futures := make([]jetstream.PubAckFuture, len(evs))
	spans := make([]trace.Span, len(evs))
	start := time.Now()
	// With too many PubAcks pending on the connection, wait for room as long
	// as ctx allows rather than fail at once.
	dl, _ := ctx.Deadline()
	stall := jetstream.WithStallWait(max(time.Until(dl), time.Millisecond))
	for i, ev := range evs {
		msg, err := s.message(ev)
		if err != nil {
			res[i].err = err
			continue
		}
		_, spans[i] = startPublishSpan(ctx, msg)
		if futures[i], err = js.PublishMsgAsync(msg, stall); err != nil {
			res[i].err = err
			endPublishSpan(spans[i], nil, err)
		}
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case ack := <-f.Ok():
			res[i].ack = ack
		case err := <-f.Err():
			res[i].err = err
		case <-ctx.Done():
			res[i].err = ctx.Err()
		}
		s.metrics.publish.Observe(time.Since(start).Seconds())
		endPublishSpan(spans[i], res[i].ack, res[i].err)
	}
	return res
}

// publishOne calls the publisher, turning a panic of a wrapped publisher
// (WithPublisher) into an error: it runs on a goroutine of its own, out of
// reach of the HTTP recovery.
func (s *Server) publishOne(ctx context.Context, msg *nats.Msg) (ack *jetstream.PubAck, err error) {
	defer func() {
		if r := recover(); r != nil {
			ack, err = nil, fmt.Errorf("ingest: publisher panicked: %v", r)
		}
	}()
	ack, err = s.publish(ctx, msg)
	if err == nil && ack == nil {
		err = errors.New("ingest: no PubAck")
	}
	return ack, err
}

// published is the result of one publish.
type published struct {
	ack *jetstream.PubAck // set when stored (Duplicate: it already was)
	err error             // set when not stored
}
