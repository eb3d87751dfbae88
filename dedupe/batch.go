package dedupe

import (
	"context"
	"fmt"
	"sync"
)

// Batch is implemented by a Store that begins, and finishes, the runs of
// many keys in one round trip: the worker's group commit (design §2). A
// Store without it still works: BeginAll and FinishAll then call Begin and
// Finish once per key, all in flight together.
//
// A backend implementing Batch must give each item exactly the answer the
// single-key method would give for it (Begin, Finish), as if the items ran
// one after another in some order; the contract suite (dedupetest) checks
// both through BeginAll and FinishAll.
type Batch interface {
	// BeginBatch runs Begin(ctx, keys[i], opts) for every key and returns
	// one Began per key, in order. A failure of the whole call (the backend
	// unreachable) is every item's Err. Keys may repeat: at most one of
	// them gets the lock.
	BeginBatch(ctx context.Context, keys []string, opts BeginOptions) []Began
	// FinishBatch runs Finish(ctx, leases[i]) for every lease and returns
	// one error per lease, in order: nil, ErrLockLost, or the backend's
	// error (for a failure of the whole call, every item's).
	FinishBatch(ctx context.Context, leases []Lease) []error
}

// Began is one key's answer to BeginBatch: the Lease when Err is nil, else
// ErrDone, ErrBusy, or an error wrapping ErrInvalidKey or the backend's.
type Began struct {
	Lease Lease
	Err   error
}

// BeginAll begins the runs of keys in s: with one BeginBatch when s
// implements Batch, else with one Begin per key, all in flight together. It
// returns one Began per key, in order. It is safe for concurrent use when s
// is.
func BeginAll(ctx context.Context, s Store, keys []string, opts BeginOptions) []Began {
	if len(keys) == 0 {
		return nil
	}
	if b, ok := s.(Batch); ok {
		out := b.BeginBatch(ctx, keys, opts)
		if len(out) != len(keys) {
			return failAll[Began](len(keys), fmt.Errorf("dedupe: begin batch answered %d items for %d keys", len(out), len(keys)),
				func(err error) Began { return Began{Err: err} })
		}
		return out
	}
	out := make([]Began, len(keys))
	each(len(keys), func(i int) {
		out[i].Lease, out[i].Err = s.Begin(ctx, keys[i], opts)
	})
	return out
}

// FinishAll finishes the runs of leases in s: with one FinishBatch when s
// implements Batch, else with one Finish per lease, all in flight together.
// It returns one error per lease, in order (nil: marked done). It is safe for
// concurrent use when s is.
func FinishAll(ctx context.Context, s Store, leases []Lease) []error {
	if len(leases) == 0 {
		return nil
	}
	if b, ok := s.(Batch); ok {
		out := b.FinishBatch(ctx, leases)
		if len(out) != len(leases) {
			return failAll[error](len(leases), fmt.Errorf("dedupe: finish batch answered %d items for %d leases", len(out), len(leases)),
				func(err error) error { return err })
		}
		return out
	}
	out := make([]error, len(leases))
	each(len(leases), func(i int) { out[i] = s.Finish(ctx, leases[i]) })
	return out
}

// failAll returns n items, each the error err.
func failAll[T any](n int, err error, item func(error) T) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = item(err)
	}
	return out
}

// each runs fn(i) for every i in [0, n) concurrently, and waits.
func each(n int, fn func(i int)) {
	if n == 1 {
		fn(0)
		return
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { fn(i) })
	}
	wg.Wait()
}
