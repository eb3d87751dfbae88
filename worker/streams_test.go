package worker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/messages/streams"
	"github.com/wagate/wagate/worker"
)

// A program embedding the worker (outside this module's internal/) names the
// stream settings in Config and matches a stream conflict with errors.Is.
// This file is in package worker_test, so it compiles only while both are
// public.
func TestEmbedderNamesStreamConfigAndConflict(t *testing.T) {
	ns := testenv.StartNATS(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	sc := streams.Config{
		Events:     "EMBED_EVENTS",
		DLQ:        "EMBED_DLQ",
		Consumer:   "embed-workers",
		MaxAge:     time.Hour,
		MaxDeliver: 3,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A live events stream that cannot be updated in place: memory storage
	// where wagate wants file storage.
	live := sc.EventsStream()
	live.Storage = jetstream.MemoryStorage
	if _, err := js.CreateStream(ctx, live); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never reached: Run stops at the streams
	defer rdb.Close()
	w, err := worker.New(worker.Config{Streams: sc}, js, dedupe.NewRedis(rdb, dedupe.RedisOptions{}),
		worker.HandlerFunc(func(context.Context, messages.Event) error { return nil }))
	if err != nil {
		t.Fatal(err)
	}
	err = w.Run(ctx)
	if !errors.Is(err, streams.ErrConflict) {
		t.Fatalf("Run = %v, want an error wrapping streams.ErrConflict", err)
	}
}
