package ingest

import (
	"bytes"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// recordSpans installs a global TracerProvider that records every ended span,
// until the test ends.
func recordSpans(t *testing.T) *tracetest.SpanRecorder {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	return rec
}

func attr(s sdktrace.ReadOnlySpan, k attribute.Key) attribute.Value {
	for _, kv := range s.Attributes() {
		if kv.Key == k {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// TestTraceContextInHeaders: the webhook request runs in a server span (the
// child of the caller's traceparent), each event's publish in a producer
// span under it, and each stored message carries its publish span's W3C
// trace context for the worker.
func TestTraceContextInHeaders(t *testing.T) {
	rec := recordSpans(t)
	e := newEnv(t, Config{})
	const (
		traceID    = "4bf92f3577b34da6a3ce929d0e0e4736"
		callerSpan = "00f067aa0ba902b7"
	)
	body := readTestdata(t, "status_and_message.json")
	req, err := http.NewRequest(http.MethodPost, e.http.URL+pathCloud, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(HeaderSignature, Sign(body, testSecret))
	req.Header.Set("traceparent", "00-"+traceID+"-"+callerSpan+"-01")
	if code, text := e.do(req); code != http.StatusOK {
		t.Fatalf("POST: %d %s", code, text)
	}
	if code, _ := e.get(pathHealth); code != http.StatusOK {
		t.Fatal("healthz")
	}

	var server sdktrace.ReadOnlySpan
	publish := map[string]sdktrace.ReadOnlySpan{} // by key
	for _, s := range rec.Ended() {
		switch s.SpanKind() {
		case trace.SpanKindServer:
			if server != nil {
				t.Errorf("two server spans: %s and %s (probes are not traced)", server.Name(), s.Name())
			}
			server = s
		case trace.SpanKindProducer:
			publish[attr(s, "wagate.key").AsString()] = s
		}
	}
	if server == nil {
		t.Fatal("no server span")
	}
	if server.Name() != "POST "+pathCloud || server.SpanContext().TraceID().String() != traceID ||
		server.Parent().SpanID().String() != callerSpan || attr(server, "http.response.status_code").AsInt64() != 200 {
		t.Errorf("server span %q trace %s parent %s status %v", server.Name(), server.SpanContext().TraceID(), server.Parent().SpanID(), attr(server, "http.response.status_code"))
	}
	msgs := e.stored()
	if len(msgs) < 2 || len(publish) != len(msgs) {
		t.Fatalf("%d stored messages, %d publish spans", len(msgs), len(publish))
	}
	for _, m := range msgs {
		p := publish[m.ev.Key]
		if p == nil {
			t.Errorf("no publish span for %s", m.ev.Key)
			continue
		}
		if p.Parent().SpanID() != server.SpanContext().SpanID() || p.SpanContext().TraceID().String() != traceID {
			t.Errorf("publish span of %s is not the request's child", m.ev.Key)
		}
		want := "00-" + traceID + "-" + p.SpanContext().SpanID().String() + "-01"
		if got := m.raw.Header.Get("traceparent"); got != want {
			t.Errorf("message %s: traceparent %q, want %q", m.ev.Key, got, want)
		}
	}
}
