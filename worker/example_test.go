package worker_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/worker"
)

// errUnknownCustomer is a business rule failure: retrying cannot help.
var errUnknownCustomer = errors.New("unknown customer")

// saveOrder stands for the program's own business logic. It stores the
// order under key (its idempotency key) and refuses a write whose fence is
// lower than the last one it accepted for key.
func saveOrder(ctx context.Context, key string, fence int64, ev messages.Event) error {
	return nil
}

// A Go program embeds the worker with its own Handler: configure, build,
// run until SIGTERM, exit. This example is compiled, not run: it serves
// until a signal, against the NATS and Redis of the machine it runs on.
// TestEmbedderNamesStreamConfigAndConflict runs the same calls against test
// servers.
func Example() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	store := dedupe.NewRedis(rdb, dedupe.RedisOptions{})

	orders := worker.HandlerFunc(func(ctx context.Context, ev messages.Event) error {
		if ev.Kind != messages.KindMessage {
			return nil // statuses and the rest: nothing to do
		}
		run, _ := worker.RunFromContext(ctx)
		err := saveOrder(ctx, ev.Key, run.Fence, ev)
		if errors.Is(err, errUnknownCustomer) {
			return worker.Permanent(err) // to the dead-letter stream at once
		}
		return err // nil: done; any other error: retried with backoff
	})

	cfg := worker.Config{
		Concurrency: 16,
		Logger:      slog.New(slog.NewJSONHandler(os.Stderr, nil)),
		Registerer:  prometheus.DefaultRegisterer,
	}
	cfg.Streams.MaxDeliver = 5
	w, err := worker.New(cfg, js, store, orders)
	if err != nil {
		log.Fatal(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

// Forward posts every event to the operator's own endpoint, with the
// Idempotency-Key and Wagate-Fencing-Token headers. The endpoint here is a
// test server that prints what it receives.
func ExampleNewForward() {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println(r.Method, r.Header.Get("Authorization"))
		fmt.Println(worker.HeaderIdempotencyKey+":", r.Header.Get(worker.HeaderIdempotencyKey))
		fmt.Println(worker.HeaderFencingToken+":", r.Header.Get(worker.HeaderFencingToken))
		w.WriteHeader(http.StatusNoContent)
	}))
	defer app.Close()

	f := worker.NewForward(app.URL+"/whatsapp", &http.Client{Timeout: 10 * time.Second})
	f.Header = http.Header{"Authorization": {"Bearer orders-token"}}
	var _ worker.Handler = f

	ev := messages.Event{Provider: messages.ProviderCloud, Kind: messages.KindMessage,
		Key: messages.KeyOf("cloud|message|106540352242922|messages|wamid.A"), Item: []byte(`{"id":"wamid.A"}`)}
	ctx := worker.WithRun(context.Background(), worker.Run{Fence: 3, Delivery: 1})
	fmt.Println("error:", f.Handle(ctx, ev))
	// Output:
	// POST Bearer orders-token
	// Idempotency-Key: wa:fao9ISN7iXmqmmodxz7bEA
	// Wagate-Fencing-Token: 3
	// error: <nil>
}
