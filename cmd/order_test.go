package e2e

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/messages/streams"
)

// orderSize sets the conversations and events per conversation of the order
// tests: 200 × 20 by default; -order.big runs 1000 × 40.
var orderBig = flag.Bool("order.big", false, "order tests: 1000 conversations × 40 events instead of 200 × 20")

// orderSink records, per conversation, the events forwarded to it in the
// order they arrived. A slow, uneven answer gives later events of a
// conversation every chance to overtake.
type orderSink struct {
	inner sink
}

func (s *orderSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	time.Sleep(time.Duration(rand.IntN(5)) * time.Millisecond)
	s.inner.ServeHTTP(w, r)
}

// orderTraffic is the test's traffic: conversations, each a list of Cloud API
// bodies of one item (a message from the user, or every fifth a status of
// the business's reply to them), in the order they are sent.
type orderTraffic struct {
	run    string
	convs  int
	per    int
	bodies [][][]byte // conversation → bodies in sending order
	ids    [][]string // conversation → item ids in sending order
}

func newOrderTraffic(convs, per int) *orderTraffic {
	tr := &orderTraffic{run: fmt.Sprintf("%x", rand.Uint64()), convs: convs, per: per}
	for c := range convs {
		pnid := fmt.Sprintf("10654035224292%d", c%2) // two business numbers
		waid := fmt.Sprintf("1555%07d", c)
		var bodies [][]byte
		var ids []string
		for i := range per {
			id := fmt.Sprintf("wamid.%s-%d-%d", tr.run, c, i)
			item := fmt.Sprintf(`"messages":[{"from":%q,"id":%q,"timestamp":"1700000000","type":"text","text":{"body":"message %d"}}]`, waid, id, i)
			if i%5 == 4 {
				item = fmt.Sprintf(`"statuses":[{"id":%q,"status":"delivered","timestamp":"1700000000","recipient_id":%q}]`, id, waid)
			}
			bodies = append(bodies, fmt.Appendf(nil, `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":%q},"contacts":[{"profile":{"name":"U"},"wa_id":%q}],%s}}]}]}`, pnid, waid, item))
			ids = append(ids, id)
		}
		tr.bodies = append(tr.bodies, bodies)
		tr.ids = append(tr.ids, ids)
	}
	return tr
}

// send posts every conversation at once: in each, one body after the other,
// each body twice at the same moment, one copy to each ingress, the next body
// only once both are answered 200.
func (tr *orderTraffic) send(t *testing.T, ingress []string) { tr.sendPart(t, ingress, 0, tr.per) }

// sendPart is send for the bodies [from, to) of every conversation.
func (tr *orderTraffic) sendPart(t *testing.T, ingress []string, from, to int) {
	var wg sync.WaitGroup
	for c := range tr.convs {
		wg.Go(func() {
			for i := from; i < to; i++ {
				b := tr.bodies[c][i]
				var pair sync.WaitGroup
				for k := range 2 {
					pair.Go(func() {
						for try := 0; ; try++ {
							code, err := post(ingress[(c+i+k)%2], fixture{provider: messages.ProviderCloud, body: b})
							if err == nil && code == http.StatusOK {
								return
							}
							if try == 5 {
								t.Errorf("conversation %d body %d: code %d err %v", c, i, code, err)
								return
							}
						}
					})
				}
				pair.Wait()
			}
		})
	}
	wg.Wait()
}

// check compares what the sink saw with the traffic: in every conversation
// the events in sending order, each once; a re-run allowed by G2 (a worker
// killed after its forward and before its done mark) repeats an event at
// once, before the next one, and is counted, up to maxReruns.
func (tr *orderTraffic) check(t *testing.T, sk *orderSink, maxReruns int) {
	t.Helper()
	byConv := map[string][]string{}
	convOf := map[string]int{}
	for c, ids := range tr.ids {
		for _, id := range ids {
			convOf[id] = c
		}
	}
	names := make([]string, tr.convs)
	for _, f := range sk.inner.snapshot() {
		c, ok := convOf[f.Event.ID]
		if !ok {
			t.Errorf("unexpected forward %s (%s)", f.Event.ID, f.Event.Identity)
			continue
		}
		if names[c] == "" {
			names[c] = f.Event.Conversation
		} else if names[c] != f.Event.Conversation {
			t.Errorf("conversation %d is both %q and %q", c, names[c], f.Event.Conversation)
		}
		byConv[f.Event.Conversation] = append(byConv[f.Event.Conversation], f.Event.ID)
	}
	reruns, bad := 0, 0
	for c, want := range tr.ids {
		got := byConv[names[c]]
		collapsed := slices.Compact(slices.Clone(got))
		reruns += len(got) - len(collapsed)
		if !slices.Equal(collapsed, want) {
			bad++
			if bad <= 3 {
				t.Errorf("conversation %d (%q): forwarded\n%v\nwant\n%v", c, names[c], got, want)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d conversations out of order or incomplete", bad, tr.convs)
	}
	if reruns > maxReruns {
		t.Errorf("%d re-runs, want at most %d", reruns, maxReruns)
	}
	t.Logf("%d conversations × %d events, %d forwards, %d re-runs", tr.convs, tr.per, len(sk.inner.snapshot()), reruns)
}

// orderRig is two ingresses and a forward sink on one NATS and Redis, with
// workers started on demand.
type orderRig struct {
	t       *testing.T
	dir     string
	common  []string
	ingress []string
	sink    *orderSink
	natsURL string
}

func newOrderRig(t *testing.T) *orderRig {
	if testing.Short() {
		t.Skip("end-to-end: skipped in -short mode")
	}
	r := &orderRig{t: t, dir: binaries(t), sink: &orderSink{}, natsURL: testenv.NATSURL(t)}
	srv := httptest.NewServer(r.sink)
	t.Cleanup(srv.Close)
	r.common = []string{
		"WAGATE_REDIS_URL=" + testenv.RedisURL(t),
		"WAGATE_NATS_URL=" + r.natsURL,
		"WAGATE_META_APP_SECRET=" + secret,
		"WAGATE_LOG_LEVEL=warn",
		"WAGATE_HANDLER=forward",
		"WAGATE_FORWARD_URL=" + srv.URL,
		"WAGATE_ORDER=conversation",
		"WAGATE_ACK_WAIT=4s",
		"WAGATE_LOCK_TTL=4s",
		"WAGATE_BACKOFF=100ms",
	}
	for i := range 2 {
		port, adminPort := testenv.FreePort(t), testenv.FreePort(t)
		start(t, filepath.Join(r.dir, "ingress"), fmt.Sprintf("ingress-%d", i),
			append(r.common, fmt.Sprintf("WAGATE_HTTP_ADDR=127.0.0.1:%d", port), fmt.Sprintf("WAGATE_ADMIN_ADDR=127.0.0.1:%d", adminPort))...)
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort))
		r.ingress = append(r.ingress, base)
	}
	return r
}

// orderWorker is a worker process and its metrics address.
type orderWorker struct {
	*process
	metrics string
}

// worker starts a worker process with 32 handlers.
func (r *orderRig) worker(name string) *orderWorker {
	port := testenv.FreePort(r.t)
	p := start(r.t, filepath.Join(r.dir, "worker"), name,
		append(r.common, "WAGATE_WORKER_CONCURRENCY=32", fmt.Sprintf("WAGATE_WORKER_HTTP_ADDR=127.0.0.1:%d", port))...)
	waitReady(r.t, fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
	return &orderWorker{process: p, metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", port)}
}

// partitions returns how many partitions w owns.
func (w *orderWorker) partitions(t *testing.T) float64 {
	return metricValue(t, w.metrics, "wagate_worker_order_partitions")
}

// done returns how many events w ran and marked done.
func (w *orderWorker) done(t *testing.T) float64 {
	return metricValue(t, w.metrics, `wagate_worker_processed_total{outcome="done"}`)
}

// waitWorking waits until every one of ws owns a partition and has run an
// event of it.
func (r *orderRig) waitWorking(ws ...*orderWorker) {
	for _, w := range ws {
		testenv.Eventually(r.t, time.Minute, func() bool { return w.partitions(r.t) >= 1 && w.done(r.t) >= 1 },
			"%s never owned a partition and ran an event of it", w.name)
	}
}

// forwards returns how many forwards the sink has received.
func (r *orderRig) forwards() int { return len(r.sink.inner.snapshot()) }

// waitForwards waits until the sink has received n forwards.
func (r *orderRig) waitForwards(n int) {
	testenv.Eventually(r.t, 3*time.Minute, func() bool { return r.forwards() >= n }, "only %d forwards, want %d", r.forwards(), n)
}

// settle waits until every event is forwarded and the consumer holds nothing.
func (r *orderRig) settle(tr *orderTraffic) {
	nc, err := nats.Connect(r.natsURL)
	if err != nil {
		r.t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	r.waitForwards(tr.convs * tr.per)
	testenv.Eventually(r.t, time.Minute, func() bool {
		pending, ackPending, err := streams.Backlog(r.t.Context(), js, streams.Config{})
		return err == nil && pending == 0 && ackPending == 0
	}, "partition consumers never idle")
}

func orderSize() (convs, per int) {
	if *orderBig {
		return 1000, 40
	}
	return 200, 20
}

// 200 conversations of 20 events sent at once, each body twice over both
// ingresses, while one worker runs; a second starts half way through the
// sending, so that both find every conversation's events waiting together:
// every conversation is forwarded in the order sent, every event once.
func TestOrderEndToEnd(t *testing.T) {
	r := newOrderRig(t)
	tr := newOrderTraffic(orderSize())
	sent := make(chan struct{})
	go func() { tr.send(t, r.ingress); close(sent) }()
	r.worker("worker-0")
	r.waitForwards(tr.convs * tr.per / 2)
	r.worker("worker-1")
	<-sent
	r.settle(tr)
	tr.check(t, r.sink, 0)
}

// The same while one of two workers is killed (SIGKILL) a third of the way
// through, once it owns partitions and runs their events: its partitions go
// to the other worker once its member key and pin expire, their events
// held there come again after AckWait, the events after them in their
// conversations wait too, and a conversation may see an event twice in a
// row (G2's re-run after a forward whose done mark died), never out of
// order.
func TestOrderEndToEndWorkerKilled(t *testing.T) {
	r := newOrderRig(t)
	tr := newOrderTraffic(orderSize())
	tr.send(t, r.ingress) // all of it waits: many events of a conversation are delivered together
	survivor := r.worker("worker-0")
	victim := r.worker("worker-1")
	r.waitWorking(victim)
	if r.forwards() >= tr.convs*tr.per {
		t.Fatal("every event was forwarded before the kill: the test proves nothing")
	}
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	r.settle(tr)
	tr.check(t, r.sink, 32) // at most the killed worker's 32 handlers
	if n := survivor.partitions(t); n != float64(streams.Partitions) {
		t.Errorf("the survivor owns %v partitions, want all %d", n, streams.Partitions)
	}
}

// The same while workers scale 1 → 3 → 1: a third of every conversation is
// sent to one worker; two more start and take partitions from it; the second
// third is sent, which all three run; the two stop (SIGTERM) while the last
// third is sent, and the first takes every partition back.
func TestOrderEndToEndScaled(t *testing.T) {
	r := newOrderRig(t)
	tr := newOrderTraffic(orderSize())
	first := r.worker("worker-0")
	tr.sendPart(t, r.ingress, 0, tr.per/3)
	extra := []*orderWorker{r.worker("worker-1"), r.worker("worker-2")}
	testenv.Eventually(t, time.Minute, func() bool {
		return first.partitions(t)+extra[0].partitions(t)+extra[1].partitions(t) == float64(streams.Partitions) &&
			extra[0].partitions(t) >= 1 && extra[1].partitions(t) >= 1
	}, "the partitions were never shared by the three workers")
	tr.sendPart(t, r.ingress, tr.per/3, 2*tr.per/3)
	r.waitWorking(append(extra, first)...)
	sent := make(chan struct{})
	go func() { tr.sendPart(t, r.ingress, 2*tr.per/3, tr.per); close(sent) }()
	for _, p := range extra {
		terminate(t, p.process, 30*time.Second)
	}
	<-sent
	r.settle(tr)
	tr.check(t, r.sink, 0)
	if n := first.partitions(t); n != float64(streams.Partitions) {
		t.Errorf("the remaining worker owns %v partitions, want all %d", n, streams.Partitions)
	}
}
