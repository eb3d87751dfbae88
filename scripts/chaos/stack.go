package chaos

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/messages/streams"
	"github.com/wagate/wagate/worker"
)

// Secret is the App Secret of every scenario.
const Secret = "chaos-app-secret"

// Config describes one scenario's deployment and traffic.
type Config struct {
	// Name labels the table row.
	Name string
	// NATSNodes is 1 (a single nats-server) or 3 (a cluster, streams with
	// three replicas). Default 1.
	NATSNodes int
	// RedisArgs are extra redis-server arguments (for example AOF).
	RedisArgs []string
	// Policy is WAGATE_REDIS_POLICY. Default fail-open.
	Policy string
	// Ingresses and Workers are how many processes start. Default 2 each.
	Ingresses, Workers int
	// IngressFailpoints and WorkerFailpoints are WAGATE_FAILPOINTS of each.
	IngressFailpoints, WorkerFailpoints string
	// Hold is the sink's hold per forward; default DefaultHold.
	Hold func(key string) time.Duration
	// RefuseEvery is the provider's RefuseEvery: every RefuseEvery-th body
	// carries a new event that the sink refuses permanently (422), so
	// that exactly ceil(Rate × Traffic / RefuseEvery) events must end in
	// the dead-letter stream. 0: none.
	RefuseEvery int
	// Rate is new bodies a second; Traffic how long they come. Defaults 40
	// and 4 s.
	Rate    float64
	Traffic time.Duration
	// ProviderTimeout is the provider's timeout per attempt. Default 2 s.
	ProviderTimeout time.Duration
	// LockTTL and AckWait of the workers. Default 2 s each.
	LockTTL, AckWait time.Duration
	// Order turns on WAGATE_ORDER=conversation in the workers.
	Order bool
	// Drain bounds the wait for every event to be settled after the
	// traffic. Default 90 s.
	Drain time.Duration
	// Backend is the dedupe backend: BackendRedis (default),
	// BackendPostgres or BackendDynamoDB.
	Backend string
}

func (c *Config) defaults() {
	if c.NATSNodes == 0 {
		c.NATSNodes = 1
	}
	if c.Policy == "" {
		c.Policy = "fail-open"
	}
	if c.Ingresses == 0 {
		c.Ingresses = 2
	}
	if c.Workers == 0 {
		c.Workers = 2
	}
	if c.Hold == nil {
		c.Hold = DefaultHold
	}
	if c.Rate == 0 {
		c.Rate = 40
	}
	if c.Traffic == 0 {
		c.Traffic = 4 * time.Second
	}
	if c.ProviderTimeout == 0 {
		c.ProviderTimeout = 2 * time.Second
	}
	if c.LockTTL == 0 {
		c.LockTTL = 2 * time.Second
	}
	if c.AckWait == 0 {
		c.AckWait = 2 * time.Second
	}
	if c.Drain == 0 {
		c.Drain = 90 * time.Second
	}
	if c.Backend == "" {
		c.Backend = BackendRedis
	}
}

// Backoff is the workers' redelivery schedule in every scenario
// (WAGATE_BACKOFF), short so that a scenario settles in seconds.
const Backoff = "100ms,250ms,500ms,1s"

// Stack is one scenario's deployment: a private Redis, nats-server
// processes, ingress and worker processes, the sink, the provider and the
// MONITOR recorder. Everything is stopped at the end of the test.
type Stack struct {
	T        *testing.T
	Cfg      Config         // with defaults applied
	Bins     Binaries       // the programs
	Dir      string         // logs and nats-server storage
	Redis    *testenv.Redis // the private redis-server: Stop and Start make an outage
	RDB      *redis.Client  // a client of it, for the suite's own reads and faults
	NATS     []*NATSNode    // one node, or three in a cluster
	NATSURL  string         // every node's URL, as WAGATE_NATS_URL
	Ingress  []*Proc        // the ingress processes
	Workers  []*Proc        // the worker processes, as started by AddWorker
	Sink     *Sink          // the workers' forward target
	Provider *Provider      // the traffic
	Monitor  *Monitor       // Redis MONITOR
	Streams  streams.Config // the streams' names and settings

	// StateLostAt is set by the scenario when Redis lost its keys.
	StateLostAt time.Time

	backendEnv []string      // WAGATE_DEDUPE_BACKEND and its settings
	store      dedupe.Store  // the backend, for the final states
	pool       *pgxpool.Pool // the PostgreSQL backend's, for its marks

	ports   map[*Proc]int // each process's HTTP port
	admin   map[*Proc]int // an ingress's admin port (/readyz, /metrics)
	started time.Time
}

// NewStack starts a scenario's deployment and waits until it is ready.
func NewStack(t *testing.T, bins Binaries, cfg Config) *Stack {
	t.Helper()
	cfg.defaults()
	s := &Stack{T: t, Cfg: cfg, Bins: bins, Dir: t.TempDir(), ports: map[*Proc]int{}, admin: map[*Proc]int{}, started: time.Now()}
	s.Streams = streams.Config{Replicas: cfg.NATSNodes, AckWait: cfg.AckWait}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	s.Redis = testenv.StartRedis(t, cfg.RedisArgs...)
	s.RDB = redis.NewClient(&redis.Options{Addr: s.Redis.Addr()})
	t.Cleanup(func() { s.RDB.Close() })
	s.Monitor = StartMonitor(s.Redis.Addr())
	t.Cleanup(s.Monitor.Close)
	if err := s.Monitor.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}

	ports := make([]int, cfg.NATSNodes)
	cports := make([]int, cfg.NATSNodes)
	for i := range ports {
		ports[i], cports[i] = testenv.FreePort(t), testenv.FreePort(t)
	}
	s.NATS = NATSNodes(bins.NATSServer, s.Dir, ports, cports)
	for _, n := range s.NATS {
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Close)
	}
	s.NATSURL = ClientURLs(s.NATS)
	if err := WaitJetStream(ctx, s.NATSURL); err != nil {
		t.Fatal(err)
	}
	// Create the streams once, before any process races to.
	if err := s.withJS(ctx, func(js jetstream.JetStream) error {
		for {
			err := streams.Ensure(ctx, js, s.Streams)
			if err == nil || ctx.Err() != nil {
				return err
			}
			time.Sleep(100 * time.Millisecond) // a young cluster may refuse replicas for a moment
		}
	}); err != nil {
		t.Fatalf("streams: %v", err)
	}

	s.startBackend(ctx)

	// The provider comes first: the sink asks it which events to refuse.
	// Its URLs are set once the ingresses have their ports.
	s.Provider = NewProvider(nil, Secret, strings.NewReplacer("/", "-", " ", "-").Replace(cfg.Name))
	s.Provider.Timeout = cfg.ProviderTimeout
	s.Provider.RefuseEvery = cfg.RefuseEvery
	s.Sink = NewSink(cfg.Hold, s.Provider.Refused)
	t.Cleanup(s.Sink.Close)

	for i := range cfg.Ingresses {
		p := s.newIngress(i)
		s.Provider.URLs = append(s.Provider.URLs, fmt.Sprintf("http://127.0.0.1:%d/webhooks/whatsapp", s.ports[p]))
	}
	for range cfg.Workers {
		s.AddWorker()
	}
	for p := range s.ports {
		if err := waitHTTP(ctx, s.readyURL(p)); err != nil {
			t.Fatalf("%s: %v\n%s", p.Name, err, tail(p.Logs(), 3000))
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for p := range s.ports {
				t.Logf("--- %s log (tail):\n%s", p.Name, tail(p.Logs(), 2500))
			}
		}
	})
	return s
}

func (s *Stack) common() []string {
	return append([]string{
		"WAGATE_REDIS_URL=" + s.Redis.URL(),
		"WAGATE_NATS_URL=" + s.NATSURL,
		"WAGATE_STREAM_REPLICAS=" + strconv.Itoa(s.Cfg.NATSNodes),
		"WAGATE_ACK_WAIT=" + s.Cfg.AckWait.String(),
		"WAGATE_LOG_LEVEL=info",
	}, s.backendEnv...)
}

func (s *Stack) newIngress(i int) *Proc {
	port, admin := testenv.FreePort(s.T), testenv.FreePort(s.T)
	p := &Proc{
		Name: fmt.Sprintf("ingress-%d", i+1), Bin: s.Bins.Ingress, LogDir: s.Dir,
		Restart: true, RestartDelay: 100 * time.Millisecond,
		Env: append(s.common(),
			"WAGATE_HTTP_ADDR=127.0.0.1:"+strconv.Itoa(port),
			"WAGATE_ADMIN_ADDR=127.0.0.1:"+strconv.Itoa(admin),
			"WAGATE_META_APP_SECRET="+Secret,
			"WAGATE_WASENDER_SECRET="+Secret,
			"WAGATE_WAHA_HMAC_KEY="+Secret,
			"WAGATE_EVOLUTION_TOKEN="+Secret,
			"WAGATE_REDIS_POLICY="+s.Cfg.Policy,
			"WAGATE_FAILPOINTS="+s.Cfg.IngressFailpoints,
		),
	}
	s.ports[p] = port
	s.admin[p] = admin
	s.Ingress = append(s.Ingress, p)
	if err := p.Start(); err != nil {
		s.T.Fatal(err)
	}
	s.T.Cleanup(p.Close)
	return p
}

// AddWorker starts one more worker process (not waiting for it to be ready).
func (s *Stack) AddWorker() *Proc {
	port := testenv.FreePort(s.T)
	p := &Proc{
		Name: fmt.Sprintf("worker-%d", len(s.Workers)+1), Bin: s.Bins.Worker, LogDir: s.Dir,
		Restart: true, RestartDelay: 100 * time.Millisecond,
		Env: append(s.common(),
			"WAGATE_WORKER_HTTP_ADDR=127.0.0.1:"+strconv.Itoa(port),
			"WAGATE_HANDLER=forward",
			"WAGATE_FORWARD_URL="+s.Sink.URL(),
			"WAGATE_FORWARD_TIMEOUT=30s",
			"WAGATE_WORKER_CONCURRENCY=8",
			"WAGATE_ORDER="+map[bool]string{false: "none", true: "conversation"}[s.Cfg.Order],
			"WAGATE_LOCK_TTL="+s.Cfg.LockTTL.String(),
			"WAGATE_BACKOFF="+Backoff,
			"WAGATE_SHUTDOWN_TIMEOUT=10s",
			"WAGATE_FAILPOINTS="+s.Cfg.WorkerFailpoints,
		),
	}
	s.ports[p] = port
	s.Workers = append(s.Workers, p)
	if err := p.Start(); err != nil {
		s.T.Fatal(err)
	}
	s.T.Cleanup(p.Close)
	return p
}

// WaitReady waits until p answers /readyz.
func (s *Stack) WaitReady(p *Proc) {
	s.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := waitHTTP(ctx, s.readyURL(p)); err != nil {
		s.T.Fatalf("%s: %v", p.Name, err)
	}
}

func (s *Stack) readyURL(p *Proc) string {
	return fmt.Sprintf("http://127.0.0.1:%d/readyz", s.probePort(p))
}

// probePort is the port of p's /readyz and /metrics: an ingress's admin
// port, a worker's HTTP port.
func (s *Stack) probePort(p *Proc) int {
	if port, ok := s.admin[p]; ok {
		return port
	}
	return s.ports[p]
}

// Metric sums the samples of a Prometheus counter or gauge served by p's
// /metrics whose label set contains every label given (name="value").
func (s *Stack) Metric(p *Proc, name string, labels ...string) (float64, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.probePort(p)))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %q: %w", name, line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

// Traffic runs the provider for Cfg.Traffic with faults running alongside
// (its context ends with the traffic), then waits for every body to be
// answered 200 or given up.
func (s *Stack) Traffic(faults func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if faults != nil {
		wg.Go(func() { faults(ctx) })
	}
	s.Provider.Run(context.Background(), s.Cfg.Rate, s.Cfg.Traffic)
	cancel()
	wg.Wait()
	s.Provider.Wait()
	if err := s.Provider.Err(); err != nil {
		s.T.Fatalf("provider: %v", err)
	}
}

// Drain waits until the workers' consumer holds nothing and every answered
// event is forwarded or dead-lettered, within Cfg.Drain. It reports (does
// not fail) when the bound passes: the ledger says what is missing.
func (s *Stack) Drain() {
	s.T.Helper()
	answered := map[string]bool{}
	for _, b := range s.Provider.Bodies() {
		if b.OK {
			for _, k := range b.Keys {
				answered[k] = true
			}
		}
	}
	deadline := time.Now().Add(s.Cfg.Drain)
	err := s.withJS(context.Background(), func(js jetstream.JetStream) error {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			idle := s.idle(ctx, js, answered)
			cancel()
			if idle {
				return nil
			}
			if time.Now().After(deadline) {
				s.logBacklog(js)
				return fmt.Errorf("not settled after %v", s.Cfg.Drain)
			}
			time.Sleep(100 * time.Millisecond) // polling JetStream and the sink
		}
	})
	if err != nil {
		s.T.Logf("drain: %v", err)
	}
}

// logBacklog logs, for each of the workers' consumers that still holds
// events, its pending and ack pending counts and its pinned client.
func (s *Stack) logBacklog(js jetstream.JetStream) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range s.Streams.WorkerConsumers() {
		c, err := js.Consumer(ctx, s.Streams.WithDefaults().Events, name)
		if err != nil {
			continue
		}
		info := c.CachedInfo()
		if info.NumPending == 0 && info.NumAckPending == 0 {
			continue
		}
		s.T.Logf("drain: consumer %s: pending %d, ack pending %d, redelivered %d, ack floor %d, delivered %d, priority groups %+v",
			name, info.NumPending, info.NumAckPending, info.NumRedelivered, info.AckFloor.Stream, info.Delivered.Stream, info.PriorityGroups)
	}
}

// idle reports whether the consumer has nothing pending or unacknowledged
// and every answered key is applied or dead-lettered.
func (s *Stack) idle(ctx context.Context, js jetstream.JetStream, answered map[string]bool) bool {
	pending, ackPending, err := streams.Backlog(ctx, js, s.Streams)
	if err != nil || pending != 0 || ackPending != 0 {
		return false
	}
	var missing []string
	for k := range answered {
		if !s.Sink.IsApplied(k) {
			missing = append(missing, k)
		}
	}
	if len(missing) == 0 {
		return true
	}
	dlq, _, err := s.readDLQ(ctx, js)
	if err != nil {
		return false
	}
	for _, k := range missing {
		if _, ok := dlq[k]; !ok {
			return false
		}
	}
	return true
}

// Observe stops the workers and ingresses and gathers what every side saw.
func (s *Stack) Observe() Observed {
	s.T.Helper()
	for _, p := range append(append([]*Proc(nil), s.Workers...), s.Ingress...) {
		if _, _, err := p.Stop(15 * time.Second); err != nil {
			s.T.Errorf("stop: %v", err)
		}
	}
	o := Observed{
		Bodies:      s.Provider.Bodies(),
		Items:       s.Provider.Items(),
		Refused:     s.Provider.RefusedKeys(),
		Runs:        s.Sink.Runs(),
		StateLostAt: s.StateLostAt,
		Final:       map[string]dedupe.Record{},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := s.withJS(ctx, func(js jetstream.JetStream) error {
		var err error
		if o.Stream, o.Conversations, err = s.readEvents(ctx, js); err != nil {
			return err
		}
		o.DLQ, o.DeadLetters, err = s.readDLQ(ctx, js)
		return err
	})
	if err != nil {
		s.T.Fatalf("reading the streams: %v", err)
	}
	for key := range o.Items {
		rec, err := s.store.Lookup(ctx, key)
		if err != nil {
			s.T.Fatalf("lookup %s: %v", key, err)
		}
		o.Final[key] = rec
	}
	s.Monitor.Close()
	switch s.Cfg.Backend {
	case BackendRedis:
		o.Marks, o.MonitorGaps = s.Monitor.Marks(), s.Monitor.Gaps()
	case BackendPostgres:
		if o.Marks, err = s.pgMarks(ctx); err != nil {
			s.T.Fatalf("reading the marks: %v", err)
		}
	}
	return o
}

// Seconds is the wall time since the stack started.
func (s *Stack) Seconds() float64 { return time.Since(s.started).Seconds() }

func (s *Stack) withJS(ctx context.Context, f func(jetstream.JetStream) error) error {
	nc, err := nats.Connect(s.NATSURL, nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	return f(js)
}

// readEvents counts the events stream's messages by Nats-Msg-Id.
func (s *Stack) readEvents(ctx context.Context, js jetstream.JetStream) (map[string]int, map[string][]string, error) {
	out, convs := map[string]int{}, map[string][]string{}
	err := readAll(ctx, js, s.Streams.WithDefaults().Events, func(m jetstream.Msg) {
		key := m.Headers().Get(nats.MsgIdHdr)
		out[key]++
		if tok := m.Headers().Get(messages.HeaderConversation); tok != "" && tok != "_" {
			convs[tok] = append(convs[tok], key)
		}
	})
	return out, convs, err
}

// readDLQ returns each dead-lettered key's Wagate-Error, and how many dead
// letters each key has.
func (s *Stack) readDLQ(ctx context.Context, js jetstream.JetStream) (map[string]string, map[string]int, error) {
	reasons, counts := map[string]string{}, map[string]int{}
	err := readAll(ctx, js, s.Streams.WithDefaults().DLQ, func(m jetstream.Msg) {
		key := m.Headers().Get(worker.HeaderOriginalMsgID)
		reasons[key] = m.Headers().Get(worker.HeaderError)
		counts[key]++
	})
	return reasons, counts, err
}

// readAll reads every message of stream with an ordered consumer.
func readAll(ctx context.Context, js jetstream.JetStream, stream string, f func(jetstream.Msg)) error {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	want := info.State.Msgs
	if want == 0 {
		return nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	var got uint64
	for got < want {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return err
		}
		n := 0
		for m := range batch.Messages() {
			f(m)
			n++
		}
		if err := batch.Error(); err != nil && n == 0 {
			return fmt.Errorf("%s: read %d of %d messages: %w", stream, got, want, err)
		}
		if n == 0 {
			return fmt.Errorf("%s: read %d of %d messages", stream, got, want)
		}
		got += uint64(n)
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
