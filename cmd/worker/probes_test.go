package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/testenv"
)

// downStore is a dedupe store whose Ping fails with an error naming its
// address, as go-redis's does.
type downStore struct{ dedupe.Store }

func (downStore) Ping(context.Context) error {
	return errors.New("dial tcp 10.1.2.3:6379: connect: connection refused")
}

// /readyz names the failing dependency, never its address or error text;
// the log has them.
func TestReadyzNamesDependencyOnly(t *testing.T) {
	ns := testenv.StartNATS(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var logs bytes.Buffer
	h := probes(prometheus.NewRegistry(), nc, downStore{}, slog.New(slog.NewJSONHandler(&logs, nil)))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	body := rec.Body.String()
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(body, "dedupe store") {
		t.Fatalf("readyz with the store down: %d %q, want 503 naming the dedupe store", rec.Code, body)
	}
	for _, leak := range []string{"10.1.2.3", "6379", "refused", "dial"} {
		if strings.Contains(body, leak) {
			t.Errorf("readyz body %q holds %q", body, leak)
		}
	}
	if !strings.Contains(logs.String(), "10.1.2.3:6379") {
		t.Errorf("the log lacks the store's error: %s", logs.String())
	}
}
