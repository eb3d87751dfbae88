package dedupe

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultHorizon is the default dedupe horizon of every store: 7 days, as
// long as Meta retries a failed delivery (WhatsApp Cloud API, "Webhooks"
// overview: retries "for up to 7 days"). It is the single source of that
// figure: streams.DefaultMaxAge and WAGATE_DEDUPE_HORIZON's and
// WAGATE_STREAM_MAX_AGE's defaults equal it (checked by internal/config's
// tests).
const DefaultHorizon = 7 * 24 * time.Hour

// redisDefaultHorizon is the horizon when RedisOptions.Horizon is zero.
const redisDefaultHorizon = DefaultHorizon

// RedisOptions configure NewRedis. The zero value is a valid configuration.
type RedisOptions struct {
	// Horizon is how long a key's state is kept after it is first written:
	// the TTL of every state key, set by Claim (or by Begin on a key that had
	// none) and kept by every later transition. Within the horizon a key is
	// never processed twice; after it, the key is forgotten. It is rounded up
	// to a whole millisecond. Zero or negative means DefaultHorizon.
	Horizon time.Duration
	// Prefix is prepended to every Redis key name this store writes, for
	// sharing a database with other applications (for example "wg:"). Every
	// byte of it costs memory on every event. Optional; "" means none.
	Prefix string
}

// Redis is the production Store, on a Redis 7.0 or later reached through a
// go-redis UniversalClient: a single node, Sentinel or Cluster.
//
// # Layout
//
// While idle each event costs one Redis key, the state key, named
// Prefix+key, with the horizon as TTL. Its value is the state and the last
// fencing number issued:
//
//	p:<owner>:<unix ms>   Pending: claimed by owner at that time
//	1  or  <fence>1       Accepted ("1" after Claim and Accept; "<fence>1" once
//	                      Begin has issued fencing number <fence>, e.g. "31")
//	<fence>2              Done (e.g. "32"; a forced Begin turns it into
//	                      <fence+1>1)
//
// Accepted and Done are one decimal integer, 10 × fence + 1 or + 2, because
// Redis keeps an integer value below 10000 as a shared object: a retained
// claim with a fencing number below 1000 then costs its key name, its entry
// and its expiry, and no value of its own. (Redis shares no integers under a
// maxmemory-policy of the LRU or LFU kind; evicting claims breaks
// deduplication anyway, so use noeviction.) Values written before this
// layout ("a", "a<fence>", "d<fence>") are still read.
//
// A run's lock is a second key with its own TTL, which exists only while the
// run holds it; its value is the lease's token. Its name lies in the state
// key's Cluster slot, so that one script updates both:
//
//	state key without hash tag and without '}'   lock "{" + state + "}:l"
//	state key with a hash tag                    lock state + ":l"
//
// For a key made by messages.KeyOf, "wa:AbC…" (25 bytes), the state key is
// "wa:AbC…" and the lock "{wa:AbC…}:l". Any other name (one holding '}' but no
// hash tag, such as "a}b") is refused with ErrInvalidKey, on every deployment
// alike.
//
// # Round trips and atomicity
//
// Claim is one pipeline of SET <state> p:… NX GET EX <horizon> (PX when the
// horizon is not whole seconds; SET with both NX and GET needs Redis 7.0).
// Release is one pipeline of one small script per key (go-redis splits
// pipelines by node on Cluster); Accept is one script run on every key off
// Cluster, one per key on Cluster; ClaimAccept is one pipeline of Accept's
// script runs followed by Claim's commands. Begin, Extend, Finish, Unlock and
// Lookup are one script each, atomic on the server. Scripts run by EVALSHA; when a
// server lacks one (first use, restart, failover) the call is sent again with
// EVAL, a second round trip that happens once per script and server.
//
// # Durability
//
// The guarantees hold as long as Redis keeps its keys. A Redis without
// persistence (or a failover to a replica that had not received the latest
// writes) forgets claims, done marks and fencing numbers: an event delivered
// again is then processed again, and fencing numbers start over at 1. Use
// appendonly yes with appendfsync everysec or always where that matters.
//
// # Errors and context
//
// Every method bounds its wait by ctx and by the client's own timeouts
// (go-redis ReadTimeout and WriteTimeout; set ContextTimeoutEnabled to make
// ctx deadlines apply to the socket as well). Errors from Redis are wrapped
// with the operation ("dedupe: claim: …") and never match ErrDone, ErrBusy or
// ErrLockLost, so a worker never takes an unreachable Redis for a done key.
//
// A Redis is safe for concurrent use.
type Redis struct {
	c       redis.UniversalClient
	prefix  string
	horizon time.Duration
	// horizonMs is horizon in milliseconds, as scripts want it.
	horizonMs string
	// acceptAll says Accept may run one script on many keys: c is not a
	// Cluster client. crossSlot is set once the server refused it.
	acceptAll bool
	crossSlot atomic.Bool
}

var (
	_ Store         = (*Redis)(nil)
	_ ClaimAccepter = (*Redis)(nil)
)

// NewRedis returns a Store on c, which the caller keeps and closes. It sends
// nothing to Redis; call Ping to check it is reachable.
func NewRedis(c redis.UniversalClient, opts RedisOptions) *Redis {
	h := opts.Horizon
	if h <= 0 {
		h = redisDefaultHorizon
	}
	ms := redisMillis(h)
	_, single := c.(*redis.Client) // a single node, or Sentinel's master
	return &Redis{
		c:         c,
		acceptAll: single,
		prefix:    opts.Prefix,
		horizon:   time.Duration(ms) * time.Millisecond,
		horizonMs: strconv.FormatInt(ms, 10),
	}
}

// Claim claims every key in one round trip: SET <state> p:<owner>:<unix ms>
// NX GET EX <horizon> for each, pipelined. owner names the claimer in the
// pending value; use one per ingress process (a host name and process id), so
// that a claim is told apart from another process's. It returns one Claim per
// key, in order, or nil and nil for no keys.
//
// A key repeated in keys is claimed by its first occurrence; later ones see
// Pending with the first one's Token.
//
// On an error (wrapped; ErrInvalidKey for a bad key, before anything is
// sent) some keys may have been claimed all the same: they stay Pending,
// which a later claim answers as "publish again", until the horizon.
func (r *Redis) Claim(ctx context.Context, owner string, keys []string) ([]Claim, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	names, err := r.claimNames(keys)
	if err != nil {
		return nil, err
	}
	value := redisPendingValue(owner, time.Now())
	cmds := make([]*redis.StatusCmd, len(keys))
	_, _ = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		r.queueClaims(ctx, p, names, value, cmds)
		return nil
	})
	return claimAnswers(keys, value, cmds)
}

// claimNames returns the state key names of keys, for Claim.
func (r *Redis) claimNames(keys []string) ([]string, error) {
	names := make([]string, len(keys))
	for i, k := range keys {
		state, _, err := r.names(k)
		if err != nil {
			return nil, fmt.Errorf("dedupe: claim: %w", err)
		}
		names[i] = state
	}
	return names, nil
}

// queueClaims queues the claim of every name on p, its command in cmds.
func (r *Redis) queueClaims(ctx context.Context, p redis.Pipeliner, names []string, value string, cmds []*redis.StatusCmd) {
	for i, name := range names {
		cmds[i] = p.SetArgs(ctx, name, value, redis.SetArgs{Mode: "NX", Get: true, TTL: r.horizon})
	}
}

// claimAnswers reads the answers of the claims of keys, written with value.
func claimAnswers(keys []string, value string, cmds []*redis.StatusCmd) ([]Claim, error) {
	claims := make([]Claim, len(keys))
	for i, cmd := range cmds {
		claims[i].Key = keys[i]
		old, err := cmd.Result()
		switch {
		case errors.Is(err, redis.Nil):
			claims[i].Prior, claims[i].Token = Absent, value
			continue
		case err != nil:
			return nil, fmt.Errorf("dedupe: claim %s: %w", keys[i], err)
		}
		s, _, err := parseRedisValue(old)
		if err != nil {
			return nil, fmt.Errorf("dedupe: claim %s: %w", keys[i], err)
		}
		claims[i].Prior = s
		if s == Pending {
			claims[i].Token = old
		}
	}
	return claims, nil
}

// ClaimAccept does what Accept(ctx, accept) and Claim(ctx, owner, keys) do,
// in one round trip: one pipeline of the accept scripts, then the claims
// (a script the server lacks costs a second round trip, as in Accept). It
// implements ClaimAccepter.
func (r *Redis) ClaimAccept(ctx context.Context, owner string, keys []string, accept []Claim) ClaimAccepted {
	var out ClaimAccepted
	calls, err := r.casCalls("accept", accept)
	if err != nil {
		out.AcceptErr, calls = err, nil
	}
	names, err := r.claimNames(keys)
	if err != nil {
		out.ClaimErr, names = err, nil
	}
	value := redisPendingValue(owner, time.Now())
	cmds := make([]*redis.StatusCmd, len(names))
	queue := func(p redis.Pipeliner) { r.queueClaims(ctx, p, names, value, cmds) }
	switch {
	case len(calls) > 0:
		out.AcceptErr = r.accept(ctx, calls, queue)
	case len(names) > 0:
		_, _ = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			queue(p)
			return nil
		})
	}
	if len(names) > 0 {
		out.Claims, out.ClaimErr = claimAnswers(keys, value, cmds)
	}
	return out
}

// Accept moves each claim's key to Accepted ("1", keeping its TTL) where the
// state is still the claim's Token, in one round trip. Claims with an empty
// Token, or one that is not a pending value, are skipped; a key whose state
// has moved on (accepted, begun, done, expired, claimed again) is left as it
// is, without error. Errors are wrapped: ErrInvalidKey for a bad key, else
// Redis's.
func (r *Redis) Accept(ctx context.Context, claims []Claim) error {
	calls, err := r.casCalls("accept", claims)
	if err != nil || len(calls) == 0 {
		return err
	}
	return r.accept(ctx, calls, nil)
}

// accept runs the accept calls in one pipeline, then's commands after them
// (see runPipelinedThen): in one scriptAcceptAll run off Cluster, else one
// scriptAccept run per call. A server that refuses scriptAcceptAll's keys
// as lying in several slots (a Cluster node reached without a Cluster
// client) gets one run per call, then and from then on.
func (r *Redis) accept(ctx context.Context, calls []scriptCall, then func(redis.Pipeliner)) error {
	var err error
	if len(calls) > 1 && r.acceptAll && !r.crossSlot.Load() {
		all := scriptCall{keys: make([]string, len(calls)), args: make([]any, len(calls))}
		for i, c := range calls {
			all.keys[i], all.args[i] = c.keys[0], c.args[0]
		}
		if _, err = runPipelinedThen(ctx, r.c, scriptAcceptAll, []scriptCall{all}, then); !isCrossSlot(err) {
			return wrapOp("accept", err)
		}
		r.crossSlot.Store(true)
		then = nil // sent already
	}
	_, err = runPipelinedThen(ctx, r.c, scriptAccept, calls, then)
	return wrapOp("accept", err)
}

// wrapOp wraps a Redis error with the operation, or returns nil.
func wrapOp(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("dedupe: %s: %w", op, err)
}

// Release deletes each claim's key where the state is still the claim's
// Token, in one round trip, so that the provider's retry is claimed afresh.
// Claims with an empty Token, or one that is not a pending value, are
// skipped; a key whose state has moved on is left as it is, without error.
// Errors are wrapped: ErrInvalidKey for a bad key, else Redis's.
func (r *Redis) Release(ctx context.Context, claims []Claim) error {
	return r.compareAndSet(ctx, "release", scriptRelease, claims)
}

// compareAndSet runs s on every claim with a pending Token, in one pipeline.
func (r *Redis) compareAndSet(ctx context.Context, op string, s *redis.Script, claims []Claim) error {
	calls, err := r.casCalls(op, claims)
	if err != nil || len(calls) == 0 {
		return err
	}
	if _, err := runPipelined(ctx, r.c, s, calls); err != nil {
		return fmt.Errorf("dedupe: %s: %w", op, err)
	}
	return nil
}

// casCalls returns the script calls of compareAndSet: one per claim with a
// pending Token.
func (r *Redis) casCalls(op string, claims []Claim) ([]scriptCall, error) {
	calls := make([]scriptCall, 0, len(claims))
	for _, c := range claims {
		if !redisIsPending(c.Token) {
			continue
		}
		state, _, err := r.names(c.Key)
		if err != nil {
			return nil, fmt.Errorf("dedupe: %s: %w", op, err)
		}
		calls = append(calls, scriptCall{keys: []string{state}, args: []any{c.Token}})
	}
	return calls, nil
}

// Begin takes key's lock for opts.TTL, in one round trip. It returns ErrDone
// if the key is done (unless opts.Force), else ErrBusy if another holder has
// the lock, else a Lease with a new random token and fencing number: one more
// than the last one issued for the key (1 for the first), written into the
// state as Accepted, 10 × fence + 1. The state keeps its TTL, or gets the horizon if it had
// none: Begin works on an absent key (Redis lost it, or the ingress published
// without claiming) and creates its state. Other errors are wrapped:
// ErrInvalidKey, a TTL that is not positive, or Redis's.
func (r *Redis) Begin(ctx context.Context, key string, opts BeginOptions) (Lease, error) {
	state, lock, err := r.names(key)
	if err != nil {
		return Lease{}, fmt.Errorf("dedupe: begin: %w", err)
	}
	if opts.TTL <= 0 {
		return Lease{}, fmt.Errorf("dedupe: begin %s: lock TTL %v is not positive", key, opts.TTL)
	}
	force := "0"
	if opts.Force {
		force = "1"
	}
	token := rand.Text()
	n, err := scriptBegin.Run(ctx, r.c, []string{state, lock}, token, redisMillis(opts.TTL), force, r.horizonMs).Int64()
	if err != nil {
		return Lease{}, fmt.Errorf("dedupe: begin %s: %w", key, err)
	}
	switch {
	case n == redisBeginDone:
		return Lease{}, ErrDone
	case n == redisBeginBusy:
		return Lease{}, ErrBusy
	case n < 1:
		return Lease{}, fmt.Errorf("dedupe: begin %s: unexpected answer %d", key, n)
	}
	return Lease{Key: key, Token: token, Fence: n}, nil
}

// Extend resets the lock's TTL to ttl, in one round trip, if l still holds
// it; else ErrLockLost. Other errors are wrapped: ErrInvalidKey, a ttl that
// is not positive, or Redis's.
func (r *Redis) Extend(ctx context.Context, l Lease, ttl time.Duration) error {
	_, lock, err := r.names(l.Key)
	if err != nil {
		return fmt.Errorf("dedupe: extend: %w", err)
	}
	if ttl <= 0 {
		return fmt.Errorf("dedupe: extend %s: lock TTL %v is not positive", l.Key, ttl)
	}
	return r.lockOp(ctx, "extend", l, scriptExtend, []string{lock}, l.Token, redisMillis(ttl))
}

// Finish marks the key done (10 × fence + 2, keeping its TTL, or the horizon if
// it had none) and deletes the lock, in one round trip, if l still holds the
// lock; else it returns ErrLockLost and changes nothing. Other errors are
// wrapped: ErrInvalidKey or Redis's.
func (r *Redis) Finish(ctx context.Context, l Lease) error {
	state, lock, err := r.names(l.Key)
	if err != nil {
		return fmt.Errorf("dedupe: finish: %w", err)
	}
	return r.lockOp(ctx, "finish", l, scriptFinish, []string{state, lock}, l.Token, l.Fence, r.horizonMs)
}

// Unlock deletes the lock without marking the key done, in one round trip, if
// l still holds it; else ErrLockLost. The state keeps its fencing number, so
// the next Begin gets a higher one. Other errors are wrapped: ErrInvalidKey or
// Redis's.
func (r *Redis) Unlock(ctx context.Context, l Lease) error {
	_, lock, err := r.names(l.Key)
	if err != nil {
		return fmt.Errorf("dedupe: unlock: %w", err)
	}
	return r.lockOp(ctx, "unlock", l, scriptUnlock, []string{lock}, l.Token)
}

// lockOp runs a compare-on-lock script that answers 1 when l held the lock.
func (r *Redis) lockOp(ctx context.Context, op string, l Lease, s *redis.Script, keys []string, args ...any) error {
	if l.Token == "" {
		return ErrLockLost
	}
	n, err := s.Run(ctx, r.c, keys, args...).Int64()
	if err != nil {
		return fmt.Errorf("dedupe: %s %s: %w", op, l.Key, err)
	}
	if n != 1 {
		return ErrLockLost
	}
	return nil
}

// Lookup reports key's state, last fencing number, whether it is locked, the
// state's remaining TTL (0 if absent or without expiry) and the raw state
// value, read atomically in one round trip. Errors are wrapped: ErrInvalidKey,
// a value that is not a dedupe state, or Redis's.
func (r *Redis) Lookup(ctx context.Context, key string) (Record, error) {
	state, lock, err := r.names(key)
	if err != nil {
		return Record{}, fmt.Errorf("dedupe: lookup: %w", err)
	}
	vals, err := scriptLookup.Run(ctx, r.c, []string{state, lock}).Slice()
	if err != nil {
		return Record{}, fmt.Errorf("dedupe: lookup %s: %w", key, err)
	}
	if len(vals) != 3 {
		return Record{}, fmt.Errorf("dedupe: lookup %s: unexpected answer %v", key, vals)
	}
	var rec Record
	if pttl, ok := vals[1].(int64); ok && pttl > 0 {
		rec.TTL = time.Duration(pttl) * time.Millisecond
	}
	if n, ok := vals[2].(int64); ok && n == 1 {
		rec.Locked = true
	}
	if v, ok := vals[0].(string); ok {
		rec.Raw = v
		rec.State, rec.Fence, err = parseRedisValue(v)
		if err != nil {
			return Record{}, fmt.Errorf("dedupe: lookup %s: %w", key, err)
		}
	}
	return rec, nil
}

// Ping checks Redis answers, in one round trip. Errors are wrapped.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("dedupe: ping: %w", err)
	}
	return nil
}

// redisMillis is d in whole milliseconds, rounded up, at least 1.
func redisMillis(d time.Duration) int64 {
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms < 1 {
		return 1
	}
	return int64(ms)
}

var _ Batch = (*Redis)(nil)

// BeginBatch runs Begin for every key in one round trip: one pipeline of the
// Begin script, once per key. It returns one Began per key, in order, each
// as Begin would answer it; a key repeated in keys gets the lock once and
// ErrBusy after. A failure of the pipeline as a whole is every item's Err.
func (r *Redis) BeginBatch(ctx context.Context, keys []string, opts BeginOptions) []Began {
	out := make([]Began, len(keys))
	force := "0"
	if opts.Force {
		force = "1"
	}
	var (
		calls []scriptCall
		idx   []int // index in keys of each call
	)
	for i, key := range keys {
		state, lock, err := r.names(key)
		switch {
		case err != nil:
			out[i].Err = fmt.Errorf("dedupe: begin: %w", err)
			continue
		case opts.TTL <= 0:
			out[i].Err = fmt.Errorf("dedupe: begin %s: lock TTL %v is not positive", key, opts.TTL)
			continue
		}
		token := rand.Text()
		out[i].Lease = Lease{Key: key, Token: token}
		calls = append(calls, scriptCall{keys: []string{state, lock}, args: []any{token, redisMillis(opts.TTL), force, r.horizonMs}})
		idx = append(idx, i)
	}
	if len(calls) == 0 {
		return out
	}
	cmds, _ := runPipelined(ctx, r.c, scriptBegin, calls)
	for c, cmd := range cmds {
		i := idx[c]
		n, err := cmd.Int64()
		switch {
		case err != nil:
			out[i] = Began{Err: fmt.Errorf("dedupe: begin %s: %w", keys[i], err)}
		case n == redisBeginDone:
			out[i] = Began{Err: ErrDone}
		case n == redisBeginBusy:
			out[i] = Began{Err: ErrBusy}
		case n < 1:
			out[i] = Began{Err: fmt.Errorf("dedupe: begin %s: unexpected answer %d", keys[i], n)}
		default:
			out[i].Lease.Fence = n
		}
	}
	return out
}

// FinishBatch runs Finish for every lease in one round trip: one pipeline of
// the Finish script, once per lease. It returns one error per lease, in
// order: nil (marked done, lock deleted), ErrLockLost (nothing changed), or a
// wrapped error; a failure of the pipeline as a whole is every item's.
func (r *Redis) FinishBatch(ctx context.Context, leases []Lease) []error {
	out := make([]error, len(leases))
	var (
		calls []scriptCall
		idx   []int
	)
	for i, l := range leases {
		state, lock, err := r.names(l.Key)
		switch {
		case err != nil:
			out[i] = fmt.Errorf("dedupe: finish: %w", err)
			continue
		case l.Token == "":
			out[i] = ErrLockLost
			continue
		}
		calls = append(calls, scriptCall{keys: []string{state, lock}, args: []any{l.Token, l.Fence, r.horizonMs}})
		idx = append(idx, i)
	}
	if len(calls) == 0 {
		return out
	}
	cmds, _ := runPipelined(ctx, r.c, scriptFinish, calls)
	for c, cmd := range cmds {
		i := idx[c]
		n, err := cmd.Int64()
		switch {
		case err != nil:
			out[i] = fmt.Errorf("dedupe: finish %s: %w", leases[i].Key, err)
		case n != 1:
			out[i] = ErrLockLost
		}
	}
	return out
}
