package worker

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
)

// TestHandlerSpanIsChildOfMessageTrace: the handler runs in a consumer span
// whose parent is the trace context the ingress wrote into the message's
// headers.
func TestHandlerSpanIsChildOfMessageTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	e := newEnv(t, testStreams(), "")
	const (
		traceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
		publishSpan = "00f067aa0ba902b7"
	)
	var (
		mu   sync.Mutex
		seen trace.SpanContext
	)
	e.start(Config{}, HandlerFunc(func(ctx context.Context, ev messages.Event) error {
		mu.Lock()
		seen = trace.SpanContextFromContext(ctx)
		mu.Unlock()
		return nil
	}))
	ev := e.event()
	data, err := ev.Encode()
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(messages.Subject(ev))
	msg.Data = data
	msg.Header.Set(nats.MsgIdHdr, ev.Key)
	msg.Header.Set("traceparent", "00-"+traceID+"-"+publishSpan+"-01")
	if _, err := e.js.PublishMsg(e.ctx(), msg); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return len(rec.Ended()) > 0 }, "no handler span")

	s := rec.Ended()[0]
	mu.Lock()
	defer mu.Unlock()
	if s.Name() != "wagate.handle message" || s.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("span %q kind %v", s.Name(), s.SpanKind())
	}
	if s.SpanContext().TraceID().String() != traceID || s.Parent().SpanID().String() != publishSpan || !s.Parent().IsRemote() {
		t.Errorf("span trace %s parent %s (remote %t), want trace %s parent %s", s.SpanContext().TraceID(), s.Parent().SpanID(), s.Parent().IsRemote(), traceID, publishSpan)
	}
	if seen.SpanID() != s.SpanContext().SpanID() {
		t.Errorf("the handler's context carries span %s, want the handler span %s", seen.SpanID(), s.SpanContext().SpanID())
	}
	attrs := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		attrs[kv.Key] = kv.Value
	}
	if attrs["wagate.key"].AsString() != ev.Key || attrs["wagate.fence"].AsInt64() < 1 || attrs["wagate.delivery"].AsInt64() != 1 {
		t.Errorf("span attributes %v", s.Attributes())
	}
}
