// Package group commits the work of concurrent callers together: a group
// commit, as a database writes the log records of every transaction waiting
// at a moment with one flush.
//
// A Committer runs one batch at a time. A caller whose items arrive while no
// batch is on the wire sends them at once, alone: no timer, no added delay
// when idle. Callers that arrive while a batch is on the wire queue up; when
// that batch returns, everything queued (up to Max items) leaves as the next
// batch. Under load batches grow to what arrived during one round trip, so
// the round trips per item fall as the load rises.
//
// No goroutine of its own runs: the caller whose batch is on the wire drives
// it, then hands the lead to the first caller still waiting, if any. A
// Committer is safe for concurrent use; its zero value is not usable (use
// New).
package group

import (
	"fmt"
	"sync"
)

// Committer commits the items of concurrent Do calls in batches. T is an
// item, R its result.
type Committer[T, R any] struct {
	commit func(items []T) ([]R, error)
	max    int

	mu    sync.Mutex
	queue []*call[T, R]
	busy  bool // a batch is on the wire, or a caller is about to send one
}

// call is one Do waiting for its results.
type call[T, R any] struct {
	items []T
	res   []R
	err   error
	lead  bool          // set before done is signalled: the caller sends the next batch
	done  chan struct{} // signalled once: results ready, or lead handed over
}

// New returns a Committer that sends each batch with commit. commit receives
// the items of every call in the batch, concatenated in call order, and
// returns one result per item in the same order, or an error, which every call
// of the batch receives. commit must bound its own wait (it runs without the
// callers' contexts: one caller giving up must not fail the others' items),
// and must not call Do on the same Committer.
//
// max bounds the items of one batch; a single call with more items than max
// is sent alone. max ≤ 0 means no bound.
func New[T, R any](max int, commit func(items []T) ([]R, error)) *Committer[T, R] {
	return &Committer[T, R]{commit: commit, max: max}
}

// Do commits items, together with those of the calls waiting at the same
// moment, and returns their results, one per item in order, or the error of
// their batch. It returns when its batch has been committed; it never waits
// for a timer. A call with no items returns nil, nil at once.
func (c *Committer[T, R]) Do(items []T) ([]R, error) {
	if len(items) == 0 {
		return nil, nil
	}
	me := &call[T, R]{items: items, done: make(chan struct{}, 1)}
	c.mu.Lock()
	c.queue = append(c.queue, me)
	if c.busy {
		c.mu.Unlock()
		<-me.done
		if !me.lead {
			return me.res, me.err
		}
	} else {
		c.busy = true
		c.mu.Unlock()
	}
	// me leads. It is first in the queue (the queue was empty, or the lead
	// was handed to its head), so the batch taken now holds it.
	batch := c.take()
	c.run(batch)
	for _, b := range batch[1:] {
		b.done <- struct{}{}
	}
	c.handOver()
	return me.res, me.err
}

// take removes the next batch from the queue: whole calls, up to max items,
// at least one call.
func (c *Committer[T, R]) take() []*call[T, R] {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, items := 0, 0
	for n < len(c.queue) {
		k := len(c.queue[n].items)
		if n > 0 && c.max > 0 && items+k > c.max {
			break
		}
		items += k
		n++
	}
	batch := make([]*call[T, R], n)
	copy(batch, c.queue[:n])
	rest := copy(c.queue, c.queue[n:])
	clear(c.queue[rest:])
	c.queue = c.queue[:rest]
	return batch
}

// handOver passes the lead to the first waiting call, or marks the
// Committer idle.
func (c *Committer[T, R]) handOver() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 {
		c.busy = false
		return
	}
	next := c.queue[0]
	next.lead = true
	next.done <- struct{}{}
}

// run commits one batch and hands each call its results.
func (c *Committer[T, R]) run(batch []*call[T, R]) {
	var items []T
	if len(batch) == 1 {
		items = batch[0].items
	} else {
		for _, b := range batch {
			items = append(items, b.items...)
		}
	}
	res, err := c.safeCommit(items)
	if err == nil && len(res) != len(items) {
		err = errCount{got: len(res), want: len(items)}
	}
	off := 0
	for _, b := range batch {
		if err != nil {
			b.err = err
			continue
		}
		b.res = res[off : off+len(b.items) : off+len(b.items)]
		off += len(b.items)
	}
}

// safeCommit calls commit, turning a panic into an error so that no caller
// waits for ever.
func (c *Committer[T, R]) safeCommit(items []T) (res []R, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, errPanic{r}
		}
	}()
	return c.commit(items)
}

// errCount is the error of a batch whose commit returned too few or too many
// results.
type errCount struct{ got, want int }

func (e errCount) Error() string {
	return fmt.Sprintf("group: commit returned %d results for %d items", e.got, e.want)
}

// errPanic is the error of a batch whose commit panicked.
type errPanic struct{ v any }

func (e errPanic) Error() string { return fmt.Sprintf("group: commit panicked: %v", e.v) }
