package dedupe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultKVBucket is the states bucket's name when KVOptions.Bucket is
// empty; locks live in DefaultKVBucket + "_lock".
const DefaultKVBucket = "wagate_dedupe"

// kvDefaultHorizon is the horizon when KVOptions.Horizon is zero.
const kvDefaultHorizon = DefaultHorizon

// KVOptions configure NewKV. The zero value is the documented default for
// every field.
type KVOptions struct {
	// Bucket names the bucket of states: JetStream key-value bucket Bucket
	// (stream "KV_"+Bucket). Locks live in a second bucket, Bucket+"_lock".
	// Letters, digits, '-' and '_' only. Default "wagate_dedupe".
	Bucket string
	// Horizon is how long a key's state is kept after its last write: the
	// buckets' TTL (stream MaxAge). At least 100 ms (the server's minimum
	// MaxAge). Zero or negative means DefaultHorizon.
	Horizon time.Duration
	// Replicas is the number of copies of each bucket: 1 for a single
	// server, 3 (or 5) for a cluster. Default 1; zero means the default.
	Replicas int
	// Storage is where the buckets keep their entries. The zero value,
	// jetstream.FileStorage, survives a server restart; MemoryStorage does
	// not (every state and lock is lost). Default FileStorage.
	Storage jetstream.StorageType
}

// withDefaults returns o with every zero field set to its default, or an
// error for a value out of range.
func (o KVOptions) withDefaults() (KVOptions, error) {
	if o.Bucket == "" {
		o.Bucket = DefaultKVBucket
	}
	if o.Horizon <= 0 {
		o.Horizon = kvDefaultHorizon
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	switch {
	case o.Horizon < 100*time.Millisecond:
		return o, fmt.Errorf("dedupe: kv horizon %v: want at least 100ms", o.Horizon)
	case o.Replicas < 0:
		return o, fmt.Errorf("dedupe: kv replicas %d: want 1 or more", o.Replicas)
	case o.Storage != jetstream.FileStorage && o.Storage != jetstream.MemoryStorage:
		return o, fmt.Errorf("dedupe: kv storage %v: want file or memory", o.Storage)
	}
	return o, nil
}

// KV is the Store on NATS JetStream key-value, for the one-process mode
// (wagate dev) and for deployments that want no Redis
// (WAGATE_DEDUPE_BACKEND=nats). It passes the same contract suite as Redis.
//
// # Layout
//
// A key's state lives in the states bucket (KVOptions.Bucket) under the
// key's KV name, with the values of the Redis backend:
//
//	p:<owner>:<unix ms>   Pending
//	a  or  a<fence>       Accepted; <fence> is the last fencing number issued
//	d  or  d<fence>       Done
//
// A run's lock lives in the locks bucket (Bucket+"_lock") under the same KV
// name, as long as it is held; its value is "<token>:<expiry unix ms>". The
// two buckets keep states and locks apart whatever the keys look like.
//
// A KV name allows only [-/_=.a-zA-Z0-9], with no empty dot-separated token,
// so keys are mapped (injectively) to KV names:
//
//	A-Z a-z 0-9 - _   kept
//	':'               '.' where it separates two non-empty tokens, else "=3A"
//	any other byte    '=' and its two upper-case hex digits ("." is "=2E")
//
// The dedupe key "wa:AbC-_9" (messages.KeyOf) is stored as "wa.AbC-_9", so
// the name an operator sees in `nats kv get wagate_dedupe wa.AbC-_9` is the
// key with one dot. Every non-empty key maps; only "" is ErrInvalidKey.
//
// # Expiry
//
// Both buckets expire entries Horizon after their last write (MaxAge): unlike
// Redis, which counts the horizon from the claim, each write (accept, begin,
// finish) starts the horizon again, so a state is kept Horizon after its last
// change. Lookup reports the time left on that count.
//
// A lock expires at the time written in its value, by the clock of the
// process that took or extended it; other processes compare it with their
// own clock, so the clocks of ingress and worker hosts must agree to well
// within a lock TTL (NTP does). A lock past its time is free even while its
// entry is still stored, and is taken over by compare-and-set on its
// revision. The server also removes it by itself, with a per-key TTL (Nats-TTL,
// rounded up to whole seconds), where it supports one: nats-server 2.11 or
// later. Older servers keep expired lock entries until the next Begin takes
// them over or the horizon passes; correctness does not depend on it.
//
// # Round trips and atomicity
//
// JetStream key-value has no multi-key transaction, so each method is a short
// sequence of reads and compare-and-set writes on revisions instead of one
// script. The fencing number lives in the state, and Begin writes the state
// after it takes the lock, so a holder whose lock expired and was taken over
// can no longer mark the key done: its Finish sees the lock gone, a higher
// fence, or a revision that moved, and reports ErrLockLost.
//
// Round trips: Claim one for the batch (every create published
// asynchronously, acks collected), one more for the keys that exist (their
// reads all in flight together); Accept and Release two per batch; Begin two
// (three or four when a lock entry is there); Extend and Unlock two; Finish
// three; Lookup and Ping one. Independent requests of one call go out
// together, so a call waits about one round trip per step, not per key.
//
// # Limits
//
// A lock lives at most Horizon: the locks bucket's MaxAge removes an entry
// Horizon after its last write, so use lock TTLs far below the horizon (they
// are seconds against days). Keys of more than a few hundred bytes make long
// subjects; a NATS subject, with the rest of the message's control line, must
// fit the server's max_control_line (4 KiB by default).
//
// # Durability
//
// A write is acknowledged only once the bucket's stream has stored it: in its
// files with FileStorage, and on a majority of Replicas in a cluster. So,
// unlike Redis without persistence, states survive a server restart (locks
// too, and their expiry keeps counting); the price is a higher latency per
// write than Redis. The server syncs its files to disk every sync_interval
// (2 min by default): a crash of the host (not of the server process) of a
// single-replica bucket can lose the writes of that interval, unless the
// server runs with sync_interval: always or the buckets have 3 replicas.
// With MemoryStorage a restart loses every state: a provider's retry of an
// event already processed is then processed again. While the server is down
// or has no JetStream leader for a bucket, every method fails with an error.
//
// # Errors and context
//
// Every method bounds its wait by ctx, or by the JetStream context's default
// timeout when ctx has no deadline. Errors from JetStream are wrapped with the
// operation ("dedupe: claim …: …") and never match ErrDone, ErrBusy or
// ErrLockLost, so a worker never takes an unreachable server for a done key.
//
// A KV is safe for concurrent use.
type KV struct {
	js jetstream.JetStream
	// claims is a JetStream context of KV's own on js's connection, for
	// Claim's asynchronous creates: its pending acks and async error handler
	// are apart from the caller's.
	claims  jetstream.JetStream
	states  jetstream.KeyValue
	locks   jetstream.KeyValue
	horizon time.Duration
	// stateSubject and lockSubject prefix a KV name to give the subject of
	// its writes in each bucket, for the writes made outside the KeyValue
	// API (see createAll and putLock).
	stateSubject, lockSubject string
	// keyTTL reports whether the locks bucket takes per-key TTLs.
	keyTTL bool
}

var _ Store = (*KV)(nil)

// kvMarkerTTL is how long the locks bucket keeps the marker the server leaves
// when it removes an expired lock, and how long an unlock's own marker stays.
const kvMarkerTTL = time.Second

// kvMaxInFlight bounds the requests one batch call keeps in flight.
const kvMaxInFlight = 256

// kvMaxRetries bounds the compare-and-set attempts of one call on one key.
const kvMaxRetries = 64

// NewKV creates the states and locks buckets on js, or updates them to opts,
// and returns a store on them. It may be called by every process at start-up,
// in any order. It returns an error when JetStream is unreachable, opts is
// out of range, or a live bucket cannot be updated to opts (for example its
// storage type differs). The returned KV is safe for concurrent use.
func NewKV(ctx context.Context, js jetstream.JetStream, opts KVOptions) (*KV, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	states, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      o.Bucket,
		Description: "wagate: dedupe state of each event key",
		History:     1,
		TTL:         o.Horizon,
		Storage:     o.Storage,
		Replicas:    o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("dedupe: kv bucket %s: %w", o.Bucket, err)
	}
	lockCfg := jetstream.KeyValueConfig{
		Bucket:         o.Bucket + "_lock",
		Description:    "wagate: worker locks on event keys",
		History:        1,
		TTL:            o.Horizon,
		Storage:        o.Storage,
		Replicas:       o.Replicas,
		LimitMarkerTTL: kvMarkerTTL,
	}
	keyTTL := true
	locks, err := js.CreateOrUpdateKeyValue(ctx, lockCfg)
	if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) {
		keyTTL = false
		lockCfg.LimitMarkerTTL = 0
		locks, err = js.CreateOrUpdateKeyValue(ctx, lockCfg)
	}
	if err != nil {
		return nil, fmt.Errorf("dedupe: kv bucket %s: %w", lockCfg.Bucket, err)
	}
	claims, err := ownContext(js)
	if err != nil {
		return nil, fmt.Errorf("dedupe: kv: %w", err)
	}
	pre := apiPrefix(js.Options())
	return &KV{
		js:           js,
		claims:       claims,
		states:       states,
		locks:        locks,
		horizon:      o.Horizon,
		stateSubject: pre + "$KV." + o.Bucket + ".",
		lockSubject:  pre + "$KV." + lockCfg.Bucket + ".",
		keyTTL:       keyTTL,
	}, nil
}

// OpenKV returns a store on the existing buckets named by opts.Bucket,
// without creating or changing them: the horizon is the live bucket's TTL,
// and opts.Horizon, Replicas and Storage are ignored. It is for tools that
// inspect a deployment (wagate key), which must not rewrite its buckets with
// their own configuration: NewKV would set the horizon of every process to
// the caller's, and a shorter one removes the states older than it at once.
// It returns an error wrapping jetstream.ErrBucketNotFound when a bucket does
// not exist, or JetStream's. The returned KV is safe for concurrent use.
func OpenKV(ctx context.Context, js jetstream.JetStream, opts KVOptions) (*KV, error) {
	bucket := opts.Bucket
	if bucket == "" {
		bucket = DefaultKVBucket
	}
	states, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("dedupe: kv bucket %s: %w", bucket, err)
	}
	locks, err := js.KeyValue(ctx, bucket+"_lock")
	if err != nil {
		return nil, fmt.Errorf("dedupe: kv bucket %s: %w", bucket+"_lock", err)
	}
	st, err := states.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("dedupe: kv bucket %s: %w", bucket, err)
	}
	lst, err := locks.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("dedupe: kv bucket %s: %w", bucket+"_lock", err)
	}
	horizon := st.TTL()
	if horizon <= 0 {
		horizon = kvDefaultHorizon
	}
	claims, err := ownContext(js)
	if err != nil {
		return nil, fmt.Errorf("dedupe: kv: %w", err)
	}
	pre := apiPrefix(js.Options())
	return &KV{
		js:           js,
		claims:       claims,
		states:       states,
		locks:        locks,
		horizon:      horizon,
		stateSubject: pre + "$KV." + bucket + ".",
		lockSubject:  pre + "$KV." + bucket + "_lock.",
		keyTTL:       lst.LimitMarkerTTL() > 0,
	}, nil
}

// ownContext returns a new JetStream context on js's connection, with js's
// domain or API prefix and default timeout.
func ownContext(js jetstream.JetStream) (jetstream.JetStream, error) {
	o := js.Options()
	var opts []jetstream.JetStreamOpt
	if o.DefaultTimeout > 0 {
		opts = append(opts, jetstream.WithDefaultTimeout(o.DefaultTimeout))
	}
	switch {
	case o.Domain != "":
		return jetstream.NewWithDomain(js.Conn(), o.Domain, opts...)
	case o.APIPrefix != "":
		return jetstream.NewWithAPIPrefix(js.Conn(), o.APIPrefix, opts...)
	}
	return jetstream.New(js.Conn(), opts...)
}

// apiPrefix returns what the jetstream package puts before "$KV." in the
// subject of a key-value write: nothing with the default API prefix, else
// the domain's or the custom API prefix.
func apiPrefix(o jetstream.JetStreamOptions) string {
	p := ""
	switch {
	case o.Domain != "":
		p = "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		p = strings.TrimSuffix(o.APIPrefix, ".") + "."
	}
	if p == jetstream.DefaultAPIPrefix {
		return ""
	}
	return p
}

// kvIsConflict reports whether err is a failed compare-and-set: the key exists
// (create) or its revision moved (update, delete).
func kvIsConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// errKVContention is returned when a key's revision kept moving under one call
// for kvMaxRetries attempts.
var errKVContention = errors.New("dedupe: kv: too many concurrent writes to one key")

// kvEntry is a key's latest stored value: rev 0 and value "" when absent.
type kvEntry struct {
	value string
	rev   uint64
	at    time.Time
}

// kvGet reads name's latest value in kv; a missing or deleted key is the zero
// entry.
func kvGet(ctx context.Context, kv jetstream.KeyValue, name string) (kvEntry, error) {
	e, err := kv.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return kvEntry{}, nil
	}
	if err != nil {
		return kvEntry{}, err
	}
	return kvEntry{value: string(e.Value()), rev: e.Revision(), at: e.Created()}, nil
}

// kvEach runs fn(i) for every i in [0, n), at most kvMaxInFlight at once, and
// returns their errors joined.
func kvEach(n int, fn func(i int) error) error {
	if n == 1 {
		return fn(0)
	}
	errs := make([]error, n)
	sem := make(chan struct{}, min(n, kvMaxInFlight))
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = fn(i)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Claim claims every key at once. It publishes the creates of every key's
// pending value p:<owner>:<unix ms> asynchronously, all in flight together,
// and collects their acks (one round trip for the batch); then, for the keys
// that exist, it reads their values, again all at once (one more). owner
// names the claimer; use one per ingress process. It returns one Claim per
// key, in order, or nil and nil for no keys. A key repeated in keys is
// claimed by its first occurrence; later ones see Pending with the first
// one's Token.
//
// Errors are wrapped: ErrInvalidKey for an empty key (before anything is
// sent), a value that is not a dedupe state, or JetStream's. On an error the
// claims this call knows it made are released again (best effort, within
// 2 s); a create whose ack did not come back leaves its key Pending, which a
// later claim answers as "publish again", until the horizon.
func (k *KV) Claim(ctx context.Context, owner string, keys []string) ([]Claim, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	// uniq holds the index of each key's first occurrence; first[i] that of
	// keys[i].
	first := make([]int, len(keys))
	seen := make(map[string]int, len(keys))
	var uniq []int
	var names []string
	for i, key := range keys {
		if j, ok := seen[key]; ok {
			first[i] = j
			continue
		}
		n, err := kvName(key)
		if err != nil {
			return nil, fmt.Errorf("dedupe: claim: %w", err)
		}
		seen[key] = i
		first[i] = i
		uniq = append(uniq, i)
		names = append(names, n)
	}
	out := make([]Claim, len(keys))
	token := kvPendingValue(owner, time.Now())
	created := k.createAll(ctx, names, []byte(token))
	var errs []error
	var exist []int // indexes in uniq of the keys whose create found an entry
	for u, i := range uniq {
		out[i].Key = keys[i]
		switch err := created[u]; {
		case err == nil:
			out[i].Prior, out[i].Token = Absent, token
		case kvIsConflict(err):
			exist = append(exist, u)
		default:
			errs = append(errs, fmt.Errorf("dedupe: claim %s: %w", keys[i], err))
		}
	}
	if len(errs) == 0 {
		errs = append(errs, kvEach(len(exist), func(e int) error {
			u := exist[e]
			i := uniq[u]
			var err error
			out[i].Prior, out[i].Token, err = k.claimExisting(ctx, names[u], token)
			if err != nil {
				return fmt.Errorf("dedupe: claim %s: %w", keys[i], err)
			}
			return nil
		}))
	}
	err := errors.Join(errs...)
	if err != nil {
		var mine []Claim
		for _, i := range uniq {
			if c := out[i]; c.Prior == Absent && c.Token == token {
				mine = append(mine, c)
			}
		}
		if len(mine) > 0 {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			_ = k.Release(rctx, mine)
		}
		return nil, err
	}
	for i, j := range first {
		if i == j {
			continue
		}
		out[i] = out[j]
		out[i].Key = keys[i]
		if out[i].Prior == Absent {
			out[i].Prior = Pending
		}
	}
	return out, nil
}

// createAll creates value under every name in the states bucket where the
// name has no entry, with every publish in flight at once, and returns each
// create's error (nil: created; a conflict: the name has an entry, maybe a
// delete marker). It waits for the acks until ctx is done, or for the
// JetStream context's default timeout when ctx has no deadline.
func (k *KV) createAll(ctx context.Context, names []string, value []byte) []error {
	if _, ok := ctx.Deadline(); !ok {
		if d := k.claims.Options().DefaultTimeout; d > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
	}
	opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(0)}
	if dl, ok := ctx.Deadline(); ok {
		// With too many acks pending on the connection, wait for room as
		// long as ctx allows rather than fail at once.
		opts = append(opts, jetstream.WithStallWait(max(time.Until(dl), time.Millisecond)))
	}
	errs := make([]error, len(names))
	acks := make([]jetstream.PubAckFuture, len(names))
	for i, name := range names {
		m := nats.NewMsg(k.stateSubject + name)
		m.Data = value
		acks[i], errs[i] = k.claims.PublishMsgAsync(m, opts...)
	}
	for i, ack := range acks {
		if ack == nil {
			continue
		}
		select {
		case <-ack.Ok():
		case err := <-ack.Err():
			errs[i] = err
		case <-ctx.Done():
			errs[i] = ctx.Err()
		}
	}
	return errs
}

// claimExisting answers the claim of a name whose create found an entry: the
// state stored there, and its Token when Pending. An entry that turns out to
// be a delete marker, or gone, is created over.
func (k *KV) claimExisting(ctx context.Context, name, token string) (State, string, error) {
	for range kvMaxRetries {
		e, err := kvGet(ctx, k.states, name)
		if err != nil {
			return Absent, "", err
		}
		if e.rev == 0 {
			_, err := k.states.Create(ctx, name, []byte(token))
			if err == nil {
				return Absent, token, nil
			}
			if !kvIsConflict(err) {
				return Absent, "", err
			}
			continue
		}
		s, _, err := parseKVValue(e.value)
		if err != nil {
			return Absent, "", err
		}
		if s == Pending {
			return s, e.value, nil
		}
		return s, "", nil
	}
	return Absent, "", errKVContention
}

// Accept moves each claim's key to Accepted ("a") where the state is still
// the claim's Token: a read, then a compare-and-set on the revision read, all
// keys in flight together. Claims with an empty Token, or one that is not a
// pending value, are skipped; a key whose state has moved on (accepted,
// begun, done, expired, claimed again) is left as it is, without error.
// Errors are wrapped and joined: ErrInvalidKey for an empty key (before
// anything is sent), else JetStream's.
func (k *KV) Accept(ctx context.Context, claims []Claim) error {
	return k.swap(ctx, "accept", claims, func(ctx context.Context, name string, rev uint64) error {
		_, err := k.states.Update(ctx, name, []byte("a"), rev)
		return err
	})
}

// Release deletes each claim's key where the state is still the claim's
// Token (a read, then a delete on the revision read, all keys in flight
// together), so that the provider's retry is claimed afresh. Claims with an
// empty Token, or one that is not a pending value, are skipped; a key whose
// state has moved on is left as it is, without error. Errors are wrapped and
// joined: ErrInvalidKey for an empty key (before anything is sent), else
// JetStream's.
func (k *KV) Release(ctx context.Context, claims []Claim) error {
	return k.swap(ctx, "release", claims, func(ctx context.Context, name string, rev uint64) error {
		return k.states.Delete(ctx, name, jetstream.LastRevision(rev))
	})
}

// swap runs write on each claim's key at the revision where the key holds
// the claim's Token. When the revision moved between the read and the write,
// it reads again, and writes again only if the value is still the Token.
func (k *KV) swap(ctx context.Context, op string, claims []Claim, write func(ctx context.Context, name string, rev uint64) error) error {
	type job struct{ key, name, token string }
	todo := make([]job, 0, len(claims))
	for _, c := range claims {
		if !kvIsPending(c.Token) {
			continue
		}
		name, err := kvName(c.Key)
		if err != nil {
			return fmt.Errorf("dedupe: %s: %w", op, err)
		}
		todo = append(todo, job{c.Key, name, c.Token})
	}
	return kvEach(len(todo), func(i int) error {
		j := todo[i]
		for range kvMaxRetries {
			e, err := kvGet(ctx, k.states, j.name)
			if err != nil {
				return fmt.Errorf("dedupe: %s %s: %w", op, j.key, err)
			}
			if e.value != j.token {
				return nil
			}
			err = write(ctx, j.name, e.rev)
			if err == nil {
				return nil
			}
			if !kvIsConflict(err) {
				return fmt.Errorf("dedupe: %s %s: %w", op, j.key, err)
			}
		}
		return fmt.Errorf("dedupe: %s %s: %w", op, j.key, errKVContention)
	})
}

// Lookup reports key's state, last fencing number, whether a lock is held
// now, the time left before the state expires (counted from its last write;
// 0 if absent) and the raw state value. The state and the lock are read
// concurrently, not atomically. Errors are wrapped: ErrInvalidKey, a value
// that is not a dedupe state, or JetStream's.
func (k *KV) Lookup(ctx context.Context, key string) (Record, error) {
	name, err := kvName(key)
	if err != nil {
		return Record{}, fmt.Errorf("dedupe: lookup: %w", err)
	}
	state, lock, err := k.readBoth(ctx, name)
	if err != nil {
		return Record{}, fmt.Errorf("dedupe: lookup %s: %w", key, err)
	}
	now := time.Now()
	r := Record{Raw: state.value, Locked: kvLockHeld(lock, now)}
	if state.rev == 0 {
		return r, nil
	}
	r.State, r.Fence, err = parseKVValue(state.value)
	if err != nil {
		return Record{}, fmt.Errorf("dedupe: lookup %s: %w", key, err)
	}
	r.TTL = min(max(state.at.Add(k.horizon).Sub(now), time.Millisecond), k.horizon)
	return r, nil
}

// Ping checks JetStream answers and the states bucket exists, in one round
// trip. Errors are wrapped.
func (k *KV) Ping(ctx context.Context) error {
	if _, err := k.states.Status(ctx); err != nil {
		return fmt.Errorf("dedupe: ping: %w", err)
	}
	return nil
}

// readBoth reads the state and the lock entries of name concurrently (one
// round trip, not atomically).
func (k *KV) readBoth(ctx context.Context, name string) (state, lock kvEntry, err error) {
	err = kvEach(2, func(i int) error {
		var err error
		if i == 0 {
			state, err = kvGet(ctx, k.states, name)
		} else {
			lock, err = kvGet(ctx, k.locks, name)
		}
		return err
	})
	return state, lock, err
}
