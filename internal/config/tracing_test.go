package config

import (
	"strings"
	"testing"
)

func TestTracingMode(t *testing.T) {
	for _, c := range []struct {
		otel, endpoint, want string
	}{
		{"", "", "off"},
		{"", "http://collector:4318", "otlp"},
		{"off", "http://collector:4318", "off"},
		{"stdout", "", "stdout"},
		{"otlp", "", "otlp"},
	} {
		if got := (Config{OTel: c.otel, OTLPEndpoint: c.endpoint}).TracingMode(); got != c.want {
			t.Errorf("OTel %q endpoint %q: %q, want %q", c.otel, c.endpoint, got, c.want)
		}
	}
}

func TestLoadTracing(t *testing.T) {
	t.Setenv(EnvOTLPEndpoint, "http://collector:4318")
	t.Setenv(EnvOTLPTracesEndpoint, "")
	t.Setenv("WAGATE_OTEL", "")
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.OTLPEndpoint != "http://collector:4318" || c.TracingMode() != "otlp" {
		t.Errorf("endpoint %q mode %q", c.OTLPEndpoint, c.TracingMode())
	}
	t.Setenv(EnvOTLPTracesEndpoint, "http://traces:4318/v1/traces")
	if c, err = Load(); err != nil || c.OTLPEndpoint != "http://traces:4318/v1/traces" {
		t.Errorf("traces endpoint: %q, %v", c.OTLPEndpoint, err)
	}
	t.Setenv("WAGATE_OTEL", "jaeger")
	if _, err := Load(); err == nil || !strings.Contains(err.Error(), "WAGATE_OTEL") {
		t.Errorf("WAGATE_OTEL=jaeger: %v, want an error naming the variable", err)
	}
}
