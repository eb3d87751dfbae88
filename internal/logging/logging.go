// Package logging holds what every wagate process does to its log: each
// line is one bounded record in the configured format (Bounded), the
// standard library's and echo's loggers write through it (Std), and lines
// any outsider can cause are sampled (Sampler).
package logging

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"reflect"
	"unicode/utf8"

	"github.com/wagate/wagate/internal/redact"
)

// Bounds of one record, applied by Bounded.
const (
	// MaxValue is the most bytes of a message, a string value or an error's
	// text; the rest is cut and "…(N bytes cut)" added.
	MaxValue = 4096
	// MaxItems is the most items of a slice or array value that are written;
	// "…(N more)" stands for the rest.
	MaxItems = 8
	// maxDepth bounds the nesting of groups that is walked.
	maxDepth = 4
)

// Bounded returns a handler that passes every record to h with its size
// bounded: the message and every string value and error text at MaxValue
// bytes, every slice at MaxItems items, and with URLs in error texts and
// strings redacted (redact.Text). A record's size is then bounded by the
// number of attributes the code writes, never by what a request or a
// downstream sends.
func Bounded(h slog.Handler) slog.Handler { return bounded{h} }

type bounded struct{ h slog.Handler }

func (b bounded) Enabled(ctx context.Context, l slog.Level) bool { return b.h.Enabled(ctx, l) }

func (b bounded) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, cut(redact.Text(r.Message)), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(boundAttr(a, 0))
		return true
	})
	return b.h.Handle(ctx, out)
}

func (b bounded) WithAttrs(as []slog.Attr) slog.Handler {
	bs := make([]slog.Attr, len(as))
	for i, a := range as {
		bs[i] = boundAttr(a, 0)
	}
	return bounded{b.h.WithAttrs(bs)}
}

func (b bounded) WithGroup(name string) slog.Handler { return bounded{b.h.WithGroup(name)} }

// boundAttr returns a with its value bounded.
func boundAttr(a slog.Attr, depth int) slog.Attr {
	a.Value = boundValue(a.Value.Resolve(), depth)
	return a
}

func boundValue(v slog.Value, depth int) slog.Value {
	switch v.Kind() {
	case slog.KindString:
		return slog.StringValue(cut(redact.Text(v.String())))
	case slog.KindGroup:
		if depth >= maxDepth {
			return slog.StringValue("…(nested too deep)")
		}
		as := v.Group()
		out := make([]slog.Attr, len(as))
		for i, a := range as {
			out[i] = boundAttr(a, depth+1)
		}
		return slog.GroupValue(out...)
	case slog.KindAny:
		return boundAny(v.Any())
	}
	return v
}

// boundAny bounds a value of slog.KindAny: an error becomes its text, cut;
// a long slice or array its first MaxItems items; a []byte its text, cut.
func boundAny(x any) slog.Value {
	switch t := x.(type) {
	case nil:
		return slog.AnyValue(nil)
	case error:
		return slog.StringValue(cut(redact.Text(t.Error())))
	case []byte:
		return slog.StringValue(cut(string(t)))
	case fmt.Stringer:
		return slog.StringValue(cut(redact.Text(t.String())))
	}
	rv := reflect.ValueOf(x)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		n := rv.Len()
		if n <= MaxItems {
			if s := fmt.Sprint(x); len(s) > MaxValue {
				return slog.StringValue(cut(s))
			}
			return slog.AnyValue(x)
		}
		items := make([]any, 0, MaxItems+1)
		for i := range MaxItems {
			items = append(items, rv.Index(i).Interface())
		}
		items = append(items, fmt.Sprintf("…(%d more)", n-MaxItems))
		return slog.StringValue(cut(fmt.Sprint(items)))
	case reflect.Map, reflect.Struct, reflect.Pointer, reflect.Interface:
		if s := fmt.Sprint(x); len(s) > MaxValue {
			return slog.StringValue(cut(s))
		}
	}
	return slog.AnyValue(x)
}

// cut returns s cut to MaxValue bytes on a rune boundary, with a note of how
// much was cut.
func cut(s string) string {
	if len(s) <= MaxValue {
		return s
	}
	n := MaxValue
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + fmt.Sprintf("…(%d bytes cut)", len(s)-n)
}

// Std sends the standard library's log package (what net/http's client and
// servers write when they have no logger of their own, for example
// "Unsolicited response received on idle HTTP channel") through l at level
// Warn, as one record each, and makes l slog's default. Call it once, at
// the start of a process.
func Std(l *slog.Logger) {
	slog.SetDefault(l)
	log.SetFlags(0)
	log.SetPrefix("")
	slog.SetLogLoggerLevel(slog.LevelWarn)
}

// Writer returns an io.Writer that logs each Write through l at level as
// one record (its text the message), for libraries that take a writer
// (echo's logger).
func Writer(l *slog.Logger, level slog.Level) io.Writer {
	return slog.NewLogLogger(l.Handler(), level).Writer()
}

// Exit writes err as one Error record in the format WAGATE_LOG_FORMAT asks
// for ("text", else JSON), bounded like every other record, and exits with
// status 1: for a process that failed before (or after) its logger was
// configured, so that even its last line is a record.
func Exit(msg string, err error) {
	var h slog.Handler = slog.NewJSONHandler(os.Stderr, nil)
	if os.Getenv("WAGATE_LOG_FORMAT") == "text" {
		h = slog.NewTextHandler(os.Stderr, nil)
	}
	slog.New(Bounded(h)).Error(msg, "err", err)
	os.Exit(1)
}
