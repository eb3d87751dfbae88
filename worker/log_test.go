package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestMaskPhone(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"15550000001", "*******0001"},
		{"+15550000001", "********0001"},
		{"447700900123", "********0123"},
		{"123456789", "*****6789"}, // at most the last 4 digits, whatever the length
		{"12345678", "****5678"},
		{"12345", "*2345"},
		{"1234", "****"},
		{"", ""},
		{"ñandú-ñandú", "*******andú"}, // characters, not bytes
	} {
		if got := MaskPhone(tc.in); got != tc.want {
			t.Errorf("MaskPhone(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLogHandler(t *testing.T) {
	var buf bytes.Buffer
	h := NewLog(slog.New(slog.NewJSONHandler(&buf, nil)))
	ev := sampleEvent()
	ctx := WithRun(context.Background(), Run{Fence: 3, Delivery: 1})
	if err := h.Handle(ctx, ev); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	line := buf.String()
	if strings.Count(line, "\n") != 1 {
		t.Fatalf("want one line, got %q", line)
	}
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"key":   ev.Key,
		"kind":  "message",
		"from":  "*******0001",
		"fence": float64(3),
		"id":    ev.ID,
	} {
		if rec[k] != want {
			t.Errorf("%s = %v, want %v", k, rec[k], want)
		}
	}
	for _, secret := range []string{"15550000001", "secret body"} {
		if strings.Contains(line, secret) {
			t.Errorf("log line holds %q: %s", secret, line)
		}
	}
}

func TestLogZeroValue(t *testing.T) {
	var h Log
	if err := h.Handle(context.Background(), sampleEvent()); err != nil {
		t.Fatalf("zero Log: %v", err)
	}
}

// A real wamid is base64 of a record that starts with the counterpart's
// phone number ("HBgLMTU1NTAwMDAwMDEV…" holds 15550000001): logging it whole
// logs the number. The Log handler masks it like the sender.
func TestLogHandlerMasksWamid(t *testing.T) {
	var buf bytes.Buffer
	h := NewLog(slog.New(slog.NewJSONHandler(&buf, nil)))
	ev := sampleEvent()
	ev.ID = "wamid.HBgLMTU1NTAwMDAwMDEVAgASGBRGQUtFMDAwMDAwMDAwMDAwMDAwMwA="
	if err := h.Handle(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	line := buf.String()
	for _, leak := range []string{ev.ID, "MTU1NTAwMDAwMDE", "HBgLMTU1"} {
		if strings.Contains(line, leak) {
			t.Errorf("log line holds %q: %s", leak, line)
		}
	}
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	if id, _ := rec["id"].(string); !strings.HasPrefix(id, "wamid.") || !strings.HasSuffix(id, "MDAwMwA=") {
		t.Errorf("id = %q, want the wamid's prefix and tail for telling events apart", id)
	}
}
