package ingest

import (
	"context"
	"log/slog"
)

// maxEventLines is the most lines one request writes with one message about
// its events (a fallback identity, a failed publish, an event stored
// without a claim, …); the rest are counted in one closing line, so that a
// body of thousands of events writes a few lines, not thousands. The
// metrics count every event.
const maxEventLines = 5

// eventLog writes one request's lines about its events, at most
// maxEventLines with each message. It is used by one request at a time.
type eventLog struct {
	base  *slog.Logger        // the server's logger, asked whether a level is enabled
	log   func() *slog.Logger // the request's logger, built on first use
	lines map[string]*eventLines
	order []string // the messages held back, in the order first seen
}

// eventLines counts the lines written with one message.
type eventLines struct {
	level slog.Level
	n     int
}

// write writes msg at level with the attributes attrs returns (called only
// for a line that is written), unless maxEventLines lines with msg were
// written already.
func (l *eventLog) write(level slog.Level, msg string, attrs func() []any) {
	if !l.base.Enabled(context.Background(), level) {
		return
	}
	if l.lines == nil {
		l.lines = make(map[string]*eventLines)
	}
	c := l.lines[msg]
	if c == nil {
		c = &eventLines{level: level}
		l.lines[msg] = c
	}
	c.n++
	if c.n > maxEventLines {
		if c.n == maxEventLines+1 {
			l.order = append(l.order, msg)
		}
		return
	}
	l.log().Log(context.Background(), level, msg, attrs()...)
}

// close writes, for each message whose lines were held back, one line
// saying how many events it was not written for ("more_events").
func (l *eventLog) close() {
	for _, msg := range l.order {
		c := l.lines[msg]
		l.log().Log(context.Background(), c.level, msg, "more_events", c.n-maxEventLines)
	}
}
