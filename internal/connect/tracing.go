package connect

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/wagate/wagate/internal/config"
)

// tracingShutdownTimeout bounds the flush of the spans still buffered when a
// command stops.
const tracingShutdownTimeout = 5 * time.Second

// Tracing installs the global OpenTelemetry TracerProvider that c asks for
// (c.TracingMode): none for "off", an OTLP/HTTP exporter for "otlp"
// (configured by the standard OTEL_EXPORTER_OTLP_* variables), JSON lines on
// stdout for "stdout". Spans are batched; the sampler is the SDK's default
// (parent-based, always on), or OTEL_TRACES_SAMPLER. service is the
// service.name, unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say
// otherwise. The W3C trace context and baggage become the global propagator.
//
// It returns a stop function that flushes and shuts the exporter down,
// bounded by 5 s (a no-op when tracing is off), or an error when the
// exporter cannot be built. Call it once, before the process exits.
func Tracing(ctx context.Context, c config.Config, service string, log *slog.Logger) (stop func(), err error) {
	mode := c.TracingMode()
	var exp sdktrace.SpanExporter
	switch mode {
	case "off":
		return func() {}, nil
	case "stdout":
		exp, err = stdouttrace.New(stdouttrace.WithWriter(os.Stdout))
	case "otlp":
		exp, err = otlptracehttp.New(ctx)
	default:
		return nil, fmt.Errorf("connect: tracing: unknown exporter %q", mode)
	}
	if err != nil {
		return nil, fmt.Errorf("connect: tracing: %s exporter: %w", mode, err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(service)),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
	)
	if err != nil {
		// A partial resource is still usable.
		log.Warn("tracing: resource incomplete", "err", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing: export failed", "err", err) }))
	endpoint := c.OTLPEndpoint
	if u, err := url.Parse(endpoint); err == nil {
		endpoint = u.Redacted() // never log a password
	}
	log.Info("tracing on", "exporter", mode, "endpoint", endpoint, "service", service)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), tracingShutdownTimeout)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			log.Warn("tracing: shutdown", "err", err)
		}
	}, nil
}
