package dedupe

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults of PostgresOptions.
const (
	postgresDefaultCleanupInterval = time.Minute
	postgresDefaultCleanupBatch    = 1000
	// maxStoreKey is the longest key the PostgreSQL and DynamoDB backends
	// take, in bytes.
	maxStoreKey = 1024
)

// PostgresOptions configure NewPostgres. The zero value is a valid
// configuration.
type PostgresOptions struct {
	// Table is the table holding the states: "name" or "schema.name", plain
	// identifiers only. "" means DefaultPostgresTable ("wagate_dedupe") in
	// the connection's search_path.
	Table string
	// Horizon is how long a key's state is kept after it is first written
	// (the expires_at of its row, kept by every later transition). Zero or
	// negative means DefaultHorizon. It is rounded up to a whole millisecond.
	Horizon time.Duration
	// CleanupInterval is how often RunCleanup deletes expired rows. Zero
	// means 1 minute.
	CleanupInterval time.Duration
	// CleanupBatch is the most rows one cleanup statement deletes. Zero
	// means 1000.
	CleanupBatch int
}

// Postgres is a Store on PostgreSQL (tested on 15), through a pgx connection
// pool: for deployments that already run PostgreSQL and would rather not
// operate Redis.
//
// # Layout
//
// One row per event in one table (see PostgresSchema; create it with
// InitSchema, `wagate dedupe init`):
//
//	key         the dedupe key (primary key)
//	state       p:<owner>:<unix ms>:<nonce> (Pending), a (Accepted), d (Done)
//	fence       the last fencing number issued for the key; 0 if none
//	lock_token  the lease's token while a run holds the lock, else NULL
//	lock_until  when that lock expires, else NULL
//	expires_at  the end of the horizon, set when the row is first written
//
// Time is the server's (now()), so the processes' clocks do not matter. A
// row whose expires_at has passed is absent to every method: Claim and Begin
// overwrite it (its fence starts over, as a Redis key's does after its TTL);
// RunCleanup deletes such rows in bounded batches in the background, through
// the expires_at index.
//
// # Statements and atomicity
//
// Every method is one statement in its own implicit transaction, hence one
// round trip. Claim is one INSERT … ON CONFLICT (key) DO UPDATE for the
// whole batch, whose update rewrites a live row with its own values (and an
// expired one with the new claim) so that RETURNING yields the row as it is
// under the row lock, including rows other transactions committed after the
// statement began: that is the prior state, read atomically with the claim.
// The price is that a duplicate claim writes a new version of its row (a
// HOT update, the same size). Claim, Accept and Release lock rows in key
// order, so concurrent batches never deadlock. Begin is the same kind of statement for one key;
// Accept, Release, Extend, Finish and Unlock are conditional UPDATEs or a
// DELETE on the row; Lookup is one SELECT.
//
// # Durability
//
// As durable as the database: a committed claim, done mark or fencing
// number survives a crash or restart of PostgreSQL (with the default
// synchronous_commit = on), and a failover to a synchronous standby.
//
// # Errors and context
//
// Every method bounds its wait by ctx (pgx cancels the query when ctx is
// done). Errors from PostgreSQL are wrapped with the operation ("dedupe:
// claim: …") and never match ErrDone, ErrBusy or ErrLockLost. Keys must be
// valid UTF-8 without NUL, at most 1024 bytes; others are refused with
// ErrInvalidKey.
//
// A Postgres is safe for concurrent use.
type Postgres struct {
	pool      *pgxpool.Pool
	t         pgTableName
	tableOpt  string
	horizonMs int64
	interval  time.Duration
	batch     int
	q         pgQueries
}

var _ Store = (*Postgres)(nil)

// pgQueries are the statements, with the table name filled in.
type pgQueries struct {
	claim, accept, release, begin, extend, finish, unlock, lookup, cleanup string
}

// NewPostgres returns a Store on pool, which the caller keeps and closes. It
// sends nothing to the server; call CheckSchema (or InitSchema) and Ping. It
// returns an error only for a bad Table name.
func NewPostgres(pool *pgxpool.Pool, opts PostgresOptions) (*Postgres, error) {
	t, err := pgTable(opts.Table)
	if err != nil {
		return nil, err
	}
	h := opts.Horizon
	if h <= 0 {
		h = DefaultHorizon
	}
	p := &Postgres{pool: pool, t: t, tableOpt: opts.Table, horizonMs: redisMillis(h),
		interval: opts.CleanupInterval, batch: opts.CleanupBatch}
	if p.interval <= 0 {
		p.interval = postgresDefaultCleanupInterval
	}
	if p.batch <= 0 {
		p.batch = postgresDefaultCleanupBatch
	}
	p.q = pgStatements(t.quoted)
	return p, nil
}

// pgStatements returns the backend's statements on table. $-parameters are
// documented at each use.
func pgStatements(table string) pgQueries {
	const ms = "* interval '1 millisecond'"
	return pgQueries{
		// $1 keys (distinct, sorted), $2 pending value, $3 horizon in ms.
		claim: `INSERT INTO ` + table + ` AS d (key, state, expires_at)
SELECT k, $2, now() + $3::bigint ` + ms + ` FROM unnest($1::text[]) AS k ORDER BY k
ON CONFLICT (key) DO UPDATE SET
  state      = CASE WHEN d.expires_at <= now() THEN EXCLUDED.state ELSE d.state END,
  fence      = CASE WHEN d.expires_at <= now() THEN 0 ELSE d.fence END,
  lock_token = CASE WHEN d.expires_at <= now() THEN NULL ELSE d.lock_token END,
  lock_until = CASE WHEN d.expires_at <= now() THEN NULL ELSE d.lock_until END,
  expires_at = CASE WHEN d.expires_at <= now() THEN EXCLUDED.expires_at ELSE d.expires_at END
RETURNING d.key, d.state`,
		// $1 keys, $2 their pending tokens. Rows are locked in key order
		// (FOR UPDATE under ORDER BY), as Claim locks them, so that
		// concurrent batches never deadlock.
		accept: `UPDATE ` + table + ` AS d SET state = 'a'
FROM (SELECT x.key, c.token FROM ` + table + ` AS x
      JOIN unnest($1::text[], $2::text[]) AS c(key, token) ON x.key = c.key AND x.state = c.token
      WHERE x.expires_at > now() ORDER BY x.key FOR UPDATE OF x) AS l
WHERE d.key = l.key AND d.state = l.token`,
		release: `DELETE FROM ` + table + ` AS d
USING (SELECT x.key, c.token FROM ` + table + ` AS x
       JOIN unnest($1::text[], $2::text[]) AS c(key, token) ON x.key = c.key AND x.state = c.token
       ORDER BY x.key FOR UPDATE OF x) AS l
WHERE d.key = l.key AND d.state = l.token`,
		// $1 key, $2 lock token, $3 lock TTL in ms, $4 force, $5 horizon in
		// ms. take: the row expired, or it is not done (unless forced) and
		// its lock is free. A refused Begin rewrites the row as it is, so
		// that RETURNING says why.
		begin: `INSERT INTO ` + table + ` AS d (key, state, fence, lock_token, lock_until, expires_at)
VALUES ($1, 'a', 1, $2, now() + $3::bigint ` + ms + `, now() + $5::bigint ` + ms + `)
ON CONFLICT (key) DO UPDATE SET
  state      = CASE WHEN d.expires_at <= now() OR ((d.state <> 'd' OR $4) AND (d.lock_until IS NULL OR d.lock_until <= now()))
                    THEN 'a' ELSE d.state END,
  fence      = CASE WHEN d.expires_at <= now() THEN 1
                    WHEN (d.state <> 'd' OR $4) AND (d.lock_until IS NULL OR d.lock_until <= now()) THEN d.fence + 1
                    ELSE d.fence END,
  lock_token = CASE WHEN d.expires_at <= now() OR ((d.state <> 'd' OR $4) AND (d.lock_until IS NULL OR d.lock_until <= now()))
                    THEN EXCLUDED.lock_token ELSE d.lock_token END,
  lock_until = CASE WHEN d.expires_at <= now() OR ((d.state <> 'd' OR $4) AND (d.lock_until IS NULL OR d.lock_until <= now()))
                    THEN EXCLUDED.lock_until ELSE d.lock_until END,
  expires_at = CASE WHEN d.expires_at <= now() THEN EXCLUDED.expires_at ELSE d.expires_at END
RETURNING d.state, d.fence, d.lock_token`,
		// $1 key, $2 lock token, $3 lock TTL in ms.
		extend: `UPDATE ` + table + ` SET lock_until = now() + $3::bigint ` + ms + `
WHERE key = $1 AND lock_token = $2 AND lock_until > now()`,
		// $1 key, $2 lock token, $3 the lease's fence, $4 horizon in ms.
		finish: `UPDATE ` + table + ` SET state = 'd', fence = greatest(fence, $3), lock_token = NULL, lock_until = NULL,
  expires_at = CASE WHEN expires_at <= now() THEN now() + $4::bigint ` + ms + ` ELSE expires_at END
WHERE key = $1 AND lock_token = $2 AND lock_until > now()`,
		unlock: `UPDATE ` + table + ` SET lock_token = NULL, lock_until = NULL
WHERE key = $1 AND lock_token = $2 AND lock_until > now()`,
		// $1 key. The remaining TTL in whole microseconds.
		lookup: `SELECT state, fence, coalesce(lock_until > now(), false),
  (extract(epoch FROM expires_at - now()) * 1000000)::bigint
FROM ` + table + ` WHERE key = $1`,
		// $1 the most rows to delete. SKIP LOCKED: never waits for a claim
		// or a run; a row a claim is rewriting is left for the next round.
		cleanup: `DELETE FROM ` + table + ` WHERE ctid IN (
  SELECT ctid FROM ` + table + `
  WHERE expires_at <= now() AND (lock_until IS NULL OR lock_until <= now())
  ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)`,
	}
}

// pgKey checks key is one PostgreSQL can store and we accept.
func pgKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	case len(key) > maxStoreKey:
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidKey, len(key), maxStoreKey)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidKey)
	}
	for i := 0; i < len(key); i++ {
		if key[i] == 0 {
			return fmt.Errorf("%w: holds a NUL byte", ErrInvalidKey)
		}
	}
	return nil
}

// pendingValue is the value a claim of the PostgreSQL and DynamoDB backends
// writes: p:<owner>:<unix ms>:<nonce>. The nonce makes every Claim call's
// value its own, so that a claimer tells the row it wrote from one another
// claim wrote.
func pendingValue(owner string, now time.Time) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "p:" + owner + ":" + strconv.FormatInt(now.UnixMilli(), 10) + ":" + base64.RawURLEncoding.EncodeToString(b[:])
}

// parseStoreValue reads a state value of the PostgreSQL or DynamoDB
// backends: "p:…", "a" or "d".
func parseStoreValue(v string) (State, error) {
	switch {
	case len(v) >= 2 && v[:2] == "p:":
		return Pending, nil
	case v == "a":
		return Accepted, nil
	case v == "d":
		return Done, nil
	}
	return Absent, fmt.Errorf("unknown state value %q", v)
}

// Claim claims every key in one statement (INSERT … ON CONFLICT, see
// Postgres) with the pending value p:<owner>:<unix ms>:<nonce>, and returns
// one Claim per key, in order, or nil and nil for no keys. A key repeated in
// keys is claimed by its first occurrence; later ones see Pending with its
// Token. Errors are wrapped: ErrInvalidKey for a bad key (before anything is
// sent), else PostgreSQL's (nothing is claimed: the statement is atomic).
func (p *Postgres) Claim(ctx context.Context, owner string, keys []string) ([]Claim, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	for _, k := range keys {
		if err := pgKey(k); err != nil {
			return nil, fmt.Errorf("dedupe: claim: %w", err)
		}
	}
	distinct := sortedDistinct(keys)
	value := pendingValue(owner, time.Now())
	rows, err := p.pool.Query(ctx, p.q.claim, distinct, value, p.horizonMs)
	if err != nil {
		return nil, fmt.Errorf("dedupe: claim: %w", err)
	}
	prior := make(map[string]string, len(distinct))
	var k, v string
	_, err = pgx.ForEachRow(rows, []any{&k, &v}, func() error {
		prior[k] = v
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dedupe: claim: %w", err)
	}
	return claimsFrom(keys, value, prior)
}

// sortedDistinct returns keys sorted, without repeats.
func sortedDistinct(keys []string) []string {
	out := append([]string(nil), keys...)
	sort.Strings(out)
	n := 0
	for i, k := range out {
		if i == 0 || k != out[n-1] {
			out[n] = k
			n++
		}
	}
	return out[:n]
}

// claimsFrom builds the answer of a Claim that wrote value: prior maps each
// key to its stored value after the claim, which is value where this claim
// wrote it (Absent for its first occurrence, Pending for repeats).
func claimsFrom(keys []string, value string, prior map[string]string) ([]Claim, error) {
	claims := make([]Claim, len(keys))
	seen := make(map[string]bool, len(keys))
	for i, k := range keys {
		claims[i].Key = k
		v, ok := prior[k]
		if !ok {
			return nil, fmt.Errorf("dedupe: claim %s: no answer for the key", k)
		}
		if v == value && !seen[k] {
			seen[k] = true
			claims[i].Prior, claims[i].Token = Absent, value
			continue
		}
		s, err := parseStoreValue(v)
		if err != nil {
			return nil, fmt.Errorf("dedupe: claim %s: %w", k, err)
		}
		claims[i].Prior = s
		if s == Pending {
			claims[i].Token = v
		}
	}
	return claims, nil
}

// Accept moves each claim's key to Accepted where its state is still the
// claim's Token, in one statement. Claims with an empty Token, or one that
// is not a pending value, are skipped; a key whose state has moved on is
// left as it is, without error. Errors are wrapped: ErrInvalidKey or
// PostgreSQL's.
func (p *Postgres) Accept(ctx context.Context, claims []Claim) error {
	return p.compareAndSet(ctx, "accept", p.q.accept, claims)
}

// Release deletes each claim's row where its state is still the claim's
// Token, in one statement. Skips and errors as Accept.
func (p *Postgres) Release(ctx context.Context, claims []Claim) error {
	return p.compareAndSet(ctx, "release", p.q.release, claims)
}

// compareAndSet runs q on every claim with a pending Token.
func (p *Postgres) compareAndSet(ctx context.Context, op, q string, claims []Claim) error {
	keys, tokens, err := pendingClaims(op, claims, pgKey)
	if err != nil || len(keys) == 0 {
		return err
	}
	if _, err := p.pool.Exec(ctx, q, keys, tokens); err != nil {
		return fmt.Errorf("dedupe: %s: %w", op, err)
	}
	return nil
}

// pendingClaims returns the keys and tokens of the claims whose Token is a
// pending value, checking each key with check.
func pendingClaims(op string, claims []Claim, check func(string) error) (keys, tokens []string, err error) {
	for _, c := range claims {
		if len(c.Token) < 2 || c.Token[:2] != "p:" {
			continue
		}
		if err := check(c.Key); err != nil {
			return nil, nil, fmt.Errorf("dedupe: %s: %w", op, err)
		}
		keys = append(keys, c.Key)
		tokens = append(tokens, c.Token)
	}
	return keys, tokens, nil
}

// Begin takes key's lock for opts.TTL, in one statement. It returns ErrDone
// if the key is done (unless opts.Force), else ErrBusy if another holder has
// the lock, else a Lease with a new random token and a fencing number one
// more than the last one issued for the key (1 for the first). It leaves the
// state Accepted, and creates it (with the horizon) on an absent key. Other
// errors are wrapped: ErrInvalidKey, a TTL that is not positive, or
// PostgreSQL's.
func (p *Postgres) Begin(ctx context.Context, key string, opts BeginOptions) (Lease, error) {
	if err := pgKey(key); err != nil {
		return Lease{}, fmt.Errorf("dedupe: begin: %w", err)
	}
	if opts.TTL <= 0 {
		return Lease{}, fmt.Errorf("dedupe: begin %s: lock TTL %v is not positive", key, opts.TTL)
	}
	token := rand.Text()
	var state string
	var fence int64
	var lockToken *string
	err := p.pool.QueryRow(ctx, p.q.begin, key, token, redisMillis(opts.TTL), opts.Force, p.horizonMs).
		Scan(&state, &fence, &lockToken)
	if err != nil {
		return Lease{}, fmt.Errorf("dedupe: begin %s: %w", key, err)
	}
	switch {
	case lockToken != nil && *lockToken == token:
		return Lease{Key: key, Token: token, Fence: fence}, nil
	case state == "d" && !opts.Force:
		return Lease{}, ErrDone
	}
	return Lease{}, ErrBusy
}

// Extend resets the lock's TTL to ttl, in one statement, if l still holds
// it; else ErrLockLost. Other errors are wrapped: ErrInvalidKey, a ttl that
// is not positive, or PostgreSQL's.
func (p *Postgres) Extend(ctx context.Context, l Lease, ttl time.Duration) error {
	if err := pgKey(l.Key); err != nil {
		return fmt.Errorf("dedupe: extend: %w", err)
	}
	if ttl <= 0 {
		return fmt.Errorf("dedupe: extend %s: lock TTL %v is not positive", l.Key, ttl)
	}
	return p.lockOp(ctx, "extend", l, p.q.extend, l.Key, l.Token, redisMillis(ttl))
}

// Finish marks the key done and releases the lock, in one statement, if l
// still holds the lock; else ErrLockLost and nothing changes. Other errors
// are wrapped: ErrInvalidKey or PostgreSQL's.
func (p *Postgres) Finish(ctx context.Context, l Lease) error {
	if err := pgKey(l.Key); err != nil {
		return fmt.Errorf("dedupe: finish: %w", err)
	}
	return p.lockOp(ctx, "finish", l, p.q.finish, l.Key, l.Token, l.Fence, p.horizonMs)
}

// Unlock releases the lock without marking the key done, in one statement,
// if l still holds it; else ErrLockLost. The row keeps its fence. Other
// errors are wrapped: ErrInvalidKey or PostgreSQL's.
func (p *Postgres) Unlock(ctx context.Context, l Lease) error {
	if err := pgKey(l.Key); err != nil {
		return fmt.Errorf("dedupe: unlock: %w", err)
	}
	return p.lockOp(ctx, "unlock", l, p.q.unlock, l.Key, l.Token)
}

// lockOp runs a statement that changes one row where l holds the lock.
func (p *Postgres) lockOp(ctx context.Context, op string, l Lease, q string, args ...any) error {
	if l.Token == "" {
		return ErrLockLost
	}
	tag, err := p.pool.Exec(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("dedupe: %s %s: %w", op, l.Key, err)
	}
	if tag.RowsAffected() != 1 {
		return ErrLockLost
	}
	return nil
}

// Lookup reports key's state, last fencing number, whether it is locked,
// the remaining time before its row expires and the raw state value, in one
// statement. An expired row is absent (Locked still reports a live lock).
// Errors are wrapped: ErrInvalidKey, a value that is not a dedupe state, or
// PostgreSQL's.
func (p *Postgres) Lookup(ctx context.Context, key string) (Record, error) {
	if err := pgKey(key); err != nil {
		return Record{}, fmt.Errorf("dedupe: lookup: %w", err)
	}
	var (
		rec    Record
		state  string
		fence  int64
		locked bool
		ttlUs  int64
	)
	err := p.pool.QueryRow(ctx, p.q.lookup, key).Scan(&state, &fence, &locked, &ttlUs)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Record{}, nil
	case err != nil:
		return Record{}, fmt.Errorf("dedupe: lookup %s: %w", key, err)
	}
	rec.Locked = locked
	if ttlUs <= 0 {
		return rec, nil
	}
	rec.Raw, rec.Fence, rec.TTL = state, fence, time.Duration(ttlUs)*time.Microsecond
	rec.State, err = parseStoreValue(state)
	if err != nil {
		return Record{}, fmt.Errorf("dedupe: lookup %s: %w", key, err)
	}
	return rec, nil
}

// Ping checks PostgreSQL answers, in one round trip. Errors are wrapped.
func (p *Postgres) Ping(ctx context.Context) error {
	if err := p.pool.Ping(ctx); err != nil {
		return fmt.Errorf("dedupe: ping: %w", err)
	}
	return nil
}

// Cleanup deletes up to n expired rows (n <= 0 means CleanupBatch) whose
// lock is not held, in one statement, and returns how many it deleted. It
// takes rows through the expires_at index and skips rows that a claim or a
// run has locked (SKIP LOCKED), so it never waits for them. Errors are
// wrapped.
func (p *Postgres) Cleanup(ctx context.Context, n int) (int64, error) {
	if n <= 0 {
		n = p.batch
	}
	tag, err := p.pool.Exec(ctx, p.q.cleanup, n)
	if err != nil {
		return 0, fmt.Errorf("dedupe: cleanup %s: %w", p.t.quoted, err)
	}
	return tag.RowsAffected(), nil
}

// RunCleanup runs Cleanup every CleanupInterval until ctx is done, each time
// deleting batches until one deletes fewer than CleanupBatch rows (at most
// 100 batches a round, so that a backlog is worked off in bounded steps).
// Errors are passed to onErr (may be nil) and the loop goes on. It returns
// when ctx is done. Safe to run in several processes at once.
func (p *Postgres) RunCleanup(ctx context.Context, onErr func(error)) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for range 100 {
			n, err := p.Cleanup(ctx, p.batch)
			if err != nil {
				if onErr != nil && ctx.Err() == nil {
					onErr(err)
				}
				break
			}
			if n < int64(p.batch) {
				break
			}
		}
	}
}
