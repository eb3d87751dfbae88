package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/messages"
)

// Memory compares Redis memory per retained claim: wagate's layout against
// the naive one.
type Memory struct {
	Claims int `json:"claims"`
	// Wagate is used_memory growth per claim after Claim and Accept through
	// dedupe.Redis with the default horizon, in bytes.
	Wagate float64 `json:"wagate_bytes_per_claim"`
	// Naive is the same for SET whatsapp:msg:<wamid> processed EX 604800.
	Naive float64 `json:"naive_bytes_per_claim"`
	Ratio float64 `json:"ratio"`
	// WamidLen is the length of the wamids of the naive layout.
	WamidLen int `json:"wamid_len"`
	// SampleKey and SampleValue show one retained wagate claim as stored.
	SampleKey   string `json:"sample_key"`
	SampleValue string `json:"sample_value"`
}

// naiveTTL is the naive layout's TTL: 7 days, in seconds.
const naiveTTL = 7 * 24 * time.Hour

// measureMemory fills the empty Redis at url with n claims in each layout in
// turn and reads used_memory from INFO memory before and after each.
func measureMemory(ctx context.Context, url string, n int) (Memory, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return Memory{}, err
	}
	probe := redis.NewClient(opts)
	defer probe.Close()
	m := Memory{Claims: n}
	wamids := make([]string, n)
	nonce := newWorkload(1, 0, "", false).nonce
	for i := range wamids {
		wamids[i] = wamid(nonce, uint64(i))
	}
	m.WamidLen = len(wamids[0])

	// wagate: dedupe.Redis, default horizon, Claim then Accept (the state an
	// event keeps once stored in JetStream).
	keys := make([]string, n)
	for i, w := range wamids {
		keys[i] = messages.KeyOf(messages.Identity(messages.ProviderCloud, string(messages.KindMessage), benchPhoneNumberID, w))
	}
	if m.Wagate, err = memoryDelta(ctx, probe, opts, n, func(c *redis.Client) error {
		store := dedupe.NewRedis(c, dedupe.RedisOptions{})
		const chunk = 1000
		for i := 0; i < n; i += chunk {
			claims, err := store.Claim(ctx, "bench-memory", keys[i:min(i+chunk, n)])
			if err != nil {
				return err
			}
			if err := store.Accept(ctx, claims); err != nil {
				return err
			}
		}
		return nil
	}, func(c *redis.Client) error {
		// Load the scripts before the first reading.
		store := dedupe.NewRedis(c, dedupe.RedisOptions{})
		claims, err := store.Claim(ctx, "bench-memory", []string{"wa:warmup"})
		if err != nil {
			return err
		}
		if err := store.Accept(ctx, claims); err != nil {
			return err
		}
		return c.Del(ctx, "wa:warmup").Err()
	}); err != nil {
		return Memory{}, fmt.Errorf("wagate layout: %w", err)
	}
	m.SampleKey = keys[0]
	if m.SampleValue, err = probe.Get(ctx, keys[0]).Result(); err != nil {
		return Memory{}, err
	}
	if ttl := probe.TTL(ctx, keys[0]).Val(); ttl < naiveTTL-time.Hour {
		return Memory{}, fmt.Errorf("wagate claim TTL %v, want the 168h horizon", ttl)
	}
	if err := probe.FlushAll(ctx).Err(); err != nil {
		return Memory{}, err
	}

	// naive: one string per wamid.
	if m.Naive, err = memoryDelta(ctx, probe, opts, n, func(c *redis.Client) error {
		const chunk = 1000
		for i := 0; i < n; i += chunk {
			_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, w := range wamids[i:min(i+chunk, n)] {
					p.Set(ctx, "whatsapp:msg:"+w, "processed", naiveTTL)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	}, nil); err != nil {
		return Memory{}, fmt.Errorf("naive layout: %w", err)
	}
	if err := probe.FlushAll(ctx).Err(); err != nil {
		return Memory{}, err
	}
	if m.Naive > 0 {
		m.Ratio = m.Wagate / m.Naive
	}
	return m, nil
}

// memoryDelta returns the growth of used_memory per key made by fill. warm,
// when not nil, runs first, before the first reading. Each runs on a client
// of its own, closed before the next reading, so that no connection but
// probe's is counted in either.
func memoryDelta(ctx context.Context, probe *redis.Client, opts *redis.Options, n int, fill, warm func(*redis.Client) error) (float64, error) {
	if warm != nil {
		if err := withClient(ctx, probe, opts, warm); err != nil {
			return 0, err
		}
	}
	before, err := usedMemory(ctx, probe)
	if err != nil {
		return 0, err
	}
	if err := withClient(ctx, probe, opts, fill); err != nil {
		return 0, err
	}
	if got := probe.DBSize(ctx).Val(); got != int64(n) {
		return 0, fmt.Errorf("%d keys after filling %d", got, n)
	}
	after, err := usedMemory(ctx, probe)
	if err != nil {
		return 0, err
	}
	return float64(after-before) / float64(n), nil
}

// withClient runs f on a new client, closes it and waits until the server
// has dropped its connections (only probe's is left).
func withClient(ctx context.Context, probe *redis.Client, opts *redis.Options, f func(*redis.Client) error) error {
	c := redis.NewClient(opts)
	err := f(c)
	c.Close()
	if err != nil {
		return err
	}
	return poll(ctx, 5*time.Second, func() bool {
		list, err := probe.ClientList(ctx).Result()
		return err == nil && strings.Count(list, "\n") == 1
	})
}

// usedMemory reads used_memory from INFO memory.
func usedMemory(ctx context.Context, c *redis.Client) (int64, error) {
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("no used_memory in INFO memory")
}
