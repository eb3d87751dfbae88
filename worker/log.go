package worker

import (
	"context"
	"log/slog"
	"strings"

	"github.com/wagate/wagate/internal/redact"
	"github.com/wagate/wagate/messages"
)

// Log is a Handler that writes one structured line per event: its key,
// provider, kind, type, status, account, the provider's id masked (MaskID),
// the fencing number and delivery, and the sender masked to its last 4 digits (*******0001). It
// never writes the message body or the raw item. It always succeeds.
//
// The zero value logs to slog.Default() at level Info. Log is safe for
// concurrent use.
type Log struct {
	// Logger receives the lines. Default slog.Default().
	Logger *slog.Logger
	// Level of the lines. Default slog.LevelInfo (the zero value).
	Level slog.Level
}

var _ Handler = (*Log)(nil)

// NewLog returns a Log handler writing to logger at level Info (to
// slog.Default() when logger is nil).
func NewLog(logger *slog.Logger) *Log { return &Log{Logger: logger} }

// Handle logs ev and returns nil.
func (l *Log) Handle(ctx context.Context, ev messages.Event) error {
	logger := l.Logger
	if logger == nil {
		logger = slog.Default()
	}
	attrs := []slog.Attr{
		slog.String("key", ev.Key),
		slog.String("provider", ev.Provider),
		slog.String("kind", string(ev.Kind)),
		slog.String("account", ev.Account),
		slog.String("id", MaskID(ev.ID)),
		slog.String("from", MaskPhone(ev.From)),
	}
	if ev.Type != "" {
		attrs = append(attrs, slog.String("type", ev.Type))
	}
	if ev.Status != "" {
		attrs = append(attrs, slog.String("status", ev.Status))
	}
	if run, ok := RunFromContext(ctx); ok {
		attrs = append(attrs, slog.Int64("fence", run.Fence), slog.Uint64("delivery", run.Delivery))
	}
	logger.LogAttrs(ctx, l.Level, "wagate: event", attrs...)
	return nil
}

// MaskPhone hides all but the last 4 characters of a phone number (or any
// identifier) for logs: "15550000001" becomes "*******0001"; 4 characters
// or fewer are hidden whole; the empty string stays empty. It is the one
// rule every wagate process applies (the ingress and the worker alike).
func MaskPhone(s string) string { return redact.Phone(s) }

// maskIDTail is how many characters of a long id MaskID keeps.
const maskIDTail = 8

// MaskID hides the part of a provider id that may hold a phone number, for
// logs. A Cloud API wamid ("wamid.HBgLMTU1NTAw…") is base64 of a record that
// starts with the counterpart's phone number, so an id of the form
// <prefix>.<rest> with a rest of 16 characters or more keeps its prefix and
// the last 8 characters of the rest ("wamid.…MDAwMwA="); a shorter rest
// cannot hold a number and is kept. Any other id of 16 characters or more is
// cut the same way; shorter ones are kept. Lengths count characters.
func MaskID(id string) string {
	prefix, rest := "", id
	if i := strings.IndexByte(id, '.'); i > 0 && i < 16 {
		prefix, rest = id[:i+1], id[i+1:]
	}
	r := []rune(rest)
	if len(r) < 16 {
		return id
	}
	return prefix + "…" + string(r[len(r)-maskIDTail:])
}
