package dedupe_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/dedupe/dedupetest"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
)

// newClient returns a client for the Redis at url, closed at the end of t.
func newClient(t testing.TB, url string, hooks ...redis.Hook) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("redis url %q: %v", url, err)
	}
	c := redis.NewClient(opts)
	for _, h := range hooks {
		c.AddHook(h)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// startCluster starts a one-node Redis Cluster holding every slot: it routes
// and refuses cross-slot scripts like a real cluster.
func startCluster(t testing.TB) *redis.ClusterClient {
	t.Helper()
	r := testenv.StartRedis(t, "--cluster-enabled", "yes")
	admin := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer admin.Close()
	ctx := context.Background()
	if err := admin.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("cluster addslots: %v", err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		info, err := admin.ClusterInfo(ctx).Result()
		return err == nil && strings.Contains(info, "cluster_state:ok")
	}, "cluster on %s never became ok", r.Addr())
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{r.Addr()}})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestRedis(t *testing.T) {
	url := testenv.RedisURL(t)
	t.Run("Plain", func(t *testing.T) {
		dedupetest.Run(t, func(t *testing.T, horizon time.Duration) dedupe.Store {
			return dedupe.NewRedis(newClient(t, url), dedupe.RedisOptions{Horizon: horizon})
		})
	})
	t.Run("Prefix", func(t *testing.T) {
		dedupetest.Run(t, func(t *testing.T, horizon time.Duration) dedupe.Store {
			return dedupe.NewRedis(newClient(t, url), dedupe.RedisOptions{Horizon: horizon, Prefix: "wg:"})
		})
	})
	// BeginAll and FinishAll on a store without dedupe.Batch: one call per key.
	t.Run("WithoutBatch", func(t *testing.T) {
		dedupetest.Run(t, func(t *testing.T, horizon time.Duration) dedupe.Store {
			return storeOnly{dedupe.NewRedis(newClient(t, url), dedupe.RedisOptions{Horizon: horizon})}
		})
	})
}

// storeOnly hides every method of a Store but those of the interface.
type storeOnly struct{ dedupe.Store }

func TestRedisCluster(t *testing.T) {
	c := startCluster(t)
	dedupetest.Run(t, func(t *testing.T, horizon time.Duration) dedupe.Store {
		return dedupe.NewRedis(c, dedupe.RedisOptions{Horizon: horizon})
	})
}

// TestRedisClusterThreeMasters runs the contract against a real cluster of
// three masters (one replica each), where a batch's keys lie on several
// nodes and a state key and its lock must be on the same one.
// Off Cluster, Accept runs one script on all its keys. A Cluster node
// reached with a plain client refuses keys of several slots (CROSSSLOT):
// Accept then runs one script per key, and keeps doing so.
func TestRedisAcceptOnClusterNodeWithPlainClient(t *testing.T) {
	cc := startCluster(t)
	c := redis.NewClient(&redis.Options{Addr: cc.Options().Addrs[0]})
	t.Cleanup(func() { _ = c.Close() })
	s := dedupe.NewRedis(c, dedupe.RedisOptions{})
	ctx := context.Background()
	for round := range 2 {
		// Keys with hash tags of their own: a slot each, on the one node.
		keys := []string{"{a}" + strconv.Itoa(round), "{b}" + strconv.Itoa(round), "{c}" + strconv.Itoa(round)}
		var claims []dedupe.Claim
		for _, k := range keys {
			cl, err := s.Claim(ctx, "ing", []string{k})
			if err != nil {
				t.Fatalf("round %d: Claim %s: %v", round, k, err)
			}
			claims = append(claims, cl...)
		}
		if err := s.Accept(ctx, claims); err != nil {
			t.Fatalf("round %d: Accept: %v", round, err)
		}
		for _, k := range keys {
			if r, err := s.Lookup(ctx, k); err != nil || r.State != dedupe.Accepted {
				t.Fatalf("round %d: %s: %v %v, want accepted", round, k, r.State, err)
			}
		}
	}
}

func TestRedisClusterThreeMasters(t *testing.T) {
	cl := testenv.StartRedisCluster(t)
	var addrs []string
	for _, n := range cl.Nodes[:3] {
		addrs = append(addrs, n.Addr())
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { _ = c.Close() })
	dedupetest.Run(t, func(t *testing.T, horizon time.Duration) dedupe.Store {
		return dedupe.NewRedis(c, dedupe.RedisOptions{Horizon: horizon})
	})
}

// TestRedisClusterSlots checks that every state key and its lock share a
// Cluster slot, by asking the server.
func TestRedisClusterSlots(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	for _, tc := range []struct{ prefix, key, state, lock string }{
		{"", "wa:AAAAAAAAAAAAAAAAAAAAAA", "wa:AAAAAAAAAAAAAAAAAAAAAA", "{wa:AAAAAAAAAAAAAAAAAAAAAA}:l"},
		{"wg:", "wa:x", "wg:wa:x", "{wg:wa:x}:l"},
		{"{wg}:", "wa:x", "{wg}:wa:x", "{wg}:wa:x:l"},
		{"", "user:{42}:evt", "user:{42}:evt", "user:{42}:evt:l"},
		{"", "a{b", "a{b", "{a{b}:l"},
		{"", "{", "{", "{{}:l"},
	} {
		s := dedupe.NewRedis(c, dedupe.RedisOptions{Prefix: tc.prefix})
		l, err := s.Begin(ctx, tc.key, dedupe.BeginOptions{TTL: time.Minute})
		if err != nil {
			t.Fatalf("Begin(%q, prefix %q): %v", tc.key, tc.prefix, err)
		}
		if got, _ := c.Get(ctx, tc.state).Result(); got != "11" {
			t.Errorf("state %q = %q, want 11 (accepted, fence 1)", tc.state, got)
		}
		if got, _ := c.Get(ctx, tc.lock).Result(); got != l.Token {
			t.Errorf("lock %q = %q, want the token %q", tc.lock, got, l.Token)
		}
		s1, err1 := c.ClusterKeySlot(ctx, tc.state).Result()
		s2, err2 := c.ClusterKeySlot(ctx, tc.lock).Result()
		if err1 != nil || err2 != nil || s1 != s2 {
			t.Errorf("slots of %q and %q: %d, %d (%v, %v); want equal", tc.state, tc.lock, s1, s2, err1, err2)
		}
	}
}

// roundTrips counts the commands and pipelines a client sends: each is one
// round trip.
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// count returns how many round trips fn made.
func (h *roundTrips) count(fn func()) int64 {
	before := h.n.Load()
	fn()
	return h.n.Load() - before
}

func TestRedisRoundTrips(t *testing.T) {
	hook := &roundTrips{}
	c := newClient(t, testenv.RedisURL(t), hook)
	s := dedupe.NewRedis(c, dedupe.RedisOptions{})
	ctx := context.Background()
	keys := make([]string, 50)
	for i := range keys {
		keys[i] = messages.KeyOf("roundtrips|" + strconv.Itoa(i) + "|" + t.Name() + time.Now().String())
	}
	key := keys[0]
	more := make([]string, 50)
	for i := range more {
		more[i] = messages.KeyOf("roundtrips-more|" + strconv.Itoa(i) + "|" + t.Name() + time.Now().String())
	}

	// Load every script once: a server without a script costs one more
	// round trip, once.
	warm := messages.KeyOf("roundtrips-warm|" + time.Now().String())
	wc, _ := s.Claim(ctx, "warm", []string{warm, warm + "2"}) // Accept of two keys: scriptAcceptAll
	_ = s.Accept(ctx, wc)
	_ = s.Release(ctx, wc)
	wl, _ := s.Begin(ctx, warm, dedupe.BeginOptions{TTL: time.Minute})
	_ = s.Extend(ctx, wl, time.Minute)
	_ = s.Unlock(ctx, wl)
	_ = s.Finish(ctx, wl)
	_, _ = s.Lookup(ctx, warm)

	var claims []dedupe.Claim
	var lease dedupe.Lease
	steps := []struct {
		name string
		fn   func() error
	}{
		{"Claim 50", func() (err error) { claims, err = s.Claim(ctx, "ing", keys); return err }},
		{"Claim 50 again", func() error { _, err := s.Claim(ctx, "ing", keys); return err }},
		{"Release 25", func() error { return s.Release(ctx, claims[25:]) }},
		{"Accept 50", func() error { return s.Accept(ctx, claims) }},
		{"ClaimAccept 50 and 50", func() error {
			out := s.ClaimAccept(ctx, "ing", more, claims)
			return errors.Join(out.AcceptErr, out.ClaimErr)
		}},
		{"Begin", func() (err error) { lease, err = s.Begin(ctx, key, dedupe.BeginOptions{TTL: time.Minute}); return err }},
		{"Begin busy", func() error {
			if _, err := s.Begin(ctx, key, dedupe.BeginOptions{TTL: time.Minute}); !errors.Is(err, dedupe.ErrBusy) {
				return fmt.Errorf("got %v, want ErrBusy", err)
			}
			return nil
		}},
		{"Extend", func() error { return s.Extend(ctx, lease, time.Minute) }},
		{"Unlock", func() error { return s.Unlock(ctx, lease) }},
		{"Unlock lost", func() error {
			if err := s.Unlock(ctx, lease); !errors.Is(err, dedupe.ErrLockLost) {
				return fmt.Errorf("got %v, want ErrLockLost", err)
			}
			return nil
		}},
		{"Begin again", func() (err error) { lease, err = s.Begin(ctx, key, dedupe.BeginOptions{TTL: time.Minute}); return err }},
		{"Finish", func() error { return s.Finish(ctx, lease) }},
		{"Begin done", func() error {
			if _, err := s.Begin(ctx, key, dedupe.BeginOptions{TTL: time.Minute}); !errors.Is(err, dedupe.ErrDone) {
				return fmt.Errorf("got %v, want ErrDone", err)
			}
			return nil
		}},
		{"Lookup", func() error { _, err := s.Lookup(ctx, key); return err }},
		{"Ping", func() error { return s.Ping(ctx) }},
	}
	for _, st := range steps {
		var err error
		if n := hook.count(func() { err = st.fn() }); n != 1 {
			t.Errorf("%s: %d round trips, want 1", st.name, n)
		}
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
	}
	// Nothing to send, nothing sent.
	for name, fn := range map[string]func(){
		"Claim none":         func() { _, _ = s.Claim(ctx, "ing", nil) },
		"Accept no tokens":   func() { _ = s.Accept(ctx, []dedupe.Claim{{Key: key}}) },
		"Release no tokens":  func() { _ = s.Release(ctx, []dedupe.Claim{{Key: key}}) },
		"Finish zero lease":  func() { _ = s.Finish(ctx, dedupe.Lease{Key: key}) },
		"Claim invalid keys": func() { _, _ = s.Claim(ctx, "ing", []string{key, ""}) },
	} {
		if n := hook.count(fn); n != 0 {
			t.Errorf("%s: %d round trips, want 0", name, n)
		}
	}
}

// TestRedisScriptFlush checks that every script is loaded again after the
// server lost it (restart, failover, SCRIPT FLUSH), alone and in pipelines.
func TestRedisScriptFlush(t *testing.T) {
	hook := &roundTrips{}
	c := newClient(t, testenv.StartRedis(t).URL(), hook)
	s := dedupe.NewRedis(c, dedupe.RedisOptions{})
	ctx := context.Background()
	keys := []string{messages.KeyOf("flush|1"), messages.KeyOf("flush|2")}
	claims, err := s.Claim(ctx, "ing", keys)
	if err != nil {
		t.Fatal(err)
	}
	flush := func() {
		t.Helper()
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	flush()
	if n := hook.count(func() { err = s.Accept(ctx, claims) }); err != nil || n != 2 {
		t.Fatalf("Accept after SCRIPT FLUSH: %v, %d round trips; want nil, 2 (EVALSHA, then EVAL)", err, n)
	}
	if n := hook.count(func() { err = s.Accept(ctx, claims) }); err != nil || n != 1 {
		t.Fatalf("Accept once loaded: %v, %d round trips; want nil, 1", err, n)
	}
	flush()
	third := messages.KeyOf("flush|3")
	var out dedupe.ClaimAccepted
	if n := hook.count(func() { out = s.ClaimAccept(ctx, "ing", []string{third}, claims) }); out.AcceptErr != nil || out.ClaimErr != nil || n != 2 {
		t.Fatalf("ClaimAccept after SCRIPT FLUSH: %v, %v, %d round trips; want nil, nil, 2 (EVALSHA and SET, then EVAL)", out.AcceptErr, out.ClaimErr, n)
	}
	if len(out.Claims) != 1 || out.Claims[0].Prior != dedupe.Absent {
		t.Fatalf("ClaimAccept after SCRIPT FLUSH: claims %+v, want one absent", out.Claims)
	}
	flush()
	l, err := s.Begin(ctx, keys[0], dedupe.BeginOptions{TTL: time.Minute})
	if err != nil || l.Fence != 1 {
		t.Fatalf("Begin after SCRIPT FLUSH: %+v, %v", l, err)
	}
	flush()
	if err := s.Finish(ctx, l); err != nil {
		t.Fatalf("Finish after SCRIPT FLUSH: %v", err)
	}
	flush()
	if r, err := s.Lookup(ctx, keys[0]); err != nil || r.State != dedupe.Done {
		t.Fatalf("Lookup after SCRIPT FLUSH: %+v, %v", r, err)
	}
	flush()
	if err := s.Release(ctx, claims); err != nil {
		t.Fatalf("Release after SCRIPT FLUSH: %v", err)
	}
}

// TestRedisLayout checks the stored names and values against the layout
// documented on Redis.
func TestRedisLayout(t *testing.T) {
	c := newClient(t, testenv.RedisURL(t))
	const horizon = time.Hour
	s := dedupe.NewRedis(c, dedupe.RedisOptions{Horizon: horizon})
	ctx := context.Background()
	key := messages.KeyOf("layout|" + t.Name() + "|" + time.Now().String())
	lockName := "{" + key + "}:l"
	get := func(name string) string {
		t.Helper()
		v, err := c.Get(ctx, name).Result()
		if errors.Is(err, redis.Nil) {
			return "<absent>"
		}
		if err != nil {
			t.Fatalf("GET %s: %v", name, err)
		}
		return v
	}
	pttl := func(name string) time.Duration {
		t.Helper()
		d, err := c.PTTL(ctx, name).Result()
		if err != nil {
			t.Fatalf("PTTL %s: %v", name, err)
		}
		return d
	}
	check := func(step, wantState, wantLock string) {
		t.Helper()
		if got := get(key); got != wantState {
			t.Fatalf("%s: state %q, want %q", step, got, wantState)
		}
		if got := get(lockName); got != wantLock {
			t.Fatalf("%s: lock %q, want %q", step, got, wantLock)
		}
		if d := pttl(key); d <= 0 || d > horizon {
			t.Fatalf("%s: state TTL %v, want in (0, %v]", step, d, horizon)
		}
	}

	before := time.Now().UnixMilli()
	claims, err := s.Claim(ctx, "ingress-7", []string{key})
	after := time.Now().UnixMilli()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^p:ingress-7:(\d+)$`).FindStringSubmatch(get(key))
	if m == nil {
		t.Fatalf("pending value %q, want p:ingress-7:<unix ms>", get(key))
	}
	if ms, _ := strconv.ParseInt(m[1], 10, 64); ms < before || ms > after {
		t.Fatalf("pending value time %d, want in [%d, %d]", ms, before, after)
	}
	if claims[0].Token != get(key) {
		t.Fatalf("token %q, want the stored value %q", claims[0].Token, get(key))
	}
	check("claim", claims[0].Token, "<absent>")

	if err := s.Accept(ctx, claims); err != nil {
		t.Fatal(err)
	}
	check("accept", "1", "<absent>")

	l, err := s.Begin(ctx, key, dedupe.BeginOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	check("begin", "11", l.Token)
	if d := pttl(lockName); d <= 0 || d > time.Minute {
		t.Fatalf("lock TTL %v, want in (0, 1m]", d)
	}
	if err := s.Extend(ctx, l, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if d := pttl(lockName); d <= time.Minute || d > 2*time.Minute {
		t.Fatalf("lock TTL after Extend(2m) %v, want in (1m, 2m]", d)
	}
	if err := s.Unlock(ctx, l); err != nil {
		t.Fatal(err)
	}
	check("unlock", "11", "<absent>")

	if l, err = s.Begin(ctx, key, dedupe.BeginOptions{TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	check("begin again", "21", l.Token)
	if err := s.Finish(ctx, l); err != nil {
		t.Fatal(err)
	}
	check("finish", "22", "<absent>")

	if l, err = s.Begin(ctx, key, dedupe.BeginOptions{TTL: time.Minute, Force: true}); err != nil {
		t.Fatal(err)
	}
	check("forced begin", "31", l.Token)
	r, err := s.Lookup(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if r.Raw != "31" || r.State != dedupe.Accepted || r.Fence != 3 || !r.Locked || r.TTL <= 0 || r.TTL > horizon {
		t.Fatalf("Lookup = %+v, want raw 31, accepted, fence 3, locked, TTL in (0, %v]", r, horizon)
	}

	// A state without TTL gets the horizon from Begin and from Finish.
	if err := c.Persist(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, l); err != nil {
		t.Fatal(err)
	}
	check("finish without TTL", "32", "<absent>")
	// "a7" and "d5" are values written before states were integers.
	if err := c.Set(ctx, key, "a7", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if l, err = s.Begin(ctx, key, dedupe.BeginOptions{TTL: time.Minute}); err != nil || l.Fence != 8 {
		t.Fatalf("Begin over a7 without TTL: %+v, %v; want fence 8", l, err)
	}
	check("begin without TTL", "81", l.Token)
	if err := c.Set(ctx, key, "d5", redis.KeepTTL).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Begin(ctx, key, dedupe.BeginOptions{TTL: time.Minute}); !errors.Is(err, dedupe.ErrDone) {
		t.Fatalf("Begin over d5: %v, want ErrDone", err)
	}

	// Begin on an absent key creates its state with the horizon.
	fresh := messages.KeyOf("layout-fresh|" + time.Now().String())
	if _, err := s.Begin(ctx, fresh, dedupe.BeginOptions{TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if got, d := get(fresh), pttl(fresh); got != "11" || d <= 0 || d > horizon {
		t.Fatalf("Begin on absent: state %q TTL %v, want 11 with TTL in (0, %v]", got, d, horizon)
	}

	// The prefix is in front of both names.
	p := dedupe.NewRedis(c, dedupe.RedisOptions{Prefix: "wg:"})
	pk := messages.KeyOf("layout-prefix|" + time.Now().String())
	if _, err := p.Claim(ctx, "i", []string{pk}); err != nil {
		t.Fatal(err)
	}
	if get(pk) != "<absent>" || !strings.HasPrefix(get("wg:"+pk), "p:i:") {
		t.Fatalf("prefixed claim: %q=%q, %q=%q", pk, get(pk), "wg:"+pk, get("wg:"+pk))
	}
	pl, err := p.Begin(ctx, pk, dedupe.BeginOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if got := get("{wg:" + pk + "}:l"); got != pl.Token {
		t.Fatalf("prefixed lock = %q, want %q", got, pl.Token)
	}
}

// TestRedisForeignValues checks that a key holding something this store did
// not write gives an error, never a state.
func TestRedisForeignValues(t *testing.T) {
	c := newClient(t, testenv.RedisURL(t))
	s := dedupe.NewRedis(c, dedupe.RedisOptions{})
	ctx := context.Background()
	str := messages.KeyOf("foreign-string|" + time.Now().String())
	hash := messages.KeyOf("foreign-hash|" + time.Now().String())
	if err := c.Set(ctx, str, "hello", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.HSet(ctx, hash, "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Del(context.Background(), str, hash) })
	for _, k := range []string{str, hash} {
		if cl, err := s.Claim(ctx, "i", []string{k}); err == nil {
			t.Errorf("Claim(%s) = %+v, want an error", k, cl)
		}
		if l, err := s.Begin(ctx, k, dedupe.BeginOptions{TTL: time.Minute}); err == nil || errors.Is(err, dedupe.ErrDone) || errors.Is(err, dedupe.ErrBusy) {
			t.Errorf("Begin(%s) = %+v, %v; want a plain error", k, l, err)
		}
		if r, err := s.Lookup(ctx, k); err == nil {
			t.Errorf("Lookup(%s) = %+v, want an error", k, r)
		}
	}
	// A batch Begin fails each foreign key on its own and begins the others.
	good := messages.KeyOf("foreign-good|" + time.Now().String())
	got := s.BeginBatch(ctx, []string{str, good, hash}, dedupe.BeginOptions{TTL: time.Minute})
	for _, i := range []int{0, 2} {
		if err := got[i].Err; err == nil || errors.Is(err, dedupe.ErrDone) || errors.Is(err, dedupe.ErrBusy) {
			t.Errorf("BeginBatch item %d = %+v; want a plain error", i, got[i])
		}
	}
	if got[1].Err != nil || got[1].Lease.Fence != 1 {
		t.Fatalf("BeginBatch of the good key beside foreign ones = %+v; want fence 1", got[1])
	}
	if errs := s.FinishBatch(ctx, []dedupe.Lease{got[1].Lease, {Key: hash, Token: "t", Fence: 1}}); errs[0] != nil || !errors.Is(errs[1], dedupe.ErrLockLost) {
		t.Fatalf("FinishBatch beside a foreign key = %v; want nil, ErrLockLost", errs)
	}
	if typ := c.Type(ctx, hash).Val(); typ != "hash" {
		t.Fatalf("foreign key is a %s after the batch calls, want untouched hash", typ)
	}
	for _, k := range []string{"a}b", "a{}b", "}"} {
		if _, err := s.Claim(ctx, "i", []string{k}); !errors.Is(err, dedupe.ErrInvalidKey) {
			t.Errorf("Claim(%q) = %v, want ErrInvalidKey", k, err)
		}
		if _, err := s.Begin(ctx, k, dedupe.BeginOptions{TTL: time.Minute}); !errors.Is(err, dedupe.ErrInvalidKey) {
			t.Errorf("Begin(%q) = %v, want ErrInvalidKey", k, err)
		}
	}
}

// TestRedisStopped checks that a Redis that does not answer makes every
// method fail with a wrapped error, within its context, and never with an
// answer a caller would act on (ErrDone, ErrBusy, ErrLockLost).
func TestRedisStopped(t *testing.T) {
	srv := testenv.StartRedis(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	s := dedupe.NewRedis(c, dedupe.RedisOptions{})
	key := messages.KeyOf("stopped|" + time.Now().String())
	ctx := context.Background()
	claims, err := s.Claim(ctx, "i", []string{key})
	if err != nil {
		t.Fatal(err)
	}
	lease, err := s.Begin(ctx, key, dedupe.BeginOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	ops := []struct {
		name string
		fn   func(ctx context.Context) error
	}{
		{"claim", func(ctx context.Context) error { _, err := s.Claim(ctx, "i", []string{key}); return err }},
		{"accept", func(ctx context.Context) error { return s.Accept(ctx, claims) }},
		{"release", func(ctx context.Context) error { return s.Release(ctx, claims) }},
		{"begin", func(ctx context.Context) error {
			_, err := s.Begin(ctx, key, dedupe.BeginOptions{TTL: time.Minute})
			return err
		}},
		{"extend", func(ctx context.Context) error { return s.Extend(ctx, lease, time.Minute) }},
		{"finish", func(ctx context.Context) error { return s.Finish(ctx, lease) }},
		{"unlock", func(ctx context.Context) error { return s.Unlock(ctx, lease) }},
		{"lookup", func(ctx context.Context) error { _, err := s.Lookup(ctx, key); return err }},
		{"ping", func(ctx context.Context) error { return s.Ping(ctx) }},
	}
	// Every call at once, each bounded by its own context.
	errs := make([]error, len(ops))
	var wg sync.WaitGroup
	for i, op := range ops {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			errs[i] = op.fn(ctx)
		})
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		t.Fatal("calls with Redis stopped: no answer after 30s despite 2s contexts")
	}
	for i, op := range ops {
		switch err := errs[i]; {
		case err == nil:
			t.Errorf("%s with Redis stopped: no error", op.name)
		case errors.Is(err, dedupe.ErrDone), errors.Is(err, dedupe.ErrBusy), errors.Is(err, dedupe.ErrLockLost):
			t.Errorf("%s with Redis stopped: %v, a state answer", op.name, err)
		case !strings.HasPrefix(err.Error(), "dedupe: "+op.name):
			t.Errorf("%s with Redis stopped: %q, want it to start with %q", op.name, err, "dedupe: "+op.name)
		}
	}

	// Back up, empty (no persistence): the store works again.
	srv.Start()
	testenv.Eventually(t, 10*time.Second, func() bool { return s.Ping(ctx) == nil }, "store never reconnected")
	got, err := s.Claim(ctx, "i", []string{key})
	if err != nil || got[0].Prior != dedupe.Absent {
		t.Fatalf("Claim after restart: %+v, %v; want absent (no persistence)", got, err)
	}
}

// usedMemory returns Redis's used_memory in bytes.
func usedMemory(t testing.TB, c redis.UniversalClient) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no used_memory in INFO memory")
	return 0
}

// TestRedisBytesPerClaim reports the memory an idle event costs, by state.
// It asserts nothing about the numbers, which depend on the allocator; it
// checks that an idle event is one key.
func TestRedisBytesPerClaim(t *testing.T) {
	c := newClient(t, testenv.StartRedis(t).URL())
	s := dedupe.NewRedis(c, dedupe.RedisOptions{})
	ctx := context.Background()
	const n = 20000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = messages.KeyOf("memory|" + strconv.Itoa(i))
	}
	base := usedMemory(t, c)
	var claims []dedupe.Claim
	for i := 0; i < n; i += 1000 {
		cl, err := s.Claim(ctx, "ingress-0a1b2c", keys[i:i+1000])
		if err != nil {
			t.Fatal(err)
		}
		claims = append(claims, cl...)
	}
	pending := usedMemory(t, c)
	for i := 0; i < n; i += 1000 {
		if err := s.Accept(ctx, claims[i:i+1000]); err != nil {
			t.Fatal(err)
		}
	}
	accepted := usedMemory(t, c)
	for _, k := range keys[:1000] {
		l, err := s.Begin(ctx, k, dedupe.BeginOptions{TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Finish(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	if size, err := c.DBSize(ctx).Result(); err != nil || size != n {
		t.Fatalf("DBSIZE %d, %v; want %d: one key per idle event", size, err, n)
	}
	t.Logf("bytes per claim (key %d bytes): pending %d, accepted %d",
		len(keys[0]), (pending-base)/n, (accepted-base)/n)
}

// BenchmarkClaim measures claiming batches of new keys; it reports claims
// per operation and the memory each claim leaves in Redis.
// benchSeq numbers benchmark keys across every run of a benchmark function,
// which the testing package may call more than once.
var benchSeq atomic.Int64

func BenchmarkClaim(b *testing.B) {
	c := newClient(b, testenv.RedisURL(b))
	s := dedupe.NewRedis(c, dedupe.RedisOptions{})
	ctx := context.Background()
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	for _, batch := range []int{1, 50} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			keys := make([]string, batch)
			n := 0
			base := usedMemory(b, c)
			b.ReportAllocs()
			for b.Loop() {
				for i := range keys {
					keys[i] = messages.KeyOf(run + "|" + strconv.Itoa(batch) + "|" + strconv.FormatInt(benchSeq.Add(1), 10))
					n++
				}
				cl, err := s.Claim(ctx, "ingress-0a1b2c", keys)
				if err != nil {
					b.Fatalf("Claim: %v", err)
				}
				if cl[0].Prior != dedupe.Absent {
					b.Fatalf("Claim of a new key: %+v, want absent", cl[0])
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(batch), "claims/op")
			if n > 0 {
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/claim")
				b.ReportMetric(float64(usedMemory(b, c)-base)/float64(n), "redis-bytes/claim")
			}
		})
	}
}
