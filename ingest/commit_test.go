package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/dedupe"
)

// postAsync posts body signed from another goroutine and returns its code
// and answer (code 0 and the error text when the request itself failed).
func (e *env) postAsync(body []byte) (int, Answer, string) {
	req, err := http.NewRequest(http.MethodPost, e.http.URL+pathCloud, bytes.NewReader(body))
	if err != nil {
		return 0, Answer{}, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderSignature, Sign(body, testSecret))
	resp, err := e.http.Client().Do(req)
	if err != nil {
		return 0, Answer{}, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var ans Answer
	_ = json.Unmarshal(b, &ans)
	return resp.StatusCode, ans, string(b)
}

// gatedClaims holds the first Claim of e's store until release is called,
// and records the number of keys of every Claim.
type gatedClaims struct {
	mu      sync.Mutex
	sizes   []int
	started chan struct{}
	gate    chan struct{}
}

func gateClaims(e *env) *gatedClaims {
	g := &gatedClaims{started: make(chan struct{}), gate: make(chan struct{})}
	e.store.onClaim = func(keys []string) {
		g.mu.Lock()
		g.sizes = append(g.sizes, len(keys))
		first := len(g.sizes) == 1
		g.mu.Unlock()
		if first {
			close(g.started)
			<-g.gate
		}
	}
	return g
}

func (g *gatedClaims) release() { close(g.gate) }

func (g *gatedClaims) batches() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]int(nil), g.sizes...)
}

// waitQueued waits until n requests beyond the first have reached their
// claim: each request takes one number from seq, each claim batch one more.
func (e *env) waitQueued(n int) {
	e.t.Helper()
	deadline := time.Now().Add(wait)
	for e.srv.seq.Load() < uint64(2+n) {
		if time.Now().After(deadline) {
			e.t.Fatalf("only %d requests reached their claim", e.srv.seq.Load()-2)
		}
		time.Sleep(time.Millisecond)
	}
}

// §2: the claims of the requests that wait while a claim is on the wire go
// to the store together, in one Claim call; each request still gets its own
// answer and every event is stored once and marked accepted.
func TestGroupCommitClaimsTogether(t *testing.T) {
	e := newEnv(t, Config{})
	g := gateClaims(e)
	const n = 12
	type result struct {
		code int
		ans  Answer
		text string
	}
	results := make([]result, n+1)
	var wg sync.WaitGroup
	wg.Go(func() {
		results[0].code, results[0].ans, results[0].text = e.postAsync(textBody("wamid.group.lead", "lead"))
	})
	<-g.started // the first claim is on the wire
	for i := range n {
		wg.Go(func() {
			body := batchBody(fmt.Sprintf("group.%d", i), 2)
			results[i+1].code, results[i+1].ans, results[i+1].text = e.postAsync(body)
		})
	}
	e.waitQueued(n)
	g.release()
	wg.Wait()

	for i, r := range results {
		want := 2
		if i == 0 {
			want = 1
		}
		if r.code != http.StatusOK || r.ans.Accepted != want {
			t.Fatalf("request %d: %d %s, want 200 with %d accepted", i, r.code, r.text, want)
		}
	}
	sizes := g.batches()
	if len(sizes) >= n+1 {
		t.Fatalf("%d requests made %d Claim calls (keys per call %v): claims were not committed together", n+1, len(sizes), sizes)
	}
	if largest := max(sizes[0], sizes[len(sizes)-1]); len(sizes) > 1 && largest < 4 {
		t.Fatalf("keys per Claim call %v: no call held two requests' keys", sizes)
	}
	t.Logf("keys per Claim call: %v", sizes)
	e.waitMarks()
	keys := e.storedKeys()
	if len(keys) != 2*n+1 {
		t.Fatalf("%d events stored, want %d", len(keys), 2*n+1)
	}
	for k, c := range keys {
		if c != 1 {
			t.Fatalf("key %s stored %d times", k, c)
		}
		if s := e.state(k); s != dedupe.Accepted {
			t.Fatalf("key %s: state %v after the answer, want accepted", k, s)
		}
	}
}

// G1 with group commit: requests whose claims share a batch succeed or fail
// on their own events. A request with an event the stream cannot store is
// answered 503 and releases that event's claim only; its stored event stays
// accepted; a request of the same batch with good events is answered 200.
func TestGroupCommitFailureStaysInItsRequest(t *testing.T) {
	e := newEnv(t, Config{})
	if e.nc.MaxPayload() >= 1<<21 {
		t.Skipf("server max_payload %d holds the large event", e.nc.MaxPayload())
	}
	g := gateClaims(e)
	big := textItem("wamid.group.big", strings.Repeat("a", 1500000))
	mixed := cloudBody([]string{textItem("wamid.group.small", "small"), big}, nil)
	good := batchBody("group.good", 3)
	evMixed, evGood := parse(t, mixed), parse(t, good)

	var wg sync.WaitGroup
	wg.Go(func() { _, _, _ = e.postAsync(textBody("wamid.group.lead2", "lead")) })
	<-g.started
	var codeMixed, codeGood int
	var ansMixed, ansGood Answer
	wg.Go(func() { codeMixed, ansMixed, _ = e.postAsync(mixed) })
	wg.Go(func() { codeGood, ansGood, _ = e.postAsync(good) })
	e.waitQueued(2)
	g.release()
	wg.Wait()

	if codeMixed != http.StatusServiceUnavailable || ansMixed.Accepted != 1 {
		t.Fatalf("request with an unstorable event: %d %+v, want 503 with 1 accepted", codeMixed, ansMixed)
	}
	if codeGood != http.StatusOK || ansGood.Accepted != 3 {
		t.Fatalf("request of the same batch: %d %+v, want 200 with 3 accepted", codeGood, ansGood)
	}
	if s := e.state(evMixed[1].Key); s != dedupe.Absent {
		t.Fatalf("the unstored event's claim: %v, want released (absent)", s)
	}
	if s := e.state(evMixed[0].Key); s != dedupe.Accepted {
		t.Fatalf("the stored event of the failed request: %v, want accepted", s)
	}
	for _, ev := range evGood {
		if s := e.state(ev.Key); s != dedupe.Accepted {
			t.Fatalf("event of the good request: %v, want accepted", s)
		}
	}
	t.Logf("keys per Claim call: %v", g.batches())
}

// ridingMark starts an ingress (its store set up by setup) and answers
// request A while request L's claim is on the wire, so that A's accepted
// mark rides with the next claim batch, which carries request B's claim.
// It returns the ingress, A's and B's codes and A's and B's keys, once every
// mark has landed.
func ridingMark(t *testing.T, cfg Config, setup func(*countingStore)) (e *env, codeA, codeB int, keyA, keyB string) {
	t.Helper()
	// Hold A's publish until L's claim is on the wire, and L's claim (the
	// second claim call: A's is the first) until B waits behind it.
	published, pubGate := make(chan struct{}), make(chan struct{})
	var once sync.Once
	e = newEnv(t, cfg, WithPublisher(func(next PublishFunc) PublishFunc {
		return func(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
			once.Do(func() {
				close(published)
				<-pubGate
			})
			return next(ctx, msg)
		}
	}))
	setup(e.store)
	claimStarted, claimGate := make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	e.store.onClaim = func([]string) {
		if calls.Add(1) == 2 {
			close(claimStarted)
			<-claimGate
		}
	}
	bodyA, bodyL, bodyB := textBody("wamid.ride.a", "a"), textBody("wamid.ride.l", "l"), textBody("wamid.ride.b", "b")
	keyA, keyB = parse(t, bodyA)[0].Key, parse(t, bodyB)[0].Key
	var wg sync.WaitGroup
	answeredA := make(chan struct{})
	wg.Go(func() {
		codeA, _, _ = e.postAsync(bodyA)
		close(answeredA)
	})
	<-published // A's claim is taken, its publish held
	wg.Go(func() { _, _, _ = e.postAsync(bodyL) })
	<-claimStarted
	close(pubGate)
	<-answeredA // while L's claim is still on the wire
	wg.Go(func() { codeB, _, _ = e.postAsync(bodyB) })
	e.waitQueued(3) // A, its batch, L, L's batch, B
	close(claimGate)
	wg.Wait()
	e.waitMarks()
	return e, codeA, codeB, keyA, keyB
}

// §2: the accepted mark of a request answered while a claim batch is on the
// wire rides with the next claim batch, in one store call.
func TestAcceptedMarkRidesWithClaims(t *testing.T) {
	e, codeA, codeB, keyA, keyB := ridingMark(t, Config{}, func(*countingStore) {})
	if codeA != http.StatusOK || codeB != http.StatusOK {
		t.Fatalf("answers %d and %d, want 200 and 200", codeA, codeB)
	}
	if n := e.store.rides.Load(); n != 1 {
		t.Fatalf("%d store calls carried claims and accepted marks together, want 1", n)
	}
	for _, k := range []string{keyA, keyB} {
		if s := e.state(k); s != dedupe.Accepted {
			t.Fatalf("key %s: %v, want accepted", k, s)
		}
	}
}

// A failed accept of marks riding with a claim batch fails none of its
// claims: the request claimed with them is answered 200 (under FailClosed,
// where a failed claim answers 503), the marked key stays pending (a retry
// publishes it again with the same Nats-Msg-Id).
func TestRidingMarkFailureFailsNoClaim(t *testing.T) {
	boom := errors.New("accept refused")
	e, codeA, codeB, keyA, keyB := ridingMark(t, Config{RedisPolicy: FailClosed}, func(s *countingStore) { s.acceptErr = boom })
	if codeA != http.StatusOK || codeB != http.StatusOK {
		t.Fatalf("answers %d and %d, want 200 and 200", codeA, codeB)
	}
	if n := e.store.rides.Load(); n != 1 {
		t.Fatalf("%d store calls carried claims and accepted marks together, want 1", n)
	}
	if s := e.state(keyA); s != dedupe.Pending {
		t.Fatalf("key of the failed mark: %v, want pending", s)
	}
	if s := e.state(keyB); s != dedupe.Pending {
		t.Fatalf("key claimed with the failed mark: %v, want pending (its own mark failed too)", s)
	}
	if !strings.Contains(e.logs.String(), boom.Error()) {
		t.Fatalf("no log line about the failed accept:\n%s", e.logs.String())
	}
}
