package messages

import (
	"errors"
	"fmt"
	"time"
)

// ErrTooManyEvents is wrapped by the error of ParseMax for a body holding
// more events than allowed; the error is a *TooManyEventsError.
var ErrTooManyEvents = errors.New("messages: too many events")

// TooManyEventsError is ParseMax's error for a body holding more than Max
// events. It wraps ErrTooManyEvents.
type TooManyEventsError struct {
	// Max is the bound the body went past.
	Max int
}

// Error returns "messages: too many events: more than <Max> in one body".
func (e *TooManyEventsError) Error() string {
	return fmt.Sprintf("%v: more than %d in one body", ErrTooManyEvents, e.Max)
}

// Unwrap returns ErrTooManyEvents.
func (e *TooManyEventsError) Unwrap() error { return ErrTooManyEvents }

// errTooMany is what a parser given a bound panics with when it is about to
// make one event too many; ParseMax recovers it.
type errTooMany struct{}

// over panics with errTooMany when max > 0 and n events are already made.
func over(max, n int) {
	if max > 0 && n >= max {
		panic(errTooMany{})
	}
}

// boundedParsers are the providers' parsers that take a bound.
var boundedParsers = map[string]func(body []byte, receivedAt time.Time, max int) ([]Event, error){
	ProviderCloud:     parseCloud,
	ProviderWASender:  parseWASender,
	ProviderWAHA:      parseWAHA,
	ProviderEvolution: parseEvolution,
}

// ParseMax parses body as provider's parser does (see Parser), but stops as
// soon as it would make more than max events, with a *TooManyEventsError:
// a body that fans out into a huge number of events costs no more than max
// events' work and memory. max ≤ 0 means no bound. ok is false for a
// provider without a bounded parser (the caller then parses in full and
// counts). It is safe for concurrent use.
func ParseMax(provider string, body []byte, receivedAt time.Time, max int) (events []Event, ok bool, err error) {
	parse, ok := boundedParsers[provider]
	if !ok {
		return nil, false, nil
	}
	defer func() {
		if r := recover(); r != nil {
			if _, is := r.(errTooMany); !is {
				panic(r)
			}
			events, err = nil, &TooManyEventsError{Max: max}
		}
	}()
	if max < 0 {
		max = 0
	}
	events, err = parse(body, receivedAt, max)
	return events, true, err
}
