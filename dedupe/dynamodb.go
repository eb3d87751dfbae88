package dedupe

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"golang.org/x/sync/errgroup"
)

// Defaults of DynamoDBOptions.
const (
	DefaultDynamoDBTable     = "wagate_dedupe"
	dynamoDefaultParallel    = 32
	dynamoMaxAttempts        = 8
	dynamoPingKey            = "wagate:ping"
	dynamoMinHorizon         = time.Second
	dynamoAttrKey            = "k"
	dynamoAttrState          = "s"
	dynamoAttrFence          = "f"
	dynamoAttrLockToken      = "lt"
	dynamoAttrLockUntil      = "lu"
	dynamoAttrExpires        = "x"
	dynamoStateAccepted      = "a"
	dynamoStateDone          = "d"
	dynamoConditionNotLive   = "attribute_not_exists(k) OR x <= :now"
	dynamoConditionHoldsLock = "lt = :tok AND lu > :nowms"
)

// DynamoDBOptions configure NewDynamoDB. The zero value is a valid
// configuration.
type DynamoDBOptions struct {
	// Table is the table holding the states. "" means DefaultDynamoDBTable
	// ("wagate_dedupe").
	Table string
	// Horizon is how long a key's state is kept after it is first written.
	// The item's expiry is its TTL attribute x, in whole Unix seconds
	// (DynamoDB's unit), rounded down: a key is forgotten up to 1 s before
	// the horizon ends. Zero or negative means DefaultHorizon; less than
	// 1 s means 1 s.
	Horizon time.Duration
	// Parallel is how many conditional writes one Claim, Accept or Release
	// keeps in flight. Zero means 32.
	Parallel int
}

// DynamoDB is a Store on an Amazon DynamoDB table, through the AWS SDK for
// Go v2: for deployments on AWS that keep such state in DynamoDB.
//
// # Layout
//
// One item per event, with the key as its partition key (create the table
// with InitTable, `wagate dedupe init`; see DynamoDBTableDefinition):
//
//	k   S  the dedupe key (partition key)
//	s   S  p:<owner>:<unix ms>:<nonce> (Pending), a (Accepted), d (Done)
//	f   N  the last fencing number issued; absent means 0
//	lt  S  the lease's token while a run holds the lock
//	lu  N  when that lock expires, Unix milliseconds
//	x   N  the end of the horizon, Unix seconds: the table's TTL attribute
//
// DynamoDB deletes an item some time after its TTL passes (within a few
// days: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/howitworks-ttl.html), so every method treats an item whose x has passed as absent, and
// Claim and Begin overwrite it (its fence starts over, as a Redis key's does
// after its TTL). Times come from the client's clock: keep the clocks of
// ingresses and workers in sync (NTP), as lock expiry depends on them.
//
// # Requests and atomicity
//
// Every write is one conditional request on one item, atomic on the server.
// Claim sends one PutItem per key with the condition
// "attribute_not_exists(k) OR x <= :now" and
// ReturnValuesOnConditionCheckFailure ALL_OLD, so that a refused claim
// returns the item that refused it: the prior state, read atomically with
// the claim. The keys of a batch go in parallel (Parallel in flight), not in
// one request: BatchWriteItem takes no conditions, and TransactWriteItems
// is all-or-nothing, so one duplicate in a batch would refuse every claim
// in it (and a transaction costs twice the write units). A batch therefore
// costs one round trip of latency, but one write request per key. (Sources:
// https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_PutItem.html,
// API_BatchWriteItem.html and API_TransactWriteItems.html on the same site.) Where a
// server returns no item with a refused condition (older emulators), the
// backend reads the item with a consistent GetItem and, if it is gone or
// expired by then, writes again. Begin is one UpdateItem whose condition
// checks done and the lock, Extend, Finish and Unlock are UpdateItems
// conditioned on the lock token, Release a conditional DeleteItem, Lookup a
// consistent GetItem.
//
// # Durability
//
// As durable as DynamoDB: a write is acknowledged once stored in several
// availability zones. Reads are strongly consistent.
//
// # Errors and context
//
// Every method bounds its wait by ctx and the SDK's retryer (throttled
// requests are retried with backoff). Errors from DynamoDB are wrapped with
// the operation ("dedupe: claim: …") and never match ErrDone, ErrBusy or
// ErrLockLost. Keys must be valid UTF-8, at most 1024 bytes; others are
// refused with ErrInvalidKey.
//
// A DynamoDB is safe for concurrent use.
type DynamoDB struct {
	c         *dynamodb.Client
	table     *string
	horizonMs int64
	parallel  int
}

var _ Store = (*DynamoDB)(nil)

// NewDynamoDB returns a Store on c, which the caller keeps. It sends nothing
// to DynamoDB; call CheckTable (or InitTable) and Ping.
func NewDynamoDB(c *dynamodb.Client, opts DynamoDBOptions) *DynamoDB {
	table := opts.Table
	if table == "" {
		table = DefaultDynamoDBTable
	}
	h := opts.Horizon
	switch {
	case h <= 0:
		h = DefaultHorizon
	case h < dynamoMinHorizon:
		h = dynamoMinHorizon
	}
	p := opts.Parallel
	if p <= 0 {
		p = dynamoDefaultParallel
	}
	return &DynamoDB{c: c, table: aws.String(table), horizonMs: redisMillis(h), parallel: p}
}

// dynamoKey checks key is one DynamoDB can store and we accept.
func dynamoKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	case len(key) > maxStoreKey:
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidKey, len(key), maxStoreKey)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidKey)
	}
	return nil
}

// Attribute value helpers.
func avS(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }
func avN(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}
func keyOf(k string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{dynamoAttrKey: avS(k)}
}

// dynamoItem is an item read back.
type dynamoItem struct {
	state     string
	fence     int64
	lockToken string
	lockUntil int64 // Unix ms
	expires   int64 // Unix s
}

// parseDynamoItem reads an item; ok is false for no item.
func parseDynamoItem(m map[string]types.AttributeValue) (it dynamoItem, ok bool, err error) {
	if len(m) == 0 {
		return it, false, nil
	}
	str := func(name string) string {
		if v, ok := m[name].(*types.AttributeValueMemberS); ok {
			return v.Value
		}
		return ""
	}
	num := func(name string) int64 {
		if v, ok := m[name].(*types.AttributeValueMemberN); ok {
			n, perr := strconv.ParseInt(v.Value, 10, 64)
			if perr != nil && err == nil {
				err = fmt.Errorf("attribute %s: %q is not an integer", name, v.Value)
			}
			return n
		}
		return 0
	}
	it = dynamoItem{
		state:     str(dynamoAttrState),
		fence:     num(dynamoAttrFence),
		lockToken: str(dynamoAttrLockToken),
		lockUntil: num(dynamoAttrLockUntil),
		expires:   num(dynamoAttrExpires),
	}
	return it, true, err
}

// live reports whether the item's state has not expired at nowMs.
func (it dynamoItem) live(nowMs int64) bool { return it.expires*1000 > nowMs }

// locked reports whether the item's lock is held at nowMs.
func (it dynamoItem) locked(nowMs int64) bool { return it.lockToken != "" && it.lockUntil > nowMs }

// expiry returns the TTL attribute for a state first written at nowMs.
func (d *DynamoDB) expiry(nowMs int64) int64 { return (nowMs + d.horizonMs) / 1000 }

// isConditionFailed returns the refused item of a failed condition (nil if
// the server returned none) and whether err is such a failure.
func isConditionFailed(err error) (map[string]types.AttributeValue, bool) {
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return ccf.Item, true
	}
	return nil, false
}

// get reads key's item with a strongly consistent GetItem.
func (d *DynamoDB) get(ctx context.Context, key string) (dynamoItem, bool, error) {
	out, err := d.c.GetItem(ctx, &dynamodb.GetItemInput{TableName: d.table, Key: keyOf(key), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return dynamoItem{}, false, err
	}
	return parseDynamoItem(out.Item)
}

// refused returns the item of a refused condition: the one the server
// returned, else a consistent read of it.
func (d *DynamoDB) refused(ctx context.Context, key string, returned map[string]types.AttributeValue) (dynamoItem, bool, error) {
	if len(returned) > 0 {
		return parseDynamoItem(returned)
	}
	return d.get(ctx, key)
}

// Claim claims every key with one conditional PutItem each, in parallel
// (see DynamoDB), writing p:<owner>:<unix ms>:<nonce>, and returns one Claim
// per key, in order, or nil and nil for no keys. A key repeated in keys is
// claimed by its first occurrence; later ones see Pending with its Token.
// Errors are wrapped: ErrInvalidKey for a bad key (before anything is sent),
// else DynamoDB's; on an error some keys may have been claimed all the same
// and stay Pending, which a later claim answers as "publish again".
func (d *DynamoDB) Claim(ctx context.Context, owner string, keys []string) ([]Claim, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	for _, k := range keys {
		if err := dynamoKey(k); err != nil {
			return nil, fmt.Errorf("dedupe: claim: %w", err)
		}
	}
	value := pendingValue(owner, time.Now())
	distinct := sortedDistinct(keys)
	states := make([]string, len(distinct))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(d.parallel)
	for i, k := range distinct {
		g.Go(func() error {
			s, err := d.claimOne(gctx, k, value)
			if err != nil {
				return fmt.Errorf("dedupe: claim %s: %w", k, err)
			}
			states[i] = s
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	prior := make(map[string]string, len(distinct))
	for i, k := range distinct {
		prior[k] = states[i]
	}
	return claimsFrom(keys, value, prior)
}

// claimOne claims key with value and returns the state value after the
// claim: value if it claimed the key, else the one that refused it.
func (d *DynamoDB) claimOne(ctx context.Context, key, value string) (string, error) {
	for range dynamoMaxAttempts {
		now := time.Now().UnixMilli()
		_, err := d.c.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: d.table,
			Item: map[string]types.AttributeValue{
				dynamoAttrKey:     avS(key),
				dynamoAttrState:   avS(value),
				dynamoAttrExpires: avN(d.expiry(now)),
			},
			ConditionExpression:                 aws.String(dynamoConditionNotLive),
			ExpressionAttributeValues:           map[string]types.AttributeValue{":now": avN(now / 1000)},
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		})
		if err == nil {
			return value, nil
		}
		returned, ok := isConditionFailed(err)
		if !ok {
			return "", err
		}
		it, found, err := d.refused(ctx, key, returned)
		if err != nil {
			return "", err
		}
		if !found || !it.live(time.Now().UnixMilli()) {
			continue // gone or expired since: claim again
		}
		return it.state, nil
	}
	return "", fmt.Errorf("no stable answer after %d attempts", dynamoMaxAttempts)
}

// Accept moves each claim's key to Accepted where its state is still the
// claim's Token, with one conditional UpdateItem per key, in parallel.
// Claims with an empty Token, or one that is not a pending value, are
// skipped; a key whose state has moved on is left as it is, without error.
// Errors are wrapped: ErrInvalidKey or DynamoDB's.
func (d *DynamoDB) Accept(ctx context.Context, claims []Claim) error {
	return d.compareAndSet(ctx, "accept", claims, func(ctx context.Context, key, token string) error {
		_, err := d.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:           d.table,
			Key:                 keyOf(key),
			UpdateExpression:    aws.String("SET s = :a"),
			ConditionExpression: aws.String("s = :tok AND x > :now"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":a": avS(dynamoStateAccepted), ":tok": avS(token), ":now": avN(time.Now().Unix()),
			},
		})
		return err
	})
}

// Release deletes each claim's item where its state is still the claim's
// Token, with one conditional DeleteItem per key, in parallel. Skips and
// errors as Accept.
func (d *DynamoDB) Release(ctx context.Context, claims []Claim) error {
	return d.compareAndSet(ctx, "release", claims, func(ctx context.Context, key, token string) error {
		_, err := d.c.DeleteItem(ctx, &dynamodb.DeleteItemInput{
			TableName:                 d.table,
			Key:                       keyOf(key),
			ConditionExpression:       aws.String("s = :tok"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":tok": avS(token)},
		})
		return err
	})
}

// compareAndSet runs write on every claim with a pending Token, in
// parallel; a refused condition is no error.
func (d *DynamoDB) compareAndSet(ctx context.Context, op string, claims []Claim, write func(ctx context.Context, key, token string) error) error {
	keys, tokens, err := pendingClaims(op, claims, dynamoKey)
	if err != nil || len(keys) == 0 {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(d.parallel)
	for i, k := range keys {
		g.Go(func() error {
			err := write(gctx, k, tokens[i])
			if _, refused := isConditionFailed(err); err != nil && !refused {
				return fmt.Errorf("dedupe: %s %s: %w", op, k, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// Begin takes key's lock for opts.TTL with one conditional UpdateItem (a
// second request when the item expired and is overwritten). It returns
// ErrDone if the key is done (unless opts.Force), else ErrBusy if another
// holder has the lock, else a Lease with a new random token and a fencing
// number one more than the last one issued for the key (1 for the first). It
// leaves the state Accepted, and creates it (with the horizon) on an absent
// key. Other errors are wrapped: ErrInvalidKey, a TTL that is not positive,
// or DynamoDB's.
func (d *DynamoDB) Begin(ctx context.Context, key string, opts BeginOptions) (Lease, error) {
	if err := dynamoKey(key); err != nil {
		return Lease{}, fmt.Errorf("dedupe: begin: %w", err)
	}
	if opts.TTL <= 0 {
		return Lease{}, fmt.Errorf("dedupe: begin %s: lock TTL %v is not positive", key, opts.TTL)
	}
	token := rand.Text()
	cond := "attribute_not_exists(k) OR (x > :now AND (attribute_not_exists(lu) OR lu <= :nowms) AND s <> :d)"
	if opts.Force {
		cond = "attribute_not_exists(k) OR (x > :now AND (attribute_not_exists(lu) OR lu <= :nowms))"
	}
	for range dynamoMaxAttempts {
		now := time.Now().UnixMilli()
		until := now + redisMillis(opts.TTL)
		vals := map[string]types.AttributeValue{
			":a": avS(dynamoStateAccepted), ":zero": avN(0), ":one": avN(1), ":tok": avS(token),
			":until": avN(until), ":exp": avN(d.expiry(now)), ":now": avN(now / 1000), ":nowms": avN(now),
		}
		if !opts.Force {
			vals[":d"] = avS(dynamoStateDone)
		}
		out, err := d.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                           d.table,
			Key:                                 keyOf(key),
			UpdateExpression:                    aws.String("SET s = :a, f = if_not_exists(f, :zero) + :one, lt = :tok, lu = :until, x = if_not_exists(x, :exp)"),
			ConditionExpression:                 aws.String(cond),
			ExpressionAttributeValues:           vals,
			ReturnValues:                        types.ReturnValueUpdatedNew,
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		})
		if err == nil {
			it, _, err := parseDynamoItem(out.Attributes)
			if err != nil || it.fence < 1 {
				return Lease{}, fmt.Errorf("dedupe: begin %s: unexpected answer %v (%v)", key, out.Attributes, err)
			}
			return Lease{Key: key, Token: token, Fence: it.fence}, nil
		}
		returned, ok := isConditionFailed(err)
		if !ok {
			return Lease{}, fmt.Errorf("dedupe: begin %s: %w", key, err)
		}
		it, found, err := d.refused(ctx, key, returned)
		if err != nil {
			return Lease{}, fmt.Errorf("dedupe: begin %s: %w", key, err)
		}
		now = time.Now().UnixMilli()
		switch {
		case !found:
			continue // deleted since: try again
		case !it.live(now):
			l, err := d.beginExpired(ctx, key, token, opts.TTL)
			if err == nil || !errors.Is(err, errRetry) {
				return l, err
			}
			continue
		case it.state == dynamoStateDone && !opts.Force:
			return Lease{}, ErrDone
		case it.locked(now):
			return Lease{}, ErrBusy
		}
		// Unlocked since the refusal: try again.
	}
	return Lease{}, fmt.Errorf("dedupe: begin %s: no stable answer after %d attempts", key, dynamoMaxAttempts)
}

// errRetry says a conditional write lost a race and the caller should read
// the item again.
var errRetry = errors.New("dedupe: retry")

// beginExpired takes the lock of an expired item by overwriting it with a
// fresh state (fence 1), conditioned on its still being expired or absent.
func (d *DynamoDB) beginExpired(ctx context.Context, key, token string, ttl time.Duration) (Lease, error) {
	now := time.Now().UnixMilli()
	_, err := d.c.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: d.table,
		Item: map[string]types.AttributeValue{
			dynamoAttrKey:       avS(key),
			dynamoAttrState:     avS(dynamoStateAccepted),
			dynamoAttrFence:     avN(1),
			dynamoAttrLockToken: avS(token),
			dynamoAttrLockUntil: avN(now + redisMillis(ttl)),
			dynamoAttrExpires:   avN(d.expiry(now)),
		},
		ConditionExpression:       aws.String(dynamoConditionNotLive),
		ExpressionAttributeValues: map[string]types.AttributeValue{":now": avN(now / 1000)},
	})
	if _, refused := isConditionFailed(err); refused {
		return Lease{}, errRetry
	}
	if err != nil {
		return Lease{}, fmt.Errorf("dedupe: begin %s: %w", key, err)
	}
	return Lease{Key: key, Token: token, Fence: 1}, nil
}

// Extend resets the lock's TTL to ttl, with one conditional UpdateItem, if
// l still holds it; else ErrLockLost. Other errors are wrapped:
// ErrInvalidKey, a ttl that is not positive, or DynamoDB's.
func (d *DynamoDB) Extend(ctx context.Context, l Lease, ttl time.Duration) error {
	if err := dynamoKey(l.Key); err != nil {
		return fmt.Errorf("dedupe: extend: %w", err)
	}
	if ttl <= 0 {
		return fmt.Errorf("dedupe: extend %s: lock TTL %v is not positive", l.Key, ttl)
	}
	now := time.Now().UnixMilli()
	return d.lockOp(ctx, "extend", l, "SET lu = :until", map[string]types.AttributeValue{":until": avN(now + redisMillis(ttl))}, now)
}

// Finish marks the key done and releases the lock, with one conditional
// UpdateItem, if l still holds the lock; else ErrLockLost and nothing
// changes. Other errors are wrapped: ErrInvalidKey or DynamoDB's.
func (d *DynamoDB) Finish(ctx context.Context, l Lease) error {
	if err := dynamoKey(l.Key); err != nil {
		return fmt.Errorf("dedupe: finish: %w", err)
	}
	return d.lockOp(ctx, "finish", l, "SET s = :d REMOVE lt, lu", map[string]types.AttributeValue{":d": avS(dynamoStateDone)}, time.Now().UnixMilli())
}

// Unlock releases the lock without marking the key done, with one
// conditional UpdateItem, if l still holds it; else ErrLockLost. The item
// keeps its fence. Other errors are wrapped: ErrInvalidKey or DynamoDB's.
func (d *DynamoDB) Unlock(ctx context.Context, l Lease) error {
	if err := dynamoKey(l.Key); err != nil {
		return fmt.Errorf("dedupe: unlock: %w", err)
	}
	return d.lockOp(ctx, "unlock", l, "REMOVE lt, lu", nil, time.Now().UnixMilli())
}

// lockOp runs update on l's item where l holds the lock at nowMs.
func (d *DynamoDB) lockOp(ctx context.Context, op string, l Lease, update string, vals map[string]types.AttributeValue, nowMs int64) error {
	if l.Token == "" {
		return ErrLockLost
	}
	if vals == nil {
		vals = map[string]types.AttributeValue{}
	}
	vals[":tok"], vals[":nowms"] = avS(l.Token), avN(nowMs)
	_, err := d.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 d.table,
		Key:                       keyOf(l.Key),
		UpdateExpression:          aws.String(update),
		ConditionExpression:       aws.String(dynamoConditionHoldsLock),
		ExpressionAttributeValues: vals,
	})
	if _, refused := isConditionFailed(err); refused {
		return ErrLockLost
	}
	if err != nil {
		return fmt.Errorf("dedupe: %s %s: %w", op, l.Key, err)
	}
	return nil
}

// Lookup reports key's state, last fencing number, whether it is locked,
// the remaining time before its state expires and the raw state value, with
// one consistent GetItem. An expired item is absent (Locked still reports a
// live lock). Errors are wrapped: ErrInvalidKey, a value that is not a
// dedupe state, or DynamoDB's.
func (d *DynamoDB) Lookup(ctx context.Context, key string) (Record, error) {
	if err := dynamoKey(key); err != nil {
		return Record{}, fmt.Errorf("dedupe: lookup: %w", err)
	}
	it, found, err := d.get(ctx, key)
	if err != nil {
		return Record{}, fmt.Errorf("dedupe: lookup %s: %w", key, err)
	}
	if !found {
		return Record{}, nil
	}
	now := time.Now().UnixMilli()
	rec := Record{Locked: it.locked(now)}
	if !it.live(now) {
		return rec, nil
	}
	rec.Raw, rec.Fence, rec.TTL = it.state, it.fence, time.Duration(it.expires*1000-now)*time.Millisecond
	rec.State, err = parseStoreValue(it.state)
	if err != nil {
		return Record{}, fmt.Errorf("dedupe: lookup %s: %w", key, err)
	}
	return rec, nil
}

// Ping checks the table answers, with one GetItem of a key no event uses.
// Errors are wrapped.
func (d *DynamoDB) Ping(ctx context.Context) error {
	if _, _, err := d.get(ctx, dynamoPingKey); err != nil {
		return fmt.Errorf("dedupe: ping: %w", err)
	}
	return nil
}
