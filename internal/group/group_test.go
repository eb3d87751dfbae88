package group

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestResultsInOrder runs many concurrent callers and checks each gets the
// results of its own items, in order.
func TestResultsInOrder(t *testing.T) {
	var batches, items atomic.Int64
	c := New(0, func(in []int) ([]string, error) {
		batches.Add(1)
		items.Add(int64(len(in)))
		out := make([]string, len(in))
		for i, v := range in {
			out[i] = fmt.Sprint(v * 2)
		}
		return out, nil
	})
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			for r := range 50 {
				in := []int{g*1000 + r, g*1000 + r + 1, -g}
				out, err := c.Do(in)
				if err != nil {
					t.Errorf("Do: %v", err)
					return
				}
				for i, v := range in {
					if want := fmt.Sprint(v * 2); out[i] != want {
						t.Errorf("caller %d: result %d = %q, want %q", g, i, out[i], want)
					}
				}
			}
		})
	}
	wg.Wait()
	if got := items.Load(); got != 64*50*3 {
		t.Fatalf("committed %d items, want %d", got, 64*50*3)
	}
	t.Logf("%d calls in %d batches", 64*50, batches.Load())
}

// TestWaitersShareOneBatch holds a batch on the wire while other callers
// arrive, and checks they all leave together in the next batch.
func TestWaitersShareOneBatch(t *testing.T) {
	release := make(chan struct{})
	started := make(chan int, 16)
	var sizes []int
	var mu sync.Mutex
	c := New(0, func(in []int) ([]int, error) {
		mu.Lock()
		sizes = append(sizes, len(in))
		mu.Unlock()
		started <- len(in)
		<-release
		return in, nil
	})
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = c.Do([]int{0}) })
	<-started // the first batch is on the wire, alone
	const waiters = 5
	for i := range waiters {
		wg.Go(func() {
			out, err := c.Do([]int{i + 1, i + 1})
			if err != nil || len(out) != 2 || out[0] != i+1 {
				t.Errorf("waiter %d: %v %v", i, out, err)
			}
		})
	}
	// Wait until every waiter is queued.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		n := len(c.queue)
		c.mu.Unlock()
		if n == waiters { // the first batch left the queue when it was sent
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue holds %d calls, want %d", n, waiters)
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if len(sizes) != 2 || sizes[0] != 1 || sizes[1] != 2*waiters {
		t.Fatalf("batch sizes %v, want [1 %d]", sizes, 2*waiters)
	}
	if c.busy || len(c.queue) != 0 {
		t.Fatalf("committer not idle after the last batch: busy=%v queue=%d", c.busy, len(c.queue))
	}
}

// TestMax checks a batch holds at most max items, except a single call
// larger than max, which goes alone.
func TestMax(t *testing.T) {
	release := make(chan struct{})
	first := make(chan struct{}, 1)
	var mu sync.Mutex
	var sizes []int
	c := New(4, func(in []int) ([]int, error) {
		mu.Lock()
		sizes = append(sizes, len(in))
		mu.Unlock()
		select {
		case first <- struct{}{}:
			<-release
		default:
		}
		return in, nil
	})
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = c.Do([]int{1}) })
	<-first
	for _, n := range []int{3, 3, 9} {
		wg.Go(func() { _, _ = c.Do(make([]int, n)) })
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		n := len(c.queue)
		c.mu.Unlock()
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue holds %d calls, want 3", n)
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	total := 0
	for _, s := range sizes[1:] {
		total += s
		if s > 4 && s != 9 {
			t.Errorf("batch of %d items, over max 4 (sizes %v)", s, sizes)
		}
	}
	if total != 15 {
		t.Fatalf("committed %d items after the first, want 15 (sizes %v)", total, sizes)
	}
}

// TestErrorsReachEveryCallOfTheBatch checks an error, a wrong result count
// and a panic each fail the calls of their batch, and the next batch works.
func TestErrorsReachEveryCallOfTheBatch(t *testing.T) {
	boom := errors.New("boom")
	mode := "error"
	c := New(0, func(in []int) ([]int, error) {
		switch mode {
		case "error":
			return nil, boom
		case "short":
			return in[:len(in)-1], nil
		case "panic":
			panic("bad")
		}
		return in, nil
	})
	if _, err := c.Do([]int{1, 2}); !errors.Is(err, boom) {
		t.Fatalf("error: got %v, want %v", err, boom)
	}
	mode = "short"
	if _, err := c.Do([]int{1, 2}); err == nil {
		t.Fatal("short answer: got no error")
	}
	mode = "panic"
	if _, err := c.Do([]int{1}); err == nil {
		t.Fatal("panic: got no error")
	}
	mode = ""
	if out, err := c.Do([]int{7}); err != nil || len(out) != 1 || out[0] != 7 {
		t.Fatalf("after the failures: %v %v", out, err)
	}
	if out, err := c.Do(nil); out != nil || err != nil {
		t.Fatalf("no items: %v %v", out, err)
	}
}

// waitQueued polls until c's queue holds n calls.
func waitQueued[T, R any](t *testing.T, c *Committer[T, R], n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		got := len(c.queue)
		c.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue holds %d calls, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRideJoinsTheNextBatch holds a batch on the wire, and checks riders
// go in the next batch, with the Do call that waits, each handed its own
// results before that Do returns; with no batch on the wire, Ride refuses.
func TestRideJoinsTheNextBatch(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	var mu sync.Mutex
	var batches [][]int
	c := New(0, func(in []int) ([]int, error) {
		mu.Lock()
		batches = append(batches, slices.Clone(in))
		mu.Unlock()
		select {
		case started <- struct{}{}:
			<-release
		default:
		}
		out := make([]int, len(in))
		for i, v := range in {
			out[i] = -v
		}
		return out, nil
	})
	if c.Ride([]int{9}, func([]int, error) { t.Error("done called for a refused ride") }) {
		t.Fatal("Ride on an idle committer: got true, want false")
	}

	var wg sync.WaitGroup
	wg.Go(func() { _, _ = c.Do([]int{1}) })
	<-started // the first batch is on the wire
	var rides [][]int
	var waiterDone atomic.Bool
	ride := func(items []int) {
		t.Helper()
		ok := c.Ride(items, func(out []int, err error) {
			if err != nil {
				t.Errorf("ride %v: %v", items, err)
			}
			if waiterDone.Load() {
				t.Errorf("ride %v: done called after the waiter's Do returned", items)
			}
			mu.Lock()
			rides = append(rides, out)
			mu.Unlock()
		})
		if !ok {
			t.Fatalf("Ride %v with a batch on the wire: got false, want true", items)
		}
	}
	ride([]int{4})
	wg.Go(func() {
		out, err := c.Do([]int{2, 3})
		if err != nil || !slices.Equal(out, []int{-2, -3}) {
			t.Errorf("waiter: %v %v, want [-2 -3]", out, err)
		}
		waiterDone.Store(true)
	})
	waitQueued(t, c, 2)
	ride([]int{5, 6})
	close(release)
	wg.Wait()
	c.Wait()
	want := [][]int{{1}, {4, 2, 3, 5, 6}}
	if !slices.EqualFunc(batches, want, slices.Equal) {
		t.Fatalf("batches %v, want %v", batches, want)
	}
	if !slices.EqualFunc(rides, [][]int{{-4}, {-5, -6}}, slices.Equal) {
		t.Fatalf("ride results %v, want [[-4] [-5 -6]]", rides)
	}
	if c.busy || len(c.queue) != 0 {
		t.Fatalf("committer not idle: busy=%v queue=%d", c.busy, len(c.queue))
	}
}

// TestRidersLeaveAlone checks riders with no Do call waiting leave once the
// batch on the wire returns, in batches of at most max items, without
// holding up its callers or the next Do call, and that a batch's error
// reaches them.
func TestRidersLeaveAlone(t *testing.T) {
	boom := errors.New("boom")
	release, ridersGate := make(chan struct{}), make(chan struct{})
	started := make(chan struct{}, 1)
	var mu sync.Mutex
	var sizes []int
	c := New(2, func(in []int) ([]int, error) {
		mu.Lock()
		sizes = append(sizes, len(in))
		mu.Unlock()
		switch {
		case in[0] >= 10: // riders
			<-ridersGate
			return nil, boom
		case in[0] == 1:
			started <- struct{}{}
			<-release
		}
		return in, nil
	})
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := c.Do([]int{1}); err != nil {
			t.Errorf("Do: %v", err)
		}
	})
	<-started
	var rode atomic.Int64
	for i := range 3 {
		if !c.Ride([]int{10 + i, 20 + i}, func(_ []int, err error) {
			if !errors.Is(err, boom) {
				t.Errorf("rider %d: %v, want %v", i, err, boom)
			}
			rode.Add(1)
		}) {
			t.Fatalf("Ride %d: got false, want true", i)
		}
	}
	close(release)
	wg.Wait() // the first Do returned, its riders held on the wire
	next := make(chan error, 1)
	go func() {
		_, err := c.Do([]int{5})
		next <- err
	}()
	select {
	case err := <-next:
		if err != nil {
			t.Fatalf("Do while riders are on the wire: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a Do call waited for riders sent alone")
	}
	close(ridersGate)
	c.Wait()
	if n := rode.Load(); n != 3 {
		t.Fatalf("%d of 3 riders done after Wait", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(sizes, []int{1, 1, 2, 2, 2}) && !slices.Equal(sizes, []int{1, 2, 1, 2, 2}) {
		t.Fatalf("batch sizes %v, want [1 1 2 2 2]: the first call, the next Do, three rider batches", sizes)
	}
	if c.busy || len(c.queue) != 0 {
		t.Fatalf("committer not idle: busy=%v queue=%d", c.busy, len(c.queue))
	}
}
