package dedupe_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/messages"
)

// One event's life: the ingress claims it, publishes it and accepts the
// claim; a provider retry is a duplicate; a worker begins, runs the handler
// under the lock with its fencing number, and finishes; a redelivery is
// skipped.
func ExampleRedis() {
	ctx := context.Background()
	rdb := redis.NewClient(redisOptions) // e.g. &redis.Options{Addr: "localhost:6379"}
	defer rdb.Close()
	store := dedupe.NewRedis(rdb, dedupe.RedisOptions{}) // horizon 7 days

	key := messages.KeyOf(messages.Identity("cloud", "status", "wamid.HBgL"+rand.Text(), "delivered"))

	// Ingress: claim every event of the request in one round trip.
	claims, err := store.Claim(ctx, "ingress-1", []string{key})
	if err != nil {
		panic(err)
	}
	fmt.Println("claim:", claims[0].Prior)
	// ... publish to JetStream with Nats-Msg-Id = key; after the PubAck:
	if err := store.Accept(ctx, claims); err != nil {
		panic(err)
	}

	// The provider retries the same webhook: a duplicate, answered 200.
	retry, err := store.Claim(ctx, "ingress-2", []string{key})
	if err != nil {
		panic(err)
	}
	fmt.Println("retry:", retry[0].Prior)

	// Worker: take the lock, run the handler, mark done.
	lease, err := store.Begin(ctx, key, dedupe.BeginOptions{TTL: 30 * time.Second})
	if err != nil {
		panic(err)
	}
	fmt.Println("begin: fence", lease.Fence)
	// ... handler(ctx, event), with lease.Fence and key for the downstream;
	// store.Extend(ctx, lease, ttl) keeps the lock while it runs.
	if err := store.Finish(ctx, lease); err != nil {
		panic(err)
	}

	// A redelivery of the same event is skipped.
	_, err = store.Begin(ctx, key, dedupe.BeginOptions{TTL: 30 * time.Second})
	fmt.Println("redelivery done:", errors.Is(err, dedupe.ErrDone))

	rec, err := store.Lookup(ctx, key)
	if err != nil {
		panic(err)
	}
	fmt.Println("state:", rec.State, "fence", rec.Fence, "locked", rec.Locked)
	// Output:
	// claim: absent
	// retry: accepted
	// begin: fence 1
	// redelivery done: true
	// state: done fence 1 locked false
}
