package connect

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/wagate/wagate/internal/config"
)

func TestTracing(t *testing.T) {
	prev := otel.GetTracerProvider()
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	stop, err := Tracing(context.Background(), config.Config{}, "wagate-test", log)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if _, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider); ok {
		t.Fatal("tracing off installed an SDK TracerProvider")
	}

	stop, err = Tracing(context.Background(), config.Config{OTel: "stdout"}, "wagate-test", log)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider); !ok {
		t.Fatalf("stdout: global TracerProvider is %T", otel.GetTracerProvider())
	}
	_, span := otel.Tracer("test").Start(context.Background(), "probe")
	if !span.SpanContext().IsValid() || !span.SpanContext().IsSampled() {
		t.Errorf("span context %v: want a valid, sampled one", span.SpanContext())
	}
	span.End()
	stop()

	if _, err := Tracing(context.Background(), config.Config{OTel: "zipkin"}, "wagate-test", log); err == nil {
		t.Error("unknown exporter accepted")
	}
}
