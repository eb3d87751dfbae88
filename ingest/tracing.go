package ingest

import (
	"context"
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/wagate/wagate/messages"
)

// Tracing: each webhook request runs in an OpenTelemetry server span
// ("POST /webhooks/whatsapp"), each event's publish in a producer span under
// it, and the publish span's W3C trace context (traceparent, tracestate) is
// written into the event's NATS headers, where the worker picks it up. Spans
// go to the global TracerProvider: without one set (the default) they are
// not recorded, and the headers carry the caller's trace context, if any.
// The probes (/healthz, /readyz, /metrics) are not traced.

// tracerName names the ingress's tracer.
const tracerName = "github.com/wagate/wagate/ingest"

// propagator writes and reads the W3C trace context, whatever global
// propagator the program set.
var propagator = propagation.TraceContext{}

// trace is the middleware that runs each webhook request in a server span,
// the child of the request's own traceparent header when it has one.
func (s *Server) trace(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		route := c.Path()
		switch route {
		case pathHealth, pathReady, pathMetric:
			return next(c)
		}
		if _, ok := s.routeSet[route]; !ok {
			route = routeOther
		}
		r := c.Request()
		ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := otel.Tracer(tracerName).Start(ctx, r.Method+" "+route,
			trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(
				attribute.String("http.request.method", r.Method),
				attribute.String("http.route", route),
				attribute.Int64("http.request.body.size", r.ContentLength),
			))
		defer span.End()
		c.SetRequest(r.WithContext(ctx))
		err := next(c)
		code := c.Response().Status
		if he, ok := errors.AsType[*echo.HTTPError](err); ok {
			code = he.Code
		} else if err != nil {
			code = http.StatusInternalServerError
		}
		span.SetAttributes(attribute.Int("http.response.status_code", code))
		if code >= http.StatusInternalServerError {
			span.SetStatus(codes.Error, http.StatusText(code))
		}
		return err
	}
}

// tracePublish wraps a PublishFunc: each publish runs in a producer span
// whose trace context is written into the message's headers.
func tracePublish(next PublishFunc) PublishFunc {
	return func(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
		ctx, span := startPublishSpan(ctx, msg)
		ack, err := next(ctx, msg)
		endPublishSpan(span, ack, err)
		return ack, err
	}
}

// startPublishSpan starts msg's producer span and writes its trace context
// into msg's headers.
func startPublishSpan(ctx context.Context, msg *nats.Msg) (context.Context, trace.Span) {
	ctx, span := otel.Tracer(tracerName).Start(ctx, "wagate.publish",
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", msg.Subject),
			attribute.String("wagate.key", msg.Header.Get(jetstream.MsgIDHeader)),
		))
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	propagator.Inject(ctx, messages.HeaderCarrier(msg.Header))
	return ctx, span
}

// endPublishSpan records a publish's PubAck or error on its span and ends it.
func endPublishSpan(span trace.Span, ack *jetstream.PubAck, err error) {
	switch {
	case err != nil:
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	case ack != nil:
		span.SetAttributes(attribute.Int64("wagate.stream_seq", int64(ack.Sequence)),
			attribute.Bool("wagate.stream_duplicate", ack.Duplicate))
	}
	span.End()
}
