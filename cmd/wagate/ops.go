package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/internal/connect"
	"github.com/wagate/wagate/messages/streams"
)

// opsConnectTimeout bounds connecting to NATS and opening the dedupe store
// for an operator command.
const opsConnectTimeout = 10 * time.Second

// ops is what the operator commands (replay, dlq, streams, key) work on: the
// configuration, a NATS connection with JetStream, the stream names and,
// when asked for, the dedupe store.
type ops struct {
	cfg   config.Config
	log   *slog.Logger
	nc    *nats.Conn
	js    jetstream.JetStream
	sc    streams.Config // with defaults
	dev   string         // the wagate dev record followed, "" for none
	store dedupe.Store   // nil unless opened with withStore
	stop  []func()
}

// openOps loads the configuration and connects, within opsConnectTimeout.
// name is the NATS connection name. The caller must call close.
func openOps(ctx context.Context, name string, withStore bool) (*ops, error) {
	cfg, err := config.Load()
	if err != nil {
		return nil, err
	}
	dev, err := applyDevState(&cfg)
	if err != nil {
		return nil, err
	}
	o := &ops{cfg: cfg, dev: dev, log: connect.Logger(cfg), sc: connect.Streams(cfg).WithDefaults()}
	cctx, cancel := context.WithTimeout(ctx, opsConnectTimeout)
	defer cancel()
	auth, err := connect.NATSAuth(cfg)
	if err != nil {
		return nil, err
	}
	nc, js, err := connect.NATS(cctx, cfg.NATSURL, name, o.log, auth...)
	if err != nil {
		return nil, err
	}
	o.nc, o.js = nc, js
	o.stop = append(o.stop, nc.Close)
	if withStore {
		store, closeStore, err := connect.OpenStore(cctx, cfg, js)
		if err != nil {
			o.close()
			return nil, err
		}
		o.store = store
		o.stop = append(o.stop, closeStore)
	}
	return o, nil
}

// storeName says which dedupe store o reads, for the operator.
func (o *ops) storeName() string {
	name := storeName(o.cfg)
	if o.cfg.DedupeBackend == "nats" {
		name += " on " + connect.RedactURL(o.cfg.NATSURL)
	}
	if o.dev != "" {
		name += " (the wagate dev recorded in " + o.dev + ")"
	}
	return name
}

// close releases what openOps opened, in reverse order.
func (o *ops) close() {
	for i := len(o.stop) - 1; i >= 0; i-- {
		o.stop[i]()
	}
	o.stop = nil
}

// stream returns the named stream, or an error telling the operator how to
// create it.
func (o *ops) stream(ctx context.Context, name string) (jetstream.Stream, error) {
	st, err := o.js.Stream(ctx, name)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("stream %s does not exist (create it with: wagate streams create)", name)
		}
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	return st, nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// ago formats the time since t for a person: "3s", "5m", "2h", "4d".
func ago(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

// parseWhen reads a --since or --until value: an RFC 3339 time, or a Go
// duration meaning that long before now ("90m", "48h").
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2025-01-31T12:00:00Z) nor a positive duration (90m, 48h)", s)
	}
	return now.Add(-d), nil
}
