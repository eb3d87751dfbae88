package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"log"
	"log/slog"
	"strings"
	"testing"
)

// Every record stays bounded, whatever its values: a key list of 100,000
// keys, a 3 MB error text, a 1 MB message.
func TestBoundedRecord(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(Bounded(slog.NewJSONHandler(&buf, nil)))
	keys := make([]string, 100_000)
	for i := range keys {
		keys[i] = "wa:0123456789abcdef0123456789ab"
	}
	big := strings.Repeat("x", 3<<20)
	l.With("pre", big).Warn(strings.Repeat("m", 1<<20), "keys", keys, "err", errors.New(big), "s", big,
		slog.Group("g", "inner", big), "bytes", []byte(big), "url", "https://u:pw@example.com/h?token=s3cret")
	line := buf.String()
	if strings.Count(line, "\n") != 1 {
		t.Fatalf("want one line, got %d", strings.Count(line, "\n"))
	}
	if len(line) > 16*MaxValue {
		t.Errorf("record is %d bytes, want at most %d", len(line), 16*MaxValue)
	}
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if s, _ := rec["keys"].(string); !strings.Contains(s, "…(99992 more)") {
		t.Errorf("keys = %.200v, want the first %d and a count of the rest", rec["keys"], MaxItems)
	}
	if strings.Contains(line, "pw@") || strings.Contains(line, "s3cret") {
		t.Errorf("URL credentials or query values in %s", line)
	}
}

// A short record passes unchanged.
func TestBoundedKeepsShortValues(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(Bounded(slog.NewJSONHandler(&buf, nil)))
	l.Info("hello", "n", 3, "keys", []string{"a", "b"}, "err", errors.New("boom"))
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["msg"] != "hello" || rec["n"] != 3.0 || rec["err"] != "boom" || len(rec["keys"].([]any)) != 2 {
		t.Errorf("record changed: %v", rec)
	}
}

// The standard logger (net/http's client writes "Unsolicited response…"
// there) writes one JSON record per line once Std is called.
func TestStdWritesRecords(t *testing.T) {
	oldDefault, oldFlags, oldPrefix := slog.Default(), log.Flags(), log.Prefix()
	t.Cleanup(func() {
		slog.SetDefault(oldDefault)
		log.SetFlags(oldFlags)
		log.SetPrefix(oldPrefix)
	})
	var buf bytes.Buffer
	Std(slog.New(Bounded(slog.NewJSONHandler(&buf, nil))))
	log.Printf("Unsolicited response received on idle HTTP channel starting with %q; err=%v", "HTTP/1.1 200 OK\r\n\r\n"+strings.Repeat("z", 5000), nil)
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1: %q", len(lines), buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("not a JSON record: %v: %q", err, lines[0])
	}
	if rec["level"] != "WARN" || !strings.HasPrefix(rec["msg"].(string), "Unsolicited response") {
		t.Errorf("record %v", rec)
	}
}

func TestSampler(t *testing.T) {
	s := NewSampler(5)
	allowed := 0
	for range 1000 {
		if ok, _ := s.Allow(); ok {
			allowed++
		}
	}
	// The burst, plus what the clock let through while the loop ran.
	if allowed < 5 || allowed > 50 {
		t.Errorf("%d of 1000 lines let through, want about the burst of 5", allowed)
	}
	if s.dropped.Load() != int64(1000-allowed) {
		t.Errorf("dropped %d, want %d", s.dropped.Load(), 1000-allowed)
	}
	none := NewSampler(-1)
	if ok, n := none.Allow(); !ok || n != 0 {
		t.Errorf("nil sampler: %v %d", ok, n)
	}
}
