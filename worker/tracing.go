package worker

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/wagate/wagate/messages"
)

// Tracing: the ingress writes the W3C trace context (traceparent,
// tracestate) of its publish span into each event's NATS headers; the worker
// reads it back and runs the handler in a consumer span that is its child, so
// one trace runs from the webhook request to the handler. Spans go to the
// global OpenTelemetry TracerProvider: without one set (the default) they
// cost next to nothing and are not exported, but the trace context still
// passes through.

// tracerName names the worker's tracer.
const tracerName = "github.com/wagate/wagate/worker"

// propagator reads the W3C trace context, whatever global propagator the
// program set.
var propagator = propagation.TraceContext{}

// traceContext returns ctx carrying the remote trace context found in h, if
// any. ctx's deadline and cancellation are kept.
func traceContext(ctx context.Context, h nats.Header) context.Context {
	if len(h) == 0 {
		return ctx
	}
	return propagator.Extract(ctx, messages.HeaderCarrier(h))
}

// startHandlerSpan starts the span of one handler run, a child of the trace
// context in ctx.
func startHandlerSpan(ctx context.Context, ev messages.Event) (context.Context, trace.Span) {
	attrs := []attribute.KeyValue{
		attribute.String("messaging.system", "nats"),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("wagate.key", ev.Key),
		attribute.String("wagate.provider", ev.Provider),
		attribute.String("wagate.kind", string(ev.Kind)),
	}
	if run, ok := RunFromContext(ctx); ok {
		attrs = append(attrs, attribute.Int64("wagate.fence", run.Fence), attribute.Int64("wagate.delivery", int64(run.Delivery)))
	}
	return otel.Tracer(tracerName).Start(ctx, "wagate.handle "+string(ev.Kind),
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
}

// endHandlerSpan ends span with the handler's result.
func endHandlerSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		span.SetAttributes(attribute.Bool("wagate.permanent", IsPermanent(err)))
	}
	span.End()
}
