package worker

import (
	"context"
	"log/slog"
	"slices"
)

// eventLog returns a Logger that writes base's lines with attrs added, like
// base.With(attrs...), but formats attrs only when a line is written.
// slog's built-in handlers format the attributes of With at once; the worker
// makes a Logger for every delivery and writes a line for few of them.
func eventLog(base *slog.Logger, attrs ...slog.Attr) *slog.Logger {
	return slog.New(&lazyAttrs{h: base.Handler(), attrs: attrs})
}

// lazyAttrs is a slog.Handler that hands its attributes to h when a record
// is handled (or a group is opened), not before.
type lazyAttrs struct {
	h     slog.Handler
	attrs []slog.Attr
}

func (l *lazyAttrs) Enabled(ctx context.Context, level slog.Level) bool {
	return l.h.Enabled(ctx, level)
}

func (l *lazyAttrs) Handle(ctx context.Context, r slog.Record) error {
	return l.h.WithAttrs(l.attrs).Handle(ctx, r)
}

func (l *lazyAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &lazyAttrs{h: l.h, attrs: append(slices.Clip(l.attrs), attrs...)}
}

func (l *lazyAttrs) WithGroup(name string) slog.Handler {
	return l.h.WithAttrs(l.attrs).WithGroup(name)
}
