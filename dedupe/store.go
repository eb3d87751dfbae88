package dedupe

import (
	"context"
	"errors"
	"time"
)

// State is the state of a key.
type State uint8

// The states of a key.
const (
	Absent   State = iota // never seen, or expired
	Pending               // claimed by an ingress; publish in flight (or the claimer died)
	Accepted              // stored in JetStream
	Done                  // processed; final
)

// String returns the state's name: "absent", "pending", "accepted" or
// "done" ("invalid" for any other value).
func (s State) String() string {
	switch s {
	case Absent:
		return "absent"
	case Pending:
		return "pending"
	case Accepted:
		return "accepted"
	case Done:
		return "done"
	}
	return "invalid"
}

// Errors returned by Store methods. A duplicate is not an error: it is a Claim
// whose Prior is Accepted or Done.
var (
	// ErrDone is returned by Begin when the key is marked done.
	ErrDone = errors.New("dedupe: key is done")
	// ErrBusy is returned by Begin when another holder has the lock.
	ErrBusy = errors.New("dedupe: key is locked by another holder")
	// ErrLockLost is returned by Extend, Finish and Unlock when the lock has
	// expired or been taken by another holder.
	ErrLockLost = errors.New("dedupe: lock lost")
	// ErrInvalidKey is returned, wrapped, by every Store method given a key
	// the backend cannot store: an empty key, or a name the backend's rules
	// refuse (see each backend). Keys made by messages.KeyOf are always valid.
	ErrInvalidKey = errors.New("dedupe: invalid key")
)

// Claim is the answer to claiming one key.
type Claim struct {
	// Key is the claimed key.
	Key string
	// Prior is the key's state before the claim. Absent means the caller now
	// holds the claim and must publish; Pending means another claim is in
	// flight or died and the caller should publish again with the same
	// Nats-Msg-Id; Accepted and Done are duplicates.
	Prior State
	// Token is the pending value the caller may Accept or Release: its own
	// when Prior is Absent, the observed one when Prior is Pending, else "".
	Token string
}

// Lease is a held lock on a key.
type Lease struct {
	// Key is the locked key.
	Key string
	// Token identifies this holder; only it can extend, finish or unlock.
	Token string
	// Fence is the fencing number: strictly greater than that of every
	// earlier lease on the same key (within the horizon).
	Fence int64
}

// BeginOptions configure Store.Begin.
type BeginOptions struct {
	// TTL is how long the lock lives unless extended. Required (> 0).
	TTL time.Duration
	// Force takes the lock even when the key is done (replay --force).
	Force bool
}

// Record is what a store knows of a key, for operators.
type Record struct {
	State State
	// Fence is the last fencing number issued for the key; 0 if none.
	Fence int64
	// Locked says whether a lock is held now.
	Locked bool
	// TTL is the remaining time before the key's state expires; 0 if absent.
	TTL time.Duration
	// Raw is the backend's stored value, for display.
	Raw string
}

// Store is the claim and lock state machine. Implementations must be safe for
// concurrent use; every method is one round trip to the backend.
type Store interface {
	// Claim claims every key at once (SET NX GET with the horizon as TTL),
	// writing a pending value that names owner. It returns one Claim per key,
	// in order.
	Claim(ctx context.Context, owner string, keys []string) ([]Claim, error)
	// Accept moves each claim's key to Accepted, only where the stored value
	// is still the claim's Token (never over Done). Claims with an empty
	// Token are skipped.
	Accept(ctx context.Context, claims []Claim) error
	// Release deletes each claim's key, only where the stored value is still
	// the claim's Token. Claims with an empty Token are skipped.
	Release(ctx context.Context, claims []Claim) error
	// Begin returns ErrDone if the key is done (unless opts.Force), ErrBusy if
	// another holder has the lock, else takes the lock with a new token and
	// fencing number.
	Begin(ctx context.Context, key string, opts BeginOptions) (Lease, error)
	// Extend resets the lock's TTL; ErrLockLost if it is no longer held.
	Extend(ctx context.Context, l Lease, ttl time.Duration) error
	// Finish marks the key done and releases the lock, only if the lock is
	// still held by l; else ErrLockLost and nothing changes.
	Finish(ctx context.Context, l Lease) error
	// Unlock releases the lock without marking done, only if still held by
	// l; else ErrLockLost.
	Unlock(ctx context.Context, l Lease) error
	// Lookup reports the key's state.
	Lookup(ctx context.Context, key string) (Record, error)
	// Ping checks the backend is reachable.
	Ping(ctx context.Context) error
}
