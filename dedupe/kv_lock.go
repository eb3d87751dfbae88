package dedupe

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The lock half of KV: Begin, Extend, Finish and Unlock. Every write is a
// compare-and-set on the revision last read; see KV for why the order of the
// writes keeps a stale holder from marking a key done.

// Begin takes key's lock for opts.TTL. It returns ErrDone if the key is
// done (unless opts.Force), else ErrBusy if another holder has the lock and
// it has not expired, else a Lease with a new random token and fencing
// number: one more than the last one issued for the key (1 for the first),
// written into the state as "a<fence>". A lock past its expiry is taken over.
// Begin works on an absent key (expired, or published without a claim) and
// creates its state; a forced Begin turns "d<fence>" into "a<fence+1>".
//
// It reads the state and creates the lock concurrently (one round trip), then
// writes the state by compare-and-set on the revision read (a second); a lock
// entry already there costs a read and a take-over write more. When the state
// turns out done, or its write fails, after the lock was taken, the lock is
// deleted again. Other errors are wrapped: ErrInvalidKey, a TTL that is not
// positive, a state value that is not a dedupe state, or JetStream's.
func (k *KV) Begin(ctx context.Context, key string, opts BeginOptions) (Lease, error) {
	name, err := kvName(key)
	if err != nil {
		return Lease{}, fmt.Errorf("dedupe: begin: %w", err)
	}
	if opts.TTL <= 0 {
		return Lease{}, fmt.Errorf("dedupe: begin %s: lock TTL %v is not positive", key, opts.TTL)
	}
	token := rand.Text()
	var (
		state   kvEntry
		lockRev uint64
		lockErr error
	)
	err = kvEach(2, func(i int) error {
		var err error
		if i == 0 {
			state, err = kvGet(ctx, k.states, name)
		} else {
			lockRev, lockErr = k.putLock(ctx, name, token, opts.TTL, 0)
		}
		return err
	})
	if err == nil && lockErr != nil && !kvIsConflict(lockErr) {
		err = lockErr
	}
	if err != nil {
		k.dropLock(ctx, name, lockRev)
		return Lease{}, fmt.Errorf("dedupe: begin %s: %w", key, err)
	}
	l := Lease{Key: key, Token: token}
	for attempt := 0; ; attempt++ {
		if attempt == kvMaxRetries {
			k.dropLock(ctx, name, lockRev)
			return Lease{}, fmt.Errorf("dedupe: begin %s: %w", key, errKVContention)
		}
		s, fence := Absent, int64(0)
		if state.rev != 0 {
			s, fence, err = parseKVValue(state.value)
			if err != nil {
				k.dropLock(ctx, name, lockRev)
				return Lease{}, fmt.Errorf("dedupe: begin %s: %w", key, err)
			}
		}
		if s == Done && !opts.Force {
			k.dropLock(ctx, name, lockRev)
			return Lease{}, ErrDone
		}
		if lockRev == 0 {
			lockRev, err = k.takeLock(ctx, name, token, opts.TTL)
			if err != nil {
				if !errors.Is(err, ErrBusy) {
					err = fmt.Errorf("dedupe: begin %s: %w", key, err)
				}
				return Lease{}, err
			}
		}
		l.Fence = fence + 1
		value := []byte(kvStateValue(Accepted, l.Fence))
		if state.rev == 0 {
			_, err = k.states.Create(ctx, name, value)
		} else {
			_, err = k.states.Update(ctx, name, value, state.rev)
		}
		if err == nil {
			return l, nil
		}
		if !kvIsConflict(err) {
			k.dropLock(ctx, name, lockRev)
			return Lease{}, fmt.Errorf("dedupe: begin %s: %w", key, err)
		}
		// The state moved (accepted, finished by the holder we took over
		// from, claimed again): read it and decide again.
		if state, err = kvGet(ctx, k.states, name); err != nil {
			k.dropLock(ctx, name, lockRev)
			return Lease{}, fmt.Errorf("dedupe: begin %s: %w", key, err)
		}
	}
}

// takeLock takes name's lock for token after a create found it there: it
// takes it over if it has expired, else returns ErrBusy. It returns the
// lock's revision.
func (k *KV) takeLock(ctx context.Context, name, token string, ttl time.Duration) (uint64, error) {
	for range kvMaxRetries {
		lk, err := kvGet(ctx, k.locks, name)
		if err != nil {
			return 0, err
		}
		if kvLockHeld(lk, time.Now()) {
			return 0, ErrBusy
		}
		rev, err := k.putLock(ctx, name, token, ttl, lk.rev)
		if err == nil {
			return rev, nil
		}
		if !kvIsConflict(err) {
			return 0, err
		}
	}
	return 0, errKVContention
}

// Extend sets the lock's expiry to ttl from now if l still holds it, it has
// not expired and l is not finished; else ErrLockLost. It reads the lock and
// the state concurrently (one round trip), then writes the lock by
// compare-and-set on its revision (a second). Reading the state lets an
// Extend that runs alongside Finish stop once the key is done, rather than
// keep the lock alive for the lease's next TTL. Other errors are wrapped:
// ErrInvalidKey, a ttl that is not positive, or JetStream's.
func (k *KV) Extend(ctx context.Context, l Lease, ttl time.Duration) error {
	name, err := kvName(l.Key)
	if err != nil {
		return fmt.Errorf("dedupe: extend: %w", err)
	}
	if ttl <= 0 {
		return fmt.Errorf("dedupe: extend %s: lock TTL %v is not positive", l.Key, ttl)
	}
	if l.Token == "" {
		return ErrLockLost
	}
	for range kvMaxRetries {
		state, lk, err := k.readBoth(ctx, name)
		if err != nil {
			return fmt.Errorf("dedupe: extend %s: %w", l.Key, err)
		}
		if !kvLockHeldBy(lk, l.Token, time.Now()) || kvFinished(state, l) {
			return ErrLockLost
		}
		_, err = k.putLock(ctx, name, l.Token, ttl, lk.rev)
		if err == nil {
			return nil
		}
		if !kvIsConflict(err) {
			return fmt.Errorf("dedupe: extend %s: %w", l.Key, err)
		}
	}
	return fmt.Errorf("dedupe: extend %s: %w", l.Key, errKVContention)
}

// Finish marks the key done and deletes the lock, if l still holds the lock
// and no later lease was issued; else it returns ErrLockLost and changes
// nothing. It reads the lock and the state concurrently (one round trip),
// writes "d<fence>" by compare-and-set on the state's revision (a second;
// when the revision moved it reads both again), then deletes the lock (a
// third). The state becomes "d<l.Fence>": while l holds the lock no higher
// fence can have been issued, and a state that is absent or not a dedupe
// state is written over. Other errors are wrapped: ErrInvalidKey or
// JetStream's.
func (k *KV) Finish(ctx context.Context, l Lease) error {
	name, err := kvName(l.Key)
	if err != nil {
		return fmt.Errorf("dedupe: finish: %w", err)
	}
	if l.Token == "" {
		return ErrLockLost
	}
	for range kvMaxRetries {
		state, lk, err := k.readBoth(ctx, name)
		if err != nil {
			return fmt.Errorf("dedupe: finish %s: %w", l.Key, err)
		}
		if !kvLockHeldBy(lk, l.Token, time.Now()) {
			return ErrLockLost
		}
		if state.rev != 0 {
			if _, f, err := parseKVValue(state.value); err == nil && f > l.Fence {
				// A later lease was issued: the lock expired and was
				// taken over after the read above.
				return ErrLockLost
			}
		}
		value := []byte(kvStateValue(Done, l.Fence))
		if state.rev == 0 {
			_, err = k.states.Create(ctx, name, value)
		} else {
			_, err = k.states.Update(ctx, name, value, state.rev)
		}
		if kvIsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("dedupe: finish %s: %w", l.Key, err)
		}
		// Done is written. A failure to delete the lock changes nothing that
		// matters: the next Begin sees done first, and the lock expires.
		k.deleteOwnLock(ctx, name, l.Token, lk.rev)
		return nil
	}
	return fmt.Errorf("dedupe: finish %s: %w", l.Key, errKVContention)
}

// Unlock deletes the lock without marking the key done, if l still holds it
// (a read, then a delete on its revision); else ErrLockLost. A lock of l's
// that has expired is deleted all the same, and reported as ErrLockLost. The
// state keeps its fencing number, so the next Begin gets a higher one. Other
// errors are wrapped: ErrInvalidKey or JetStream's.
func (k *KV) Unlock(ctx context.Context, l Lease) error {
	name, err := kvName(l.Key)
	if err != nil {
		return fmt.Errorf("dedupe: unlock: %w", err)
	}
	if l.Token == "" {
		return ErrLockLost
	}
	for range kvMaxRetries {
		lk, err := kvGet(ctx, k.locks, name)
		if err != nil {
			return fmt.Errorf("dedupe: unlock %s: %w", l.Key, err)
		}
		token, _, _ := parseKVLock(lk.value)
		if lk.rev == 0 || token != l.Token {
			return ErrLockLost
		}
		held := kvLockHeld(lk, time.Now())
		err = k.deleteLock(ctx, name, lk.rev)
		if kvIsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("dedupe: unlock %s: %w", l.Key, err)
		}
		if !held {
			return ErrLockLost
		}
		return nil
	}
	return fmt.Errorf("dedupe: unlock %s: %w", l.Key, errKVContention)
}

// kvFinished reports whether state says l's run is over: the key is done with
// l's fencing number or a later one.
func kvFinished(state kvEntry, l Lease) bool {
	if state.rev == 0 {
		return false
	}
	s, f, err := parseKVValue(state.value)
	return err == nil && s == Done && f >= l.Fence
}

// kvLockHeld reports whether lk is a lock that has not expired at now.
func kvLockHeld(lk kvEntry, now time.Time) bool {
	if lk.rev == 0 {
		return false
	}
	_, expiry, ok := parseKVLock(lk.value)
	return ok && now.UnixMilli() < expiry
}

// kvLockHeldBy reports whether lk is token's lock and has not expired at now.
func kvLockHeldBy(lk kvEntry, token string, now time.Time) bool {
	t, _, _ := parseKVLock(lk.value)
	return t == token && kvLockHeld(lk, now)
}

// putLock writes token's lock, expiring ttl from now, over revision rev of
// name's lock entry (0: only if there is none, or only a delete marker). It
// gives the entry a per-key TTL where the server supports one. It returns the
// new revision; a revision that moved is a conflict (kvIsConflict).
func (k *KV) putLock(ctx context.Context, name, token string, ttl time.Duration, rev uint64) (uint64, error) {
	value := []byte(kvLockValue(token, time.Now().Add(ttl)))
	switch {
	case rev == 0 && k.keyTTL:
		return k.locks.Create(ctx, name, value, jetstream.KeyTTL(kvServerTTL(ttl)))
	case rev == 0:
		return k.locks.Create(ctx, name, value)
	case !k.keyTTL:
		return k.locks.Update(ctx, name, value, rev)
	}
	// KeyValue.Update drops an entry's per-key TTL and takes no other, so
	// write the entry's message as Update does, with a TTL.
	m := nats.NewMsg(k.lockSubject + name)
	m.Data = value
	ack, err := k.js.PublishMsg(ctx, m,
		jetstream.WithExpectLastSequencePerSubject(rev),
		jetstream.WithMsgTTL(kvServerTTL(ttl)))
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// deleteLock deletes name's lock at revision rev. Where the server supports
// per-key TTLs the delete marker goes after kvMarkerTTL instead of staying for
// the horizon.
func (k *KV) deleteLock(ctx context.Context, name string, rev uint64) error {
	if k.keyTTL {
		return k.locks.Purge(ctx, name, jetstream.LastRevision(rev), jetstream.PurgeTTL(kvMarkerTTL))
	}
	return k.locks.Delete(ctx, name, jetstream.LastRevision(rev))
}

// deleteOwnLock deletes name's lock at revision rev, and again at its new
// revision while it still holds token (an Extend of the same lease may have
// moved it). Errors are dropped: the lock expires anyway.
func (k *KV) deleteOwnLock(ctx context.Context, name, token string, rev uint64) {
	for range kvMaxRetries {
		if err := k.deleteLock(ctx, name, rev); !kvIsConflict(err) {
			return
		}
		lk, err := kvGet(ctx, k.locks, name)
		if err != nil || lk.rev == 0 {
			return
		}
		if t, _, _ := parseKVLock(lk.value); t != token {
			return
		}
		rev = lk.rev
	}
}

// dropLock deletes a lock Begin took but will not return (rev 0: none),
// within a second even when ctx is done. On failure the lock expires.
func (k *KV) dropLock(ctx context.Context, name string, rev uint64) {
	if rev == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	_ = k.deleteLock(ctx, name, rev)
}

var _ Batch = (*KV)(nil)

// BeginBatch runs Begin for every key with all of them in flight together
// (at most 256 at once), so a batch waits about as long as one Begin: two
// round trips in the common case. JetStream key-value has no multi-key
// request, so each key still costs its own messages. It returns one Began per
// key, in order, each as Begin would answer it.
func (k *KV) BeginBatch(ctx context.Context, keys []string, opts BeginOptions) []Began {
	out := make([]Began, len(keys))
	_ = kvEach(len(keys), func(i int) error {
		out[i].Lease, out[i].Err = k.Begin(ctx, keys[i], opts)
		return nil
	})
	return out
}

// FinishBatch runs Finish for every lease with all of them in flight
// together (at most 256 at once): about three round trips for the batch. It
// returns one error per lease, in order, as Finish would.
func (k *KV) FinishBatch(ctx context.Context, leases []Lease) []error {
	out := make([]error, len(leases))
	_ = kvEach(len(leases), func(i int) error {
		out[i] = k.Finish(ctx, leases[i])
		return nil
	})
	return out
}
