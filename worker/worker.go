package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/group"
	"github.com/wagate/wagate/messages/streams"
)

// Defaults of Config.
const (
	// DefaultConcurrency is Config.Concurrency's default: handlers in
	// flight per Worker.
	DefaultConcurrency = 8
	// DefaultLockTTL is Config.LockTTL's default: 30 s.
	DefaultLockTTL = 30 * time.Second
	// DefaultShutdownTimeout is Config.ShutdownTimeout's default: 25 s,
	// inside Kubernetes' default 30 s grace period.
	DefaultShutdownTimeout = 25 * time.Second
	// DefaultHandlerTimeout is Config.HandlerTimeout's default: 5 minutes.
	DefaultHandlerTimeout = 5 * time.Minute
	// MaxHeld bounds Config.Concurrency + Config.Prefetch, in messages
	// (New returns an error above it): a Worker sizes its queues and starts
	// its runners by them, and JetStream lets out at most MaxAckPending
	// (default 1,000) messages anyway.
	MaxHeld = 10000
)

// Config configures a Worker. The zero value is the documented default for
// every field.
type Config struct {
	// Streams names and sizes the streams and the durable pull consumer; its
	// zero value is streams' defaults. AckWait, MaxDeliver and BackOff rule
	// redelivery: a failed handler is retried after BackOff[n-1] following
	// delivery n, and dead-lettered after delivery MaxDeliver (MaxDeliver -1:
	// never).
	Streams streams.Config

	// Concurrency is how many handlers one Worker runs at once. Default 8;
	// Concurrency + Prefetch at most MaxHeld.
	Concurrency int

	// Prefetch is how many messages one Worker fetches ahead of its
	// handlers: it holds up to Concurrency + Prefetch messages, fetched from
	// JetStream and not yet acknowledged, the ones beyond its running
	// handlers waiting for a runner (not yet begun, and told InProgress
	// every Heartbeat/2). With Prefetch > 0 a pull waits until at least
	// Prefetch messages can be taken, unless the handlers would otherwise
	// go idle, so fewer, larger pulls carry the same messages: less CPU per
	// event, in the worker and in the NATS server. The cost: a worker that
	// dies spends a delivery (of MaxDeliver) of every message it holds, so
	// with frequent crashes an event that never failed runs out of
	// deliveries sooner. Default 0: a Worker holds only what it runs. New
	// returns an error when it is negative or Concurrency + Prefetch is over
	// MaxHeld. With OrderConversation, which holds events in order itself,
	// it has no effect.
	Prefetch int

	// LockTTL is how long an event's lock lives unless extended; the worker
	// extends it every Heartbeat while the handler runs. If the process dies,
	// another worker may run the event after LockTTL. Default 30 s.
	LockTTL time.Duration

	// Heartbeat is the interval at which a running handler's lock is extended
	// and JetStream is told the message is in progress. It must be shorter
	// than LockTTL and AckWait. Default min(LockTTL, AckWait)/3.
	Heartbeat time.Duration

	// HandlerTimeout bounds one handler run: the handler's context is
	// cancelled when it passes, and an error returned then is retried like any
	// other. Default 5 minutes; negative means no bound.
	HandlerTimeout time.Duration

	// ShutdownTimeout is how long Run lets in-flight handlers finish after
	// its context is cancelled; then their contexts are cancelled, their
	// locks released and their messages Nak'd for another worker. Default 25 s.
	ShutdownTimeout time.Duration

	// Order says whether the events of one conversation wait for each
	// other: OrderNone (default) or OrderConversation (see Order).
	Order Order

	// MemberID identifies this worker among the workers sharing the
	// partitions of OrderConversation. A worker restarted with its previous
	// MemberID takes its partitions back at once; one with a new id waits,
	// like the others, for the old id to expire (3 s). Two running workers
	// must not share one: they would share its partitions' ownership, and
	// one of them would idle. Default: a random id per Run.
	MemberID string

	// MemberBucket is the JetStream key-value bucket (memory storage) in
	// which the workers of OrderConversation announce themselves to share
	// the partitions (streams.Partitions). Default "WAGATE_WORKERS".
	MemberBucket string

	// Logger receives the worker's structured logs; every line about an
	// event carries its key. Default slog.Default().
	Logger *slog.Logger

	// Registerer registers the worker's Prometheus metrics (wagate_worker_*).
	// Workers sharing a Registerer share their metrics. Default nil: metrics
	// are kept but not registered.
	Registerer prometheus.Registerer
}

// withDefaults returns c with every zero field set to its default, or an
// error when a field is out of range.
func (c Config) withDefaults() (Config, error) {
	c.Streams = c.Streams.WithDefaults()
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.LockTTL == 0 {
		c.LockTTL = DefaultLockTTL
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = min(c.LockTTL, c.Streams.AckWait) / 3
	}
	if c.HandlerTimeout == 0 {
		c.HandlerTimeout = DefaultHandlerTimeout
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Order == "" {
		c.Order = OrderNone
	}
	if c.MemberBucket == "" {
		c.MemberBucket = DefaultMemberBucket
	}
	switch {
	case c.Order != OrderNone && c.Order != OrderConversation:
		return c, fmt.Errorf("worker: Order %q is neither %q nor %q", c.Order, OrderNone, OrderConversation)
	case c.Concurrency < 0:
		return c, fmt.Errorf("worker: Concurrency %d is negative", c.Concurrency)
	case c.Prefetch < 0:
		return c, fmt.Errorf("worker: Prefetch %d is negative", c.Prefetch)
	case c.Concurrency > MaxHeld || c.Prefetch > MaxHeld || c.Concurrency+c.Prefetch > MaxHeld:
		return c, fmt.Errorf("worker: Concurrency %d + Prefetch %d is over %d", c.Concurrency, c.Prefetch, MaxHeld)
	case c.LockTTL < 0:
		return c, fmt.Errorf("worker: LockTTL %v is negative", c.LockTTL)
	case c.Streams.AckWait < 0:
		return c, fmt.Errorf("worker: AckWait %v is negative", c.Streams.AckWait)
	case c.Heartbeat <= 0:
		return c, fmt.Errorf("worker: Heartbeat %v is not positive", c.Heartbeat)
	case c.Heartbeat >= c.LockTTL:
		return c, fmt.Errorf("worker: Heartbeat %v must be shorter than LockTTL %v", c.Heartbeat, c.LockTTL)
	case c.Heartbeat >= c.Streams.AckWait:
		return c, fmt.Errorf("worker: Heartbeat %v must be shorter than AckWait %v", c.Heartbeat, c.Streams.AckWait)
	case c.ShutdownTimeout < 0:
		return c, fmt.Errorf("worker: ShutdownTimeout %v is negative", c.ShutdownTimeout)
	}
	for i, d := range c.Streams.BackOff {
		if d <= 0 {
			return c, fmt.Errorf("worker: BackOff[%d] %v is not positive", i, d)
		}
	}
	return c, nil
}

// Worker consumes the events stream and runs a Handler on each event under
// its lock. Create it with New; its methods are safe for concurrent use.
type Worker struct {
	cfg     Config
	js      jetstream.JetStream
	store   dedupe.Store
	handler Handler
	log     *slog.Logger
	metrics *metrics
	order   *orderer // nil with OrderNone; set by Run
	running atomic.Bool

	// finishes commits the done marks of runs finishing together in one
	// store call (see finishOne).
	finishes *group.Committer[dedupe.Lease, error]
}

// New returns a Worker that runs h on the events of js, locking them in
// store. It returns an error when an argument is nil, a Config field is out
// of range, or the metrics cannot be registered with cfg.Registerer. New does
// not touch the network: Run does.
func New(cfg Config, js jetstream.JetStream, store dedupe.Store, h Handler) (*Worker, error) {
	if js == nil {
		return nil, errors.New("worker: nil JetStream")
	}
	if store == nil {
		return nil, errors.New("worker: nil dedupe.Store")
	}
	if h == nil {
		return nil, errors.New("worker: nil Handler")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	w := &Worker{cfg: cfg, js: js, store: store, handler: h, log: cfg.Logger, metrics: m}
	w.finishes = group.New(0, w.finishBatch)
	return w, nil
}

// fetchWait is the longest one pull request waits for messages. Run
// cancels a waiting pull at once when its context ends.
const fetchWait = 5 * time.Second

// retryWait is the pause after a failed pull before the next one.
const retryWait = time.Second

// Run creates or updates the streams and the durable consumer, then consumes
// with at most Config.Concurrency messages in flight until ctx is cancelled.
// Each message goes through the path the package documentation describes.
//
// On cancellation it stops fetching and lets in-flight handlers finish for up
// to Config.ShutdownTimeout; then it cancels their contexts, releases their
// locks and Naks their messages. It returns nil after such a drain: every
// message it held is acknowledged, Nak'd or dead-lettered, and no lock of its
// own is left held (one whose release failed because the dedupe store was
// unreachable expires after LockTTL). Run returns only once every handler has
// returned.
//
// Run returns nil when ctx is cancelled, even before consuming began. Before
// consuming, it returns an error when the streams or the consumer cannot be
// ensured (wrapping streams.ErrConflict when the live streams conflict with
// Config.Streams, and with OrderConversation streams.ErrNoPinning when the
// NATS server is older than 2.11) or the advisory subscription fails; after
// the drain, when the NATS connection was closed under it. With
// OrderConversation it reads the partition consumers
// (streams.EnsurePartitionConsumers) instead of the workers' consumer. Only one Run may be active on a
// Worker at a time; a second returns an error at once.
func (w *Worker) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("worker: Run is already active")
	}
	defer w.running.Store(false)

	if err := streams.Ensure(ctx, w.js, w.cfg.Streams); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	var (
		cons jetstream.Consumer
		err  error
	)
	if w.cfg.Order == OrderConversation {
		w.order, err = newOrderer(ctx, w)
	} else {
		cons, err = streams.EnsureConsumer(ctx, w.js, w.cfg.Streams)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	adv, err := w.watchMaxDeliveries()
	if err != nil {
		return err
	}
	defer adv.stop()

	// hardCtx outlives ctx by ShutdownTimeout: in-flight handlers run under it.
	hardCtx, hardCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hardCancel()

	var inflight sync.WaitGroup
	if w.order != nil {
		err = w.consumeOrdered(ctx, hardCtx, &inflight)
	} else {
		err = w.consume(ctx, hardCtx, cons, &inflight)
	}

	w.drain(hardCancel, &inflight)
	return err
}

// job is a delivery handed to a runner: the message and the answer of the
// Begin of its fetched batch.
type job struct {
	m   jetstream.Msg
	pre *began
	e   *entry // its place in the order (OrderConversation), or nil
}

// consume fetches messages until ctx ends or the connection is closed, and
// runs them on Concurrency runners, goroutines owned by inflight that live as
// long as consume: a goroutine per message would grow a fresh stack for each
// (the path through the dedupe store's client is deep).
//
// It holds up to Concurrency + Prefetch deliveries: those running, and the
// others fetched ahead, waiting for a runner. A pull asks for at least
// Prefetch messages (one without Prefetch), so that a pull request,
// JetStream's most costly operation per message here, is shared by many
// messages, and a runner that finishes finds its next message already here;
// it cannot wait with runners idle, since then at most Concurrency are held.
// A message waiting for a runner is not begun (its lock is taken only when
// a runner is free for it) and is kept in progress every Heartbeat/2; when
// Run stops, the waiting ones are Nak'd for another worker at once.
func (w *Worker) consume(ctx, hardCtx context.Context, cons jetstream.Consumer, inflight *sync.WaitGroup) error {
	runners := w.cfg.Concurrency
	limit := runners + w.cfg.Prefetch
	least := max(1, w.cfg.Prefetch)
	held := make(chan struct{}, limit)
	release := func(n int) {
		for range n {
			<-held
		}
	}
	// idle holds a token per runner waiting for a job, so a send on jobs
	// never waits.
	idle := make(chan struct{}, runners)
	jobs := make(chan job, runners)
	for range runners {
		idle <- struct{}{}
		inflight.Go(func() {
			for j := range jobs {
				w.process(hardCtx, ctx.Done(), j.m, j.pre)
				w.metrics.inFlight.Dec()
				// Idle before the slot is free: a message fetched into
				// the slot finds its runner waiting, and is begun with
				// the others that arrive with it.
				idle <- struct{}{}
				release(1)
			}
		})
	}
	// One goroutine hands the fetched messages to idle runners: those that
	// find runners idle together (the runners that went idle while the
	// previous Begin was on the wire) are begun in one round trip
	// (dedupe.BeginAll). Every fetched group holds slots of held, so a send
	// on fetched never waits either.
	fetched := make(chan []jetstream.Msg, limit)
	defer close(fetched)
	inflight.Go(func() {
		defer close(jobs)
		w.dispatch(ctx, fetched, idle, jobs, release)
	})
	for {
		// Wait for one free slot, then take every other free one: at least
		// least.
		select {
		case held <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		n := takeFree(held, limit)
		for n < least {
			select {
			case held <- struct{}{}:
				n++
			case <-ctx.Done():
				release(n)
				return nil
			}
		}

		// The pull ends when ctx does; JetStream expires it a little before
		// fctx's deadline.
		fctx, cancel := context.WithTimeout(ctx, fetchWait)
		batch, err := cons.Fetch(n, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			release(n)
			if stop := w.fetchFailed(ctx, err, w.recreateConsumer(&cons)); stop != nil {
				return stop
			}
			continue
		}
		// Messages arrive one by one: each group holds the first to arrive
		// and every other one already there.
		msgs := batch.Messages()
		for got := range group.Arrived(msgs) {
			n -= len(got)
			if ctx.Err() != nil {
				// Arrived while stopping: hand them straight to another worker.
				w.handBack(got)
				release(len(got))
				continue
			}
			w.metrics.inFlight.Add(float64(len(got)))
			fetched <- got
		}
		cancel()
		release(n)
		if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			if stop := w.fetchFailed(ctx, err, w.recreateConsumer(&cons)); stop != nil {
				return stop
			}
		}
	}
}

// dispatch hands the messages of fetched to the runners through jobs, in
// the order they came, each when a runner is idle (a token of idle), and
// begins those it hands over together in one round trip. The messages
// waiting for a runner are told InProgress every Heartbeat/2. When ctx ends
// or fetched is closed, the waiting ones are Nak'd for another worker, and
// release frees their slots.
func (w *Worker) dispatch(ctx context.Context, fetched <-chan []jetstream.Msg, idle chan struct{}, jobs chan<- job, release func(int)) {
	var (
		waiting []jetstream.Msg
		since   time.Time // the waiting messages' last InProgress, or fetch
	)
	keepAlive := time.NewTicker(w.cfg.Heartbeat / 2)
	defer keepAlive.Stop()
	handBack := func() {
		w.handBack(waiting)
		w.metrics.inFlight.Sub(float64(len(waiting)))
		release(len(waiting))
		waiting = nil
	}
	// take adds a group received from fetched to waiting; once fetched is
	// closed (ok false), it hands the waiting ones back and returns false.
	take := func(group []jetstream.Msg, ok bool) bool {
		if !ok {
			handBack()
			return false
		}
		if len(waiting) == 0 {
			since = time.Now()
		}
		waiting = append(waiting, group...)
		return true
	}
	for {
		if len(waiting) == 0 {
			if group, ok := <-fetched; !take(group, ok) {
				return
			}
		}
		// Take in every group already fetched, so that they are begun
		// together.
	fetch:
		for {
			select {
			case group, ok := <-fetched:
				if !take(group, ok) {
					return
				}
			default:
				break fetch
			}
		}
		select {
		case <-idle:
		case group, ok := <-fetched:
			if !take(group, ok) {
				return
			}
			continue
		case <-keepAlive.C:
			if time.Since(since) >= w.cfg.Heartbeat/2 {
				for _, m := range waiting {
					if err := m.InProgress(); err != nil {
						w.metrics.heartbeatErrors.WithLabelValues("in_progress").Inc()
					}
				}
				since = time.Now()
			}
			continue
		}
		if ctx.Err() != nil {
			idle <- struct{}{}
			handBack()
			continue
		}
		// One runner is idle: take every other idle one, up to the
		// messages waiting.
		n := 1
	more:
		for n < len(waiting) {
			select {
			case <-idle:
				n++
			default:
				break more
			}
		}
		// Cut to its length: appending to waiting never writes into it.
		group := waiting[:n:n]
		waiting = waiting[n:]
		w.startGroup(group, jobs)
	}
}

// handBack Naks msgs at once, for another worker: they arrived or waited
// while Run was stopping, and none of them was begun.
func (w *Worker) handBack(msgs []jetstream.Msg) {
	for _, m := range msgs {
		w.nak(m, 0, w.log.With(slog.String("key", m.Headers().Get(nats.MsgIdHdr)), slog.String("subject", m.Subject())))
	}
}

// takeFree takes, besides the slot of slots its caller already took, every
// other free one, up to limit in all, and returns how many it holds.
func takeFree(slots chan struct{}, limit int) int {
	n := 1
	for n < limit {
		select {
		case slots <- struct{}{}:
			n++
		default:
			return n
		}
	}
	return n
}

// startGroup begins the runs of msgs, fetched together, in one round trip
// (dedupe.BeginAll) and hands them to the runners through jobs.
func (w *Worker) startGroup(msgs []jetstream.Msg, jobs chan<- job) {
	for i, pre := range w.beginBatch(msgs) {
		jobs <- job{m: msgs[i], pre: pre}
	}
}

// fetchFailed handles a failed pull: it returns an error when Run must stop
// (the connection is closed), else logs the failure with attrs, waits a
// moment and, when the consumer or the stream was deleted, calls recreate to
// create them again; then it returns nil.
func (w *Worker) fetchFailed(ctx context.Context, err error, recreate func(context.Context) error, attrs ...any) error {
	switch {
	case ctx.Err() != nil:
		return nil
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, jetstream.ErrInvalidOption):
		return fmt.Errorf("worker: fetch: %w", err)
	}
	w.log.WarnContext(ctx, "worker: fetch failed", append(attrs, slog.Any("error", err))...)
	w.metrics.fetchErrors.Inc()
	sleep(ctx, retryWait)
	if ctx.Err() == nil && (errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)) {
		if err := recreate(ctx); err != nil {
			w.log.WarnContext(ctx, "worker: re-creating the streams and consumers failed", slog.Any("error", err))
		}
	}
	return nil
}

// recreateConsumer creates the streams and the workers' consumer again, into
// *cons.
func (w *Worker) recreateConsumer(cons *jetstream.Consumer) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := streams.Ensure(ctx, w.js, w.cfg.Streams); err != nil {
			return err
		}
		c, err := streams.EnsureConsumer(ctx, w.js, w.cfg.Streams)
		if err != nil {
			return err
		}
		*cons = c
		return nil
	}
}

// drain waits for in-flight handlers, cancelling them after
// ShutdownTimeout. Each cancelled handler's lock is released and its message
// Nak'd by process itself.
func (w *Worker) drain(hardCancel context.CancelFunc, inflight *sync.WaitGroup) {
	done := make(chan struct{})
	go func() {
		inflight.Wait()
		close(done)
	}()
	t := time.NewTimer(w.cfg.ShutdownTimeout)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	w.log.Warn("worker: shutdown timeout passed; cancelling in-flight handlers",
		slog.Duration("shutdown_timeout", w.cfg.ShutdownTimeout))
	hardCancel()
	<-done
}
