package dedupe_test

import (
	"context"
	"errors"
	mathrand "math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/dedupe/dedupetest"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
)

// newPool returns a pool on the PostgreSQL at url, closed at the end of t.
func newPool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatalf("pgxpool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// newPostgres returns a store on pool with its table created.
func newPostgres(t testing.TB, pool *pgxpool.Pool, opts dedupe.PostgresOptions) *dedupe.Postgres {
	t.Helper()
	s, err := dedupe.NewPostgres(pool, opts)
	if err != nil {
		t.Fatalf("NewPostgres: %v", err)
	}
	if err := s.InitSchema(testCtx(t)); err != nil {
		t.Fatalf("InitSchema: %v", err)
	}
	return s
}

// TestPostgres runs the contract suite. Its 200 ms locks must outlive a few
// statements, and on a shared test machine one commit's WAL flush can take
// longer than that: the suite's connections do not wait for it
// (synchronous_commit=off; only a server crash could lose a commit, which the
// suite never causes). Every other test, the end-to-end one and the fault
// suite included, runs with the server's default.
func TestPostgres(t *testing.T) {
	pool := newPool(t, testenv.PostgresURL(t)+"&synchronous_commit=off")
	newPostgres(t, pool, dedupe.PostgresOptions{})
	dedupetest.Run(t, func(t *testing.T, horizon time.Duration) dedupe.Store {
		s, err := dedupe.NewPostgres(pool, dedupe.PostgresOptions{Horizon: horizon})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestPostgresSchema checks that InitSchema is idempotent, that CheckSchema
// finds a missing table, and that a live table which conflicts is a clear
// error, never altered.
func TestPostgresSchema(t *testing.T) {
	pool := newPool(t, testenv.PostgresURL(t))
	ctx := testCtx(t)
	s, err := dedupe.NewPostgres(pool, dedupe.PostgresOptions{Table: "claims"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSchema(ctx); !errors.Is(err, dedupe.ErrSchema) || !strings.Contains(err.Error(), "wagate dedupe init") {
		t.Fatalf("CheckSchema before init = %v, want ErrSchema naming wagate dedupe init", err)
	}
	for range 2 {
		if err := s.InitSchema(ctx); err != nil {
			t.Fatalf("InitSchema: %v", err)
		}
	}
	if err := s.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema after init: %v", err)
	}

	if _, err := pool.Exec(ctx, `CREATE TABLE other (key bigint PRIMARY KEY, state text)`); err != nil {
		t.Fatal(err)
	}
	o, err := dedupe.NewPostgres(pool, dedupe.PostgresOptions{Table: "other"})
	if err != nil {
		t.Fatal(err)
	}
	err = o.InitSchema(ctx)
	if !errors.Is(err, dedupe.ErrSchema) {
		t.Fatalf("InitSchema over a conflicting table = %v, want ErrSchema", err)
	}
	for _, want := range []string{"column key is bigint, want text", "column fence is missing"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if err := o.CheckSchema(ctx); err == nil || !strings.Contains(err.Error(), "no index on expires_at") {
		t.Errorf("CheckSchema of a conflicting table = %v, want it to name the missing index", err)
	}
	var cols int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns WHERE table_name = 'other' AND table_schema = current_schema()`).Scan(&cols); err != nil || cols != 2 {
		t.Fatalf("conflicting table has %d columns (%v), want its 2 untouched", cols, err)
	}

	for _, bad := range []string{"a.b.c", "drop table x", "1abc", `"quoted"`} {
		if _, err := dedupe.NewPostgres(pool, dedupe.PostgresOptions{Table: bad}); err == nil {
			t.Errorf("NewPostgres(Table %q): no error", bad)
		}
	}
}

// TestPostgresCleanup checks that Cleanup deletes expired rows only, in
// bounded batches, and skips a row another transaction holds instead of
// waiting for it.
func TestPostgresCleanup(t *testing.T) {
	pool := newPool(t, testenv.PostgresURL(t))
	ctx := testCtx(t)
	short := newPostgres(t, pool, dedupe.PostgresOptions{Horizon: 300 * time.Millisecond, CleanupBatch: 10})
	long := newPostgres(t, pool, dedupe.PostgresOptions{})
	var expired []string
	for i := range 25 {
		expired = append(expired, messages.KeyOf("cleanup|expired|"+time.Now().String()+string(rune('a'+i))))
	}
	live := messages.KeyOf("cleanup|live|" + time.Now().String())
	if _, err := short.Claim(ctx, "i", expired); err != nil {
		t.Fatal(err)
	}
	if _, err := long.Claim(ctx, "i", []string{live}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		r, err := short.Lookup(ctx, expired[0])
		return err == nil && r.State == dedupe.Absent
	}, "claims never expired")

	// A transaction holds one expired row: Cleanup must not wait for it.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, `SELECT 1 FROM wagate_dedupe WHERE key = $1 FOR UPDATE`, expired[0]); err != nil {
		t.Fatal(err)
	}
	var total int64
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := short.Cleanup(cctx, 0)
		cancel()
		if err != nil {
			t.Fatalf("Cleanup with a row locked: %v (it must skip the row, not wait)", err)
		}
		if n > 10 {
			t.Fatalf("Cleanup deleted %d rows, more than the batch of 10", n)
		}
		total += n
		if n == 0 {
			break
		}
	}
	if total != 24 {
		t.Fatalf("Cleanup deleted %d rows, want 24 (25 expired, one locked)", total)
	}
	_ = tx.Rollback(ctx)
	if n, err := short.Cleanup(ctx, 0); err != nil || n != 1 {
		t.Fatalf("Cleanup after the lock went: %d, %v; want 1", n, err)
	}
	if r, err := long.Lookup(ctx, live); err != nil || r.State != dedupe.Pending {
		t.Fatalf("live claim after Cleanup: %+v, %v; want pending", r, err)
	}
}

// TestPostgresClaimWhileCleaning claims expired keys while cleanups run, so
// that claims and deletes meet on the same rows: every claim must find its
// key absent exactly once.
func TestPostgresClaimWhileCleaning(t *testing.T) {
	pool := newPool(t, testenv.PostgresURL(t))
	ctx := testCtx(t)
	s := newPostgres(t, pool, dedupe.PostgresOptions{Horizon: 50 * time.Millisecond, CleanupBatch: 5})
	keys := make([]string, 50)
	for i := range keys {
		keys[i] = messages.KeyOf("race|" + time.Now().String() + "|" + string(rune('A'+i)))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Cleanup(ctx, 0); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for round := range 10 {
		cl, err := s.Claim(ctx, "i", keys)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cl {
			if round == 0 && c.Prior != dedupe.Absent {
				t.Fatalf("first claim of %s: %v", c.Key, c.Prior)
			}
			if c.Prior != dedupe.Absent && c.Prior != dedupe.Pending {
				t.Fatalf("claim of %s: %v", c.Key, c.Prior)
			}
		}
		testenv.Eventually(t, 5*time.Second, func() bool {
			r, err := s.Lookup(ctx, keys[len(keys)-1])
			return err == nil && r.State == dedupe.Absent
		}, "claims never expired")
	}
	close(stop)
	wg.Wait()
}

// TestPostgresBatchesNeverDeadlock runs batches of claims, accepts and
// releases over overlapping keys in random orders from many goroutines: every
// call must succeed (PostgreSQL aborts one side of a deadlock with an error).
func TestPostgresBatchesNeverDeadlock(t *testing.T) {
	pool := newPool(t, testenv.PostgresURL(t))
	s := newPostgres(t, pool, dedupe.PostgresOptions{})
	ctx := testCtx(t)
	keys := make([]string, 60)
	for i := range keys {
		keys[i] = messages.KeyOf("deadlock|" + t.Name() + "|" + time.Now().String() + "|" + string(rune('A'+i)))
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			r := mathrand.New(mathrand.NewPCG(uint64(w), 1))
			for range 30 {
				batch := append([]string(nil), keys...)
				r.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
				batch = batch[:20]
				cl, err := s.Claim(ctx, "i", batch)
				if err != nil {
					t.Errorf("Claim: %v", err)
					return
				}
				r.Shuffle(len(cl), func(i, j int) { cl[i], cl[j] = cl[j], cl[i] })
				if r.IntN(2) == 0 {
					err = s.Accept(ctx, cl)
				} else {
					err = s.Release(ctx, cl)
				}
				if err != nil {
					t.Errorf("Accept or Release: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}
