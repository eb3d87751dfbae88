package worker

import (
	"bytes"
	"log/slog"
	"testing"
)

// TestEventLogWritesAsWith checks that a line written through eventLog reads
// exactly as one written through slog's own With, after a further With and
// inside a group, and that disabled levels are still filtered.
func TestEventLogWritesAsWith(t *testing.T) {
	write := func(lazy bool) string {
		var buf bytes.Buffer
		base := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{
			Level: slog.LevelInfo,
			ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey && len(groups) == 0 {
					return slog.Attr{}
				}
				return a
			},
		}))
		attrs := []slog.Attr{slog.String("key", "wa:k1"), slog.Uint64("seq", 7)}
		var log *slog.Logger
		if lazy {
			log = eventLog(base, attrs...)
		} else {
			log = base.With(attrs[0], attrs[1])
		}
		log = log.With(slog.Int64("fence", 3))
		log.Debug("hidden", slog.String("x", "y"))
		log.Warn("one", slog.String("reason", "busy"))
		log.WithGroup("g").Info("two", slog.Int("n", 1))
		return buf.String()
	}
	got, want := write(true), write(false)
	if got != want {
		t.Errorf("eventLog wrote\n%s\nslog's With wrote\n%s", got, want)
	}
	if !bytes.Contains([]byte(got), []byte(`"key":"wa:k1","seq":7,"fence":3,"reason":"busy"`)) {
		t.Errorf("line without the event's attributes in order: %s", got)
	}
}
