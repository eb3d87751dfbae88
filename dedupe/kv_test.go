package dedupe_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/dedupe/dedupetest"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
)

// connectJS connects to the NATS server at url, reconnecting for ever, and
// returns a JetStream context on it.
func connectJS(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// testCtx returns a context for t's calls, bounded by 30 s.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newKV returns a KV store on js with the given bucket and horizon.
func newKV(t testing.TB, js jetstream.JetStream, bucket string, horizon time.Duration) *dedupe.KV {
	t.Helper()
	kv, err := dedupe.NewKV(testCtx(t), js, dedupe.KVOptions{Bucket: bucket, Horizon: horizon})
	if err != nil {
		t.Fatalf("NewKV(%s, %v): %v", bucket, horizon, err)
	}
	return kv
}

// newTestKey returns a dedupe key no other test uses.
func newTestKey(t testing.TB) string {
	return messages.KeyOf(fmt.Sprintf("kvtest|%s|%d", t.Name(), time.Now().UnixNano()))
}

// TestKVContract runs the contract suite on one NATS server, with one store
// (one pair of buckets) per horizon shared by every subtest that asks for it.
func TestKVContract(t *testing.T) {
	js := connectJS(t, testenv.NATSURL(t))
	var (
		mu     sync.Mutex
		stores = map[time.Duration]*dedupe.KV{}
	)
	dedupetest.Run(t, func(t *testing.T, horizon time.Duration) dedupe.Store {
		mu.Lock()
		defer mu.Unlock()
		if s, ok := stores[horizon]; ok {
			return s
		}
		s := newKV(t, js, fmt.Sprintf("dedupetest_%d", horizon.Milliseconds()), horizon)
		stores[horizon] = s
		return s
	})
}

func TestKVSurvivesRestart(t *testing.T) {
	n := testenv.StartNATS(t)
	js := connectJS(t, n.ClientURL())
	s := newKV(t, js, "", 0)
	ctx := testCtx(t)

	done, pending, locked := newTestKey(t), newTestKey(t), newTestKey(t)
	if _, err := s.Claim(ctx, "ingress-a", []string{done, pending}); err != nil {
		t.Fatal(err)
	}
	l, err := s.Begin(ctx, done, dedupe.BeginOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, l); err != nil {
		t.Fatal(err)
	}
	held, err := s.Begin(ctx, locked, dedupe.BeginOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}

	n.Shutdown()
	n.Start()

	testenv.Eventually(t, 10*time.Second, func() bool {
		return s.Ping(ctx) == nil
	}, "store should answer after the server restarted")
	for _, tc := range []struct {
		key    string
		state  dedupe.State
		fence  int64
		locked bool
	}{
		{done, dedupe.Done, 1, false},
		{pending, dedupe.Pending, 0, false},
		{locked, dedupe.Accepted, 1, true},
	} {
		r, err := s.Lookup(ctx, tc.key)
		if err != nil {
			t.Fatalf("Lookup(%s) after restart: %v", tc.key, err)
		}
		if r.State != tc.state || r.Fence != tc.fence || r.Locked != tc.locked {
			t.Fatalf("Lookup(%s) after restart = %+v; want state %v, fence %d, locked %v", tc.key, r, tc.state, tc.fence, tc.locked)
		}
	}
	claims, err := s.Claim(ctx, "ingress-b", []string{done, pending})
	if err != nil {
		t.Fatal(err)
	}
	if claims[0].Prior != dedupe.Done || claims[1].Prior != dedupe.Pending {
		t.Fatalf("claims after restart = %+v; want done, pending", claims)
	}
	if _, err := s.Begin(ctx, done, dedupe.BeginOptions{TTL: time.Minute}); !errors.Is(err, dedupe.ErrDone) {
		t.Fatalf("Begin(done) after restart: %v, want ErrDone", err)
	}
	if _, err := s.Begin(ctx, locked, dedupe.BeginOptions{TTL: time.Minute}); !errors.Is(err, dedupe.ErrBusy) {
		t.Fatalf("Begin(locked) after restart: %v, want ErrBusy", err)
	}
	if err := s.Finish(ctx, held); err != nil {
		t.Fatalf("Finish of the lease taken before the restart: %v", err)
	}
}

// TestKVLockKeyTTL checks the server removes a lock entry by itself once its
// per-key TTL passes, also after Extend and after a take-over, which write
// the entry outside KeyValue.Update.
func TestKVLockKeyTTL(t *testing.T) {
	js := connectJS(t, testenv.StartNATS(t).ClientURL())
	s := newKV(t, js, "ttl", time.Hour)
	ctx := testCtx(t)
	locks, err := js.KeyValue(ctx, "ttl_lock")
	if err != nil {
		t.Fatal(err)
	}
	st, err := locks.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.LimitMarkerTTL() == 0 {
		t.Fatal("locks bucket has no LimitMarkerTTL: per-key TTLs are off")
	}
	gone := func(key string) func() bool {
		name := strings.Replace(key, ":", ".", 1)
		return func() bool {
			_, err := locks.Get(ctx, name)
			return errors.Is(err, jetstream.ErrKeyNotFound)
		}
	}

	// Created by Begin.
	k1 := newTestKey(t)
	if _, err := s.Begin(ctx, k1, dedupe.BeginOptions{TTL: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if gone(k1)() {
		t.Fatal("lock entry missing right after Begin")
	}
	testenv.Eventually(t, 10*time.Second, gone(k1), "lock entry of %s not removed by its TTL", k1)

	// Extended, then taken over once expired.
	k2 := newTestKey(t)
	l, err := s.Begin(ctx, k2, dedupe.BeginOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Extend(ctx, l, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		r, err := s.Lookup(ctx, k2)
		return err == nil && !r.Locked
	}, "lock of %s should expire 100ms after Extend", k2)
	l2, err := s.Begin(ctx, k2, dedupe.BeginOptions{TTL: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("Begin over an expired lock: %v", err)
	}
	if l2.Fence != 2 {
		t.Fatalf("fence after take-over = %d, want 2", l2.Fence)
	}
	if err := s.Finish(ctx, l); !errors.Is(err, dedupe.ErrLockLost) {
		t.Fatalf("Finish by the expired holder: %v, want ErrLockLost", err)
	}
	testenv.Eventually(t, 10*time.Second, gone(k2), "lock entry of %s not removed by its TTL", k2)
}

// TestKVStaleHolderCannotFinish drives the race Finish guards against
// without an atomic script: a holder whose lock expired and was taken over
// must not mark the key done, at any point of the new holder's Begin.
func TestKVStaleHolderCannotFinish(t *testing.T) {
	js := connectJS(t, testenv.NATSURL(t))
	s := newKV(t, js, "stale", time.Hour)
	ctx := testCtx(t)
	k := newTestKey(t)
	old, err := s.Begin(ctx, k, dedupe.BeginOptions{TTL: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() bool {
		r, err := s.Lookup(ctx, k)
		return err == nil && !r.Locked
	}, "lock should expire")
	cur, err := s.Begin(ctx, k, dedupe.BeginOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for name, op := range map[string]func() error{
		"Finish": func() error { return s.Finish(ctx, old) },
		"Extend": func() error { return s.Extend(ctx, old, time.Minute) },
		"Unlock": func() error { return s.Unlock(ctx, old) },
	} {
		if err := op(); !errors.Is(err, dedupe.ErrLockLost) {
			t.Fatalf("%s by the stale holder: %v, want ErrLockLost", name, err)
		}
	}
	r, err := s.Lookup(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != dedupe.Accepted || r.Fence != 2 || !r.Locked {
		t.Fatalf("after the stale holder's calls: %+v, want accepted, fence 2, locked", r)
	}
	if err := s.Finish(ctx, cur); err != nil {
		t.Fatalf("Finish by the current holder: %v", err)
	}
}

// TestKVFinishRacesTakeOver runs a holder's Finish against another worker's
// Begin, retried until the lock is free, with lock TTLs about as long as a
// round trip, so that the lock expires before, during or after the Finish:
// exactly one of them may win, and the state must say which.
func TestKVFinishRacesTakeOver(t *testing.T) {
	js := connectJS(t, testenv.NATSURL(t))
	s := newKV(t, js, "race", time.Hour)
	ctx := testCtx(t)
	outcomes := map[string]int{}
	for i := range 60 {
		k := newTestKey(t)
		old, err := s.Begin(ctx, k, dedupe.BeginOptions{TTL: time.Duration(1+i%6) * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		var (
			wg        sync.WaitGroup
			finishErr error
			next      dedupe.Lease
			beginErr  error
		)
		wg.Go(func() { finishErr = s.Finish(ctx, old) })
		wg.Go(func() {
			for {
				next, beginErr = s.Begin(ctx, k, dedupe.BeginOptions{TTL: time.Minute})
				if !errors.Is(beginErr, dedupe.ErrBusy) {
					return
				}
			}
		})
		wg.Wait()
		r, err := s.Lookup(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case finishErr == nil && errors.Is(beginErr, dedupe.ErrDone):
			if r.State != dedupe.Done || r.Fence != 1 || r.Locked {
				t.Fatalf("Finish won: record %+v, want done, fence 1, unlocked", r)
			}
			outcomes["finish"]++
		case errors.Is(finishErr, dedupe.ErrLockLost) && beginErr == nil:
			if next.Fence != 2 || r.State != dedupe.Accepted || r.Fence != 2 || !r.Locked {
				t.Fatalf("take-over won: lease %+v, record %+v; want fence 2, accepted, locked", next, r)
			}
			outcomes["take-over"]++
		default:
			t.Fatalf("Finish = %v and Begin = %+v, %v: want exactly one to win", finishErr, next, beginErr)
		}
	}
	t.Logf("winners: %v", outcomes)
}

// TestKVFinishSeesLaterFence checks Finish refuses when the state already
// carries a later lease's fence although the lock entry still names the
// caller: what Finish reads when a take-over lands between its two reads.
func TestKVFinishSeesLaterFence(t *testing.T) {
	js := connectJS(t, testenv.NATSURL(t))
	s := newKV(t, js, "fence", time.Hour)
	ctx := testCtx(t)
	k := newTestKey(t)
	l, err := s.Begin(ctx, k, dedupe.BeginOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	states, err := js.KeyValue(ctx, "fence")
	if err != nil {
		t.Fatal(err)
	}
	name := strings.Replace(k, ":", ".", 1)
	if _, err := states.Put(ctx, name, []byte("a2")); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, l); !errors.Is(err, dedupe.ErrLockLost) {
		t.Fatalf("Finish under a later fence: %v, want ErrLockLost", err)
	}
	if r, err := s.Lookup(ctx, k); err != nil || r.State != dedupe.Accepted || r.Fence != 2 || !r.Locked {
		t.Fatalf("after the refused Finish: %+v, %v; want accepted, fence 2, still locked", r, err)
	}
}

// TestKVFinishWhileExtending finishes a lease while a heartbeat keeps
// extending it, as the worker does: the key ends done and unlocked.
func TestKVFinishWhileExtending(t *testing.T) {
	js := connectJS(t, testenv.NATSURL(t))
	s := newKV(t, js, "heartbeat", time.Hour)
	ctx := testCtx(t)
	for range 20 {
		k := newTestKey(t)
		l, err := s.Begin(ctx, k, dedupe.BeginOptions{TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				if err := s.Extend(ctx, l, time.Minute); err != nil {
					if !errors.Is(err, dedupe.ErrLockLost) {
						t.Errorf("Extend: %v", err)
					}
					return
				}
			}
		})
		if err := s.Finish(ctx, l); err != nil {
			t.Fatalf("Finish while extending: %v", err)
		}
		wg.Wait()
		if r, err := s.Lookup(ctx, k); err != nil || r.State != dedupe.Done || r.Locked {
			t.Fatalf("after Finish: %+v, %v; want done, unlocked", r, err)
		}
	}
}

// TestKVMutualExclusion has workers take one key's lock in turn, many
// times: no two hold it at once and every lease's fence is higher than the
// ones before it.
func TestKVMutualExclusion(t *testing.T) {
	js := connectJS(t, testenv.NATSURL(t))
	s := newKV(t, js, "mutex", time.Hour)
	ctx := testCtx(t)
	k := newTestKey(t)
	const workers, rounds = 8, 25
	var (
		mu      sync.Mutex
		holding bool
		last    int64
		taken   int
	)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for got := 0; got < rounds; {
				l, err := s.Begin(ctx, k, dedupe.BeginOptions{TTL: time.Minute})
				if errors.Is(err, dedupe.ErrBusy) {
					continue
				}
				if err != nil {
					t.Errorf("Begin: %v", err)
					return
				}
				mu.Lock()
				if holding || l.Fence <= last {
					t.Errorf("lease %+v: holding %v, last fence %d", l, holding, last)
				}
				holding, last = true, l.Fence
				taken++
				mu.Unlock()

				mu.Lock()
				holding = false
				mu.Unlock()
				if err := s.Unlock(ctx, l); err != nil {
					t.Errorf("Unlock(%+v): %v", l, err)
					return
				}
				got++
			}
		})
	}
	wg.Wait()
	if r, err := s.Lookup(ctx, k); err != nil || r.Fence != int64(taken) || r.Locked {
		t.Fatalf("after %d leases: %+v, %v; want fence %d, unlocked", taken, r, err, taken)
	}
}

func TestNewKVOptions(t *testing.T) {
	js := connectJS(t, testenv.NATSURL(t))
	ctx := testCtx(t)

	// Idempotent, and any process may change the horizon.
	for _, h := range []time.Duration{time.Hour, time.Hour, 2 * time.Hour} {
		newKV(t, js, "opts", h)
		kv, err := js.KeyValue(ctx, "opts")
		if err != nil {
			t.Fatal(err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.TTL() != h {
			t.Fatalf("bucket TTL = %v, want %v", st.TTL(), h)
		}
	}
	// Defaults.
	newKV(t, js, "", 0)
	kv, err := js.KeyValue(ctx, dedupe.DefaultKVBucket)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != 7*24*time.Hour || st.BackingStore() != "JetStream" {
		t.Fatalf("default bucket: TTL %v, store %s", st.TTL(), st.BackingStore())
	}
	if _, err := js.KeyValue(ctx, dedupe.DefaultKVBucket+"_lock"); err != nil {
		t.Fatalf("default locks bucket: %v", err)
	}

	for _, o := range []dedupe.KVOptions{
		{Bucket: "opts", Storage: jetstream.MemoryStorage}, // storage cannot change
		{Bucket: "bad.name"},
		{Bucket: "short", Horizon: time.Millisecond},
		{Bucket: "neg", Replicas: -1},
		{Bucket: "storage", Storage: 7},
	} {
		if _, err := dedupe.NewKV(ctx, js, o); err == nil {
			t.Fatalf("NewKV(%+v) succeeded, want an error", o)
		}
	}
}

// TestKVDomain checks the writes KV makes outside the KeyValue API reach
// the bucket through a JetStream domain's API prefix.
func TestKVDomain(t *testing.T) {
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, JetStreamDomain: "hub",
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.NewWithDomain(nc, "hub")
	if err != nil {
		t.Fatal(err)
	}
	s := newKV(t, js, "", time.Hour)
	ctx := testCtx(t)
	k := newTestKey(t)
	for _, want := range []dedupe.State{dedupe.Absent, dedupe.Pending} {
		claims, err := s.Claim(ctx, "ingress-a", []string{k})
		if err != nil {
			t.Fatalf("Claim through domain hub: %v", err)
		}
		if claims[0].Prior != want {
			t.Fatalf("Claim through domain hub: prior %v, want %v", claims[0].Prior, want)
		}
	}
	l, err := s.Begin(ctx, k, dedupe.BeginOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Extend(ctx, l, time.Minute); err != nil {
		t.Fatalf("Extend through domain hub: %v", err)
	}
	if err := s.Finish(ctx, l); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Begin(ctx, k, dedupe.BeginOptions{TTL: time.Minute}); !errors.Is(err, dedupe.ErrDone) {
		t.Fatalf("Begin after Finish: %v, want ErrDone", err)
	}
}

// kvNameRe is what the jetstream package accepts as a key.
var kvNameRe = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)

func TestKVKeyNames(t *testing.T) {
	js := connectJS(t, testenv.NATSURL(t))
	s := newKV(t, js, "names", time.Hour)
	ctx := testCtx(t)
	// Each key must be stored apart from every other: claiming them all in
	// one batch finds each absent, and a second claim finds each pending.
	keys := []string{
		"wa:AbC-_9", "wa.AbC-_9", "wa:AbC-_9:l", "wa:AbC-_9.lock",
		":", "::", ":a", "a:", "a::b", "a:b:c", ".", "..", "a.b",
		"=3A", "a=3Ab", "a b", "a*b", "a>b", "a/b", "é", "\x00", "{wa:x}:l",
		strings.Repeat("k", 300),
	}
	first, err := s.Claim(ctx, "a", keys)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	second, err := s.Claim(ctx, "b", keys)
	if err != nil {
		t.Fatalf("Claim again: %v", err)
	}
	for i := range keys {
		if first[i].Prior != dedupe.Absent || second[i].Prior != dedupe.Pending || second[i].Token != first[i].Token {
			t.Fatalf("key %q: first %+v, second %+v; want absent, then pending with the same token", keys[i], first[i], second[i])
		}
	}
	// The names an operator sees.
	kv, err := js.KeyValue(ctx, "names")
	if err != nil {
		t.Fatal(err)
	}
	for key, name := range map[string]string{
		"wa:AbC-_9": "wa.AbC-_9",
		"wa.AbC-_9": "wa=2EAbC-_9",
		"a::b":      "a=3A=3Ab",
		":a":        "=3Aa",
		"a b":       "a=20b",
	} {
		if !kvNameRe.MatchString(name) {
			t.Fatalf("test name %q is not a KV key", name)
		}
		e, err := kv.Get(ctx, name)
		if err != nil {
			t.Fatalf("key %q: stored name %q: %v", key, name, err)
		}
		if !strings.HasPrefix(string(e.Value()), "p:a:") {
			t.Fatalf("key %q: value %q, want the first claim's", key, e.Value())
		}
	}
	if _, err := s.Claim(ctx, "a", []string{"ok", ""}); !errors.Is(err, dedupe.ErrInvalidKey) {
		t.Fatalf("Claim with an empty key: %v, want ErrInvalidKey", err)
	}
}

// TestKVForeignValues checks that a state entry this store did not write
// gives an error, never a state.
func TestKVForeignValues(t *testing.T) {
	js := connectJS(t, testenv.NATSURL(t))
	s := newKV(t, js, "foreign", time.Hour)
	ctx := testCtx(t)
	states, err := js.KeyValue(ctx, "foreign")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"hello", "a-1", "dx", "x1", "d+1"} {
		k := newTestKey(t)
		if _, err := states.Put(ctx, strings.Replace(k, ":", ".", 1), []byte(v)); err != nil {
			t.Fatal(err)
		}
		if cl, err := s.Claim(ctx, "i", []string{k}); err == nil {
			t.Errorf("Claim over %q = %+v, want an error", v, cl)
		}
		if l, err := s.Begin(ctx, k, dedupe.BeginOptions{TTL: time.Minute}); err == nil || errors.Is(err, dedupe.ErrDone) || errors.Is(err, dedupe.ErrBusy) {
			t.Errorf("Begin over %q = %+v, %v; want a plain error", v, l, err)
		}
		if r, err := s.Lookup(ctx, k); err == nil {
			t.Errorf("Lookup over %q = %+v, want an error", v, r)
		}
		// Begin let go of the lock it took before it read the state.
		if r, err := js.KeyValue(ctx, "foreign_lock"); err == nil {
			if e, err := r.Get(ctx, strings.Replace(k, ":", ".", 1)); err == nil {
				t.Errorf("lock entry %q left behind by a refused Begin", e.Value())
			}
		}
	}
}

// TestKVStopped checks that a server that does not answer makes every
// method fail with a wrapped error, within its context, and never with an
// answer a caller would act on (ErrDone, ErrBusy, ErrLockLost); and that the
// store works again, with its states, once the server is back.
func TestKVStopped(t *testing.T) {
	n := testenv.StartNATS(t)
	js := connectJS(t, n.ClientURL())
	s := newKV(t, js, "", time.Hour)
	ctx := testCtx(t)
	key := newTestKey(t)
	claims, err := s.Claim(ctx, "i", []string{key})
	if err != nil {
		t.Fatal(err)
	}
	lease, err := s.Begin(ctx, key, dedupe.BeginOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}

	n.Shutdown()
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
	errs := make([]error, len(ops))
	var wg sync.WaitGroup
	start := time.Now()
	for i, op := range ops {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			errs[i] = op.fn(ctx)
		})
	}
	wg.Wait()
	// A call may also spend its lock-release grace (1 s) after its context ends.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("calls with the server down took %v despite 500ms contexts", d)
	}
	for i, op := range ops {
		switch err := errs[i]; {
		case err == nil:
			t.Errorf("%s with the server down: no error", op.name)
		case errors.Is(err, dedupe.ErrDone), errors.Is(err, dedupe.ErrBusy), errors.Is(err, dedupe.ErrLockLost):
			t.Errorf("%s with the server down: %v, a state answer", op.name, err)
		case !strings.HasPrefix(err.Error(), "dedupe: "+op.name):
			t.Errorf("%s with the server down: %q, want it to start with %q", op.name, err, "dedupe: "+op.name)
		}
	}

	n.Start()
	testenv.Eventually(t, 10*time.Second, func() bool { return s.Ping(ctx) == nil }, "store never reconnected")
	r, err := s.Lookup(ctx, key)
	if err != nil || r.State != dedupe.Accepted || r.Fence != 1 {
		t.Fatalf("Lookup after restart: %+v, %v; want accepted, fence 1", r, err)
	}
}

// TestKVBytesPerClaim reports what an idle event costs in the buckets'
// streams, by state. It asserts only that an idle event is one entry.
func TestKVBytesPerClaim(t *testing.T) {
	js := connectJS(t, testenv.StartNATS(t).ClientURL())
	s := newKV(t, js, "", time.Hour)
	ctx := testCtx(t)
	const n = 2000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = messages.KeyOf(fmt.Sprintf("memory|%d", i))
	}
	bytes := func(stream string) (msgs, b uint64) {
		st, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs, info.State.Bytes
	}
	var claims []dedupe.Claim
	for i := 0; i < n; i += 1000 {
		cl, err := s.Claim(ctx, "ingress-0a1b2c", keys[i:i+1000])
		if err != nil {
			t.Fatal(err)
		}
		claims = append(claims, cl...)
	}
	_, pending := bytes("KV_" + dedupe.DefaultKVBucket)
	if err := s.Accept(ctx, claims); err != nil {
		t.Fatal(err)
	}
	_, accepted := bytes("KV_" + dedupe.DefaultKVBucket)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				l, err := s.Begin(ctx, keys[i], dedupe.BeginOptions{TTL: time.Minute})
				if err == nil {
					err = s.Finish(ctx, l)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	msgs, done := bytes("KV_" + dedupe.DefaultKVBucket)
	if msgs != n {
		t.Fatalf("states stream holds %d messages, want %d: one entry per idle event", msgs, n)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		m, _ := bytes("KV_" + dedupe.DefaultKVBucket + "_lock")
		return m == 0
	}, "locks bucket should be empty once the unlock markers expire")
	t.Logf("stream bytes per idle event (key %d bytes): pending %d, accepted %d, done %d; locks bucket empty",
		len(keys[0]), pending/n, accepted/n, done/n)
}

// BenchmarkKVClaim claims fresh keys in batches of 1 and 50 on an
// in-process server with file storage; it reports the time per claim and
// the bytes the states bucket's stream grows by per claim.
func BenchmarkKVClaim(b *testing.B) {
	js := connectJS(b, testenv.StartNATS(b).ClientURL())
	s := newKV(b, js, "bench", time.Hour)
	ctx := context.Background()
	streamBytes := func() uint64 {
		st, err := js.Stream(ctx, "KV_bench")
		if err != nil {
			b.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			b.Fatal(err)
		}
		return info.State.Bytes
	}
	for _, size := range []int{1, 50} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			keys := make([]string, size)
			run, n := time.Now().UnixNano(), 0
			base := streamBytes()
			b.ReportAllocs()
			for b.Loop() {
				for i := range keys {
					n++
					keys[i] = messages.KeyOf(fmt.Sprintf("bench|%d|%d|%d", run, size, n))
				}
				cl, err := s.Claim(ctx, "ingress-0a1b2c", keys)
				if err != nil {
					b.Fatal(err)
				}
				if cl[0].Prior != dedupe.Absent {
					b.Fatalf("Claim of a new key: %+v, want absent", cl[0])
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/claim")
			if n > 0 {
				b.ReportMetric(float64(streamBytes()-base)/float64(n), "stream-bytes/claim")
			}
		})
	}
}
