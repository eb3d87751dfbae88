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
// Items that need no answer before their caller moves on can ride along
// (Ride): while a batch is on the wire they join the next one, and their
// results reach a callback.
//
// No goroutine of its own runs, but for riders left alone: the caller whose
// batch is on the wire drives it, then hands the lead to the first caller
// still waiting, if any. A Committer is safe for concurrent use; its zero
// value is not usable (use New).
package group

import (
	"fmt"
	"slices"
	"sync"
)

// Committer commits the items of concurrent Do calls in batches. T is an
// item, R its result.
type Committer[T, R any] struct {
	commit func(items []T) ([]R, error)
	max    int

	mu     sync.Mutex
	queue  []*call[T, R]
	busy   bool           // a batch is on the wire, or a caller is about to send one
	riders sync.WaitGroup // goroutines sending riders alone
}

// call is one Do waiting for its results, or one Ride.
type call[T, R any] struct {
	items []T
	res   []R
	err   error
	lead  bool          // set before done is signalled: the caller sends the next batch
	done  chan struct{} // signalled once: results ready, or lead handed over; nil for a Ride
	ride  func([]R, error)
}

// finish hands a call its results.
func (b *call[T, R]) finish() {
	if b.done == nil {
		b.ride(b.res, b.err)
		return
	}
	b.done <- struct{}{}
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
	c.lead(me)
	return me.res, me.err
}

// Ride queues items to go with the next batch when a batch is on the wire,
// and returns true at once: done is called with the items' results (or
// their batch's error) when that batch returns. The next batch is sent by
// the first Do call waiting when the one on the wire returns; when none
// waits, the riders are sent alone by a goroutine of the Committer (Wait
// waits for it), which leaves the Committer idle for the next Do call
// meanwhile. With no batch on the wire, Ride queues nothing, does not call
// done, and returns false: the caller sends the items some other way, and
// an idle Committer stays idle. A Ride with no items returns false. Ride is
// safe for concurrent use; done must not call Do or Ride on the Committer.
func (c *Committer[T, R]) Ride(items []T, done func([]R, error)) bool {
	if len(items) == 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.busy {
		return false
	}
	c.queue = append(c.queue, &call[T, R]{items: items, ride: done})
	return true
}

// Wait waits until every batch of riders that a goroutine of the Committer
// sends (see Ride) has returned. Call it once no more Ride calls are made.
func (c *Committer[T, R]) Wait() { c.riders.Wait() }

// waits reports whether b is a Do call (not a Ride).
func waits[T, R any](b *call[T, R]) bool { return b.done != nil }

// lead sends batches, me's among them, then hands the lead over.
func (c *Committer[T, R]) lead(me *call[T, R]) {
	sent := false
	for {
		// The batch taken now holds me when me is first in the queue (the
		// queue was empty, or the lead was handed to its head); riders queued
		// before me may take a batch first.
		batch := c.take()
		c.run(batch)
		for _, b := range batch {
			if b == me {
				sent = true
				continue
			}
			b.finish()
		}
		if c.handOver(sent) {
			return
		}
	}
}

// take removes the next batch from the queue: whole calls, up to max items,
// at least one call.
func (c *Committer[T, R]) take() []*call[T, R] {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.fit(c.queue)
	batch := make([]*call[T, R], n)
	copy(batch, c.queue[:n])
	rest := copy(c.queue, c.queue[n:])
	clear(c.queue[rest:])
	c.queue = c.queue[:rest]
	return batch
}

// fit returns how many calls from the head of calls make one batch: whole
// calls, up to max items, at least one call.
func (c *Committer[T, R]) fit(calls []*call[T, R]) int {
	n, items := 0, 0
	for n < len(calls) {
		k := len(calls[n].items)
		if n > 0 && c.max > 0 && items+k > c.max {
			break
		}
		items += k
		n++
	}
	return n
}

// handOver passes the lead to the first waiting Do call, or marks the
// Committer idle, and reports true; it reports false when the caller must
// send the next batch itself: its own call is not sent yet. Riders with no
// Do call waiting leave the queue, and the Committer is idle again: a
// goroutine of the Committer sends them alone, so that they delay neither
// the caller nor the next Do call.
func (c *Committer[T, R]) handOver(sent bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !sent && len(c.queue) > 0 {
		return false
	}
	if i := slices.IndexFunc(c.queue, waits[T, R]); i >= 0 {
		next := c.queue[i]
		next.lead = true
		next.done <- struct{}{}
		return true
	}
	if riders := c.queue; len(riders) > 0 {
		c.queue = nil
		c.riders.Go(func() { c.sendAlone(riders) })
	}
	c.busy = false
	return true
}

// sendAlone sends riders in batches of whole calls, up to max items each.
func (c *Committer[T, R]) sendAlone(riders []*call[T, R]) {
	for len(riders) > 0 {
		n := c.fit(riders)
		c.run(riders[:n])
		for _, b := range riders[:n] {
			b.finish()
		}
		riders = riders[n:]
	}
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
