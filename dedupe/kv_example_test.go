package dedupe_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/messages"
)

// One event's life on JetStream key-value, as in wagate dev: the same calls
// as on Redis, on an embedded NATS server.
func ExampleKV() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// An embedded server with JetStream, as wagate dev runs one.
	dir, err := os.MkdirTemp("", "wagate-kv-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		panic(err)
	}
	go srv.Start()
	defer srv.WaitForShutdown()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		panic("nats server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		panic(err)
	}

	// Buckets wagate_dedupe and wagate_dedupe_lock, horizon 7 days, file storage.
	store, err := dedupe.NewKV(ctx, js, dedupe.KVOptions{})
	if err != nil {
		panic(err)
	}
	key := messages.KeyOf(messages.Identity("cloud", "status", "wamid.HBgL"+rand.Text(), "delivered"))

	claims, err := store.Claim(ctx, "ingress-1", []string{key})
	if err != nil {
		panic(err)
	}
	fmt.Println("claim:", claims[0].Prior)
	// ... publish to JetStream with Nats-Msg-Id = key; after the PubAck:
	if err := store.Accept(ctx, claims); err != nil {
		panic(err)
	}

	lease, err := store.Begin(ctx, key, dedupe.BeginOptions{TTL: 30 * time.Second})
	if err != nil {
		panic(err)
	}
	fmt.Println("begin: fence", lease.Fence)
	// ... handler(ctx, event) with lease.Fence and key.
	if err := store.Finish(ctx, lease); err != nil {
		panic(err)
	}

	_, err = store.Begin(ctx, key, dedupe.BeginOptions{TTL: 30 * time.Second})
	fmt.Println("redelivery done:", errors.Is(err, dedupe.ErrDone))

	rec, err := store.Lookup(ctx, key)
	if err != nil {
		panic(err)
	}
	fmt.Println("state:", rec.State, "fence", rec.Fence, "locked", rec.Locked)
	// Output:
	// claim: absent
	// begin: fence 1
	// redelivery done: true
	// state: done fence 1 locked false
}
