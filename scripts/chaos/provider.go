package chaos

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/wagate/wagate/ingest"
	"github.com/wagate/wagate/messages"
)

// Provider simulates Meta's webhook delivery
// (https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks): it signs
// every POST with X-Hub-Signature-256 over the exact body, treats any answer
// other than 200, and any answer slower than Timeout, as a failure, and
// retries the same body with exponential backoff until it is answered 200 or
// Deadline passes. It records every answer.
//
// Traffic mixes new bodies with deliberate duplicates: a body sent again
// byte for byte, and new bodies that carry events already sent (as Meta does
// when it batches a retried item with new ones), some with one item twice.
type Provider struct {
	// URLs are the ingress webhook URLs; each attempt picks one at random,
	// as a load balancer would.
	URLs []string
	// Secret is the App Secret the bodies are signed with.
	Secret string
	// Timeout bounds one attempt. Default 2 s.
	Timeout time.Duration
	// Deadline bounds the retries of one body. Default 90 s.
	Deadline time.Duration
	// DupShare is the share of posts that carry events sent before
	// (half exact re-sends, half overlapping bodies). Default 0.3.
	DupShare float64
	// RefuseEvery, when above 0, makes every RefuseEvery-th new body, the
	// first included, a body of new Cloud API events whose first event is
	// one the sink is to refuse permanently (see Refused): Run's rate × d
	// bodies carry exactly ceil(rate × d / RefuseEvery) such events,
	// spread evenly over the traffic. 0: none.
	RefuseEvery int

	pool   *eventPool
	client *http.Client
	mu     sync.Mutex
	bodies []*Body
	wg     sync.WaitGroup
}

// Body is one webhook body and everything it was answered.
type Body struct {
	Provider string    // messages.ProviderCloud, ProviderWASender, ProviderWAHA or ProviderEvolution
	Data     []byte    // the exact bytes posted and signed
	Keys     []string  // distinct event keys, as messages.Parse reads them
	Events   int       // events in the body, repeats included
	Attempts []Attempt // every POST of it, in order
	OK       bool      // answered 200 at least once
}

// Attempt is one POST of a body.
type Attempt struct {
	Start    time.Time     // when it was sent
	Duration time.Duration // until the answer, or the failure
	Code     int           // HTTP status; 0 when no whole answer came
	Err      string        // transport error or timeout
	Timeout  bool          // the provider gave up after its Timeout
	Answer   Counts        // the JSON answer of a 200
}

// Counts is the ingress's JSON answer to a webhook (ingest.Answer).
type Counts struct {
	Events     int `json:"events"`
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
}

// NewProvider returns a provider whose events carry ids unique to tag.
func NewProvider(urls []string, secret, tag string) *Provider {
	p := &Provider{URLs: urls, Secret: secret, pool: newEventPool(tag)}
	p.client = &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}}
	return p
}

func (p *Provider) defaults() {
	if p.Timeout == 0 {
		p.Timeout = 2 * time.Second
	}
	if p.Deadline == 0 {
		p.Deadline = 90 * time.Second
	}
	if p.DupShare == 0 {
		p.DupShare = 0.3
	}
}

// Run starts rate × d new bodies, paced evenly over d (when it falls
// behind, the late ones go at once, so that every scenario sends the same
// volume), each delivered on its own goroutine and retried until 200 or
// Deadline; then it returns. Wait waits for the deliveries.
func (p *Provider) Run(ctx context.Context, rate float64, d time.Duration) {
	p.defaults()
	total := int(rate * d.Seconds())
	start := time.Now()
	for i := range total {
		due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		b := p.nextBody(i)
		p.wg.Go(func() { p.deliver(ctx, b) })
	}
}

// Wait waits for every delivery started by Run.
func (p *Provider) Wait() { p.wg.Wait() }

// Bodies returns every body sent so far; their records are complete once
// Wait has returned.
func (p *Provider) Bodies() []*Body {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*Body(nil), p.bodies...)
}

// Err returns the first event or body the provider made that messages.Parse
// did not read as expected: a defect of the suite, not of wagate.
func (p *Provider) Err() error {
	p.pool.mu.Lock()
	defer p.pool.mu.Unlock()
	return p.pool.err
}

// Items returns each event key's item JSON, as the provider sent it.
func (p *Provider) Items() map[string][]byte { return p.pool.itemsByKey() }

// Refused reports whether key is one of the events made to be refused
// (RefuseEvery). It is safe for concurrent use.
func (p *Provider) Refused(key string) bool {
	p.pool.mu.Lock()
	defer p.pool.mu.Unlock()
	return p.pool.refused[key]
}

// RefusedKeys returns the keys of every event made to be refused so far.
func (p *Provider) RefusedKeys() map[string]bool {
	p.pool.mu.Lock()
	defer p.pool.mu.Unlock()
	return maps.Clone(p.pool.refused)
}

// nextBody makes the i-th body: new events, or a duplicate, or every
// RefuseEvery-th one new events, the first of them to be refused.
func (p *Provider) nextBody(i int) *Body {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b *Body
	r := rand.Float64()
	switch {
	case p.RefuseEvery > 0 && i%p.RefuseEvery == 0:
		evs := make([]*poolEvent, 1+rand.IntN(3))
		for j := range evs {
			evs[j] = p.pool.fresh()
		}
		p.pool.refuse(evs[0])
		b = p.pool.body(evs)
	case len(p.bodies) > 0 && r < p.DupShare/2:
		// The same body again, byte for byte.
		old := p.bodies[rand.IntN(len(p.bodies))]
		b = &Body{Provider: old.Provider, Data: old.Data, Keys: old.Keys, Events: old.Events}
	case len(p.bodies) > 0 && r < p.DupShare:
		// Events sent before, with a new one.
		evs := []*poolEvent{p.pool.old(), p.pool.old(), p.pool.fresh()}
		b = p.pool.body(evs)
	case r < p.DupShare+(1-p.DupShare)/3:
		// A gateway's message (mixed traffic from every provider).
		b = p.pool.gatewayBody()
	default:
		evs := make([]*poolEvent, 1+rand.IntN(3))
		for i := range evs {
			evs[i] = p.pool.fresh()
		}
		if rand.IntN(20) == 0 {
			evs = append(evs, evs[0]) // one item twice in one body
		}
		b = p.pool.body(evs)
	}
	p.bodies = append(p.bodies, b)
	return b
}

// deliver posts b until it is answered 200 or Deadline passes.
func (p *Provider) deliver(ctx context.Context, b *Body) {
	bo := &backoff.ExponentialBackOff{
		InitialInterval:     50 * time.Millisecond,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         time.Second,
	}
	_, _ = backoff.Retry(ctx, func() (struct{}, error) {
		a := p.post(ctx, b)
		p.mu.Lock()
		b.Attempts = append(b.Attempts, a)
		if a.Code == http.StatusOK {
			b.OK = true
		}
		p.mu.Unlock()
		if a.Code != http.StatusOK {
			return struct{}{}, fmt.Errorf("code %d: %s", a.Code, a.Err)
		}
		return struct{}{}, nil
	}, backoff.WithBackOff(bo), backoff.WithMaxElapsedTime(p.Deadline))
}

// post sends one attempt of b, signed as its provider signs, to its
// provider's route.
func (p *Provider) post(ctx context.Context, b *Body) Attempt {
	data := b.Data
	a := Attempt{Start: time.Now()}
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	url := p.URLs[rand.IntN(len(p.URLs))]
	if b.Provider != "" && b.Provider != messages.ProviderCloud {
		url = strings.TrimSuffix(url, ingest.Route(messages.ProviderCloud)) + ingest.Route(b.Provider)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(data))
	if err != nil {
		a.Err = err.Error()
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	provider := cmp.Or(b.Provider, messages.ProviderCloud)
	if err := ingest.SignRequest(req.Header, provider, data, p.Secret); err != nil {
		a.Err = err.Error()
		return a
	}
	resp, err := p.client.Do(req)
	if err == nil {
		var body []byte
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			a.Code = resp.StatusCode
			if a.Code == http.StatusOK {
				if jerr := json.Unmarshal(body, &a.Answer); jerr != nil {
					a.Err = "answer: " + jerr.Error()
				}
			}
		}
	}
	a.Duration = time.Since(a.Start)
	if err != nil {
		a.Code = 0 // an answer cut short is no answer
		a.Err = err.Error()
		a.Timeout = errors.Is(err, context.DeadlineExceeded)
	}
	return a
}

// eventPool makes unique events and remembers them.
type eventPool struct {
	tag     string
	mu      sync.Mutex
	events  []*poolEvent    // Cloud API events, which bodies may combine
	gateway []*poolEvent    // gateway events, each in a body of its own
	refused map[string]bool // keys of the events the sink is to refuse
	err     error           // the first event or body that did not parse
}

// fail records err if it is the first. ep.mu must be held.
func (ep *eventPool) fail(err error) {
	if ep.err == nil {
		ep.err = err
	}
}

// poolEvent is one event: an inbound text message or a status, on one of a
// few accounts.
type poolEvent struct {
	account string // phone_number_id
	field   string // "messages" or "statuses"
	item    []byte
	key     string
}

func newEventPool(tag string) *eventPool { return &eventPool{tag: tag, refused: map[string]bool{}} }

// refuse marks ev as an event the sink is to refuse permanently.
func (ep *eventPool) refuse(ev *poolEvent) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ev.key == "" {
		return // it did not parse: ep.err says so
	}
	ep.refused[ev.key] = true
}

// fresh makes a new event.
func (ep *eventPool) fresh() *poolEvent {
	ep.mu.Lock()
	n := len(ep.events)
	ep.mu.Unlock()
	ev := &poolEvent{account: fmt.Sprintf("10000000000000%d", n%3)}
	wamid := fmt.Sprintf("wamid.CHAOS-%s-%06d", ep.tag, n)
	user := fmt.Sprintf("155500%05d", n%16) // 16 users on each of 3 numbers: 48 conversations
	if n%4 == 3 {
		ev.field = "statuses"
		ev.item = fmt.Appendf(nil, `{"id":%q,"status":"delivered","timestamp":"1750000001","recipient_id":%q}`, wamid, user)
	} else {
		ev.field = "messages"
		ev.item = fmt.Appendf(nil, `{"from":%q,"id":%q,"timestamp":"1750000000","type":"text","text":{"body":"chaos %d"}}`, user, wamid, n)
	}
	evs, err := messages.Parse(envelope([]*poolEvent{ev}), time.Now())
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if err != nil || len(evs) != 1 {
		ep.fail(fmt.Errorf("pool event %s does not parse to one event: %d events, %v", ev.item, len(evs), err))
		return ev
	}
	ev.key = evs[0].Key
	ep.events = append(ep.events, ev)
	return ev
}

// old returns an event made before (a fresh one if there is none).
func (ep *eventPool) old() *poolEvent {
	ep.mu.Lock()
	n := len(ep.events)
	var ev *poolEvent
	if n > 0 {
		ev = ep.events[rand.IntN(n)]
	}
	ep.mu.Unlock()
	if ev == nil {
		return ep.fresh()
	}
	return ev
}

// body makes a body of evs and reads its keys back with messages.Parse, as
// the ingress will.
func (ep *eventPool) body(evs []*poolEvent) *Body {
	data := envelope(evs)
	parsed, err := messages.Parse(data, time.Now())
	if err != nil {
		ep.mu.Lock()
		ep.fail(fmt.Errorf("body does not parse: %v\n%s", err, data))
		ep.mu.Unlock()
	}
	b := &Body{Data: data, Events: len(parsed)}
	seen := map[string]bool{}
	for _, e := range parsed {
		if !seen[e.Key] {
			seen[e.Key] = true
			b.Keys = append(b.Keys, e.Key)
		}
	}
	return b
}

func (ep *eventPool) itemsByKey() map[string][]byte {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	m := make(map[string][]byte, len(ep.events)+len(ep.gateway))
	for _, ev := range ep.events {
		m[ev.key] = ev.item
	}
	for _, ev := range ep.gateway {
		m[ev.key] = ev.item
	}
	return m
}

// gatewayBody makes a body holding one new inbound message from a gateway,
// WASenderApi, WAHA or Evolution API in turn, and reads its key and item back
// with the provider's parser, as the ingress will.
func (ep *eventPool) gatewayBody() *Body {
	ep.mu.Lock()
	n := len(ep.gateway)
	ep.mu.Unlock()
	provider, data := messages.ProviderWASender, fmt.Appendf(nil,
		`{"event":"messages.upsert","sessionId":"chaos-session","timestamp":1750000000,"data":{"messages":[{"key":{"id":"CHAOSWS%s%06d","fromMe":false,"remoteJid":"15550000001@s.whatsapp.net","cleanedSenderPn":"15550000001"},"messageBody":"chaos %d","message":{"conversation":"chaos %d"}}]}}`,
		ep.tag, n, n, n)
	switch n % 3 {
	case 1:
		provider, data = messages.ProviderWAHA, fmt.Appendf(nil,
			`{"id":"evt_chaos_%s_%06d","timestamp":1750000000000,"session":"default","event":"message","payload":{"id":"false_15550000001@c.us_CHAOSWAHA%s%06d","timestamp":1750000000,"from":"15550000001@c.us","fromMe":false,"body":"chaos %d"}}`,
			ep.tag, n, ep.tag, n, n)
	case 2:
		provider, data = messages.ProviderEvolution, fmt.Appendf(nil,
			`{"event":"messages.upsert","instance":"chaos","data":{"key":{"remoteJid":"15550000001@s.whatsapp.net","fromMe":false,"id":"CHAOSEVO%s%06d"},"message":{"conversation":"chaos %d"},"messageType":"conversation","messageTimestamp":1750000000},"date_time":"2025-06-15T12:00:00.000Z","sender":"15550000000@s.whatsapp.net","server_url":"http://evolution.invalid","apikey":"chaos-instance-key"}`,
			ep.tag, n, n)
	}
	parse, _ := messages.Parser(provider)
	evs, err := parse(data, time.Now())
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if err != nil || len(evs) != 1 {
		ep.fail(fmt.Errorf("%s body does not parse to one event: %d events, %v\n%s", provider, len(evs), err, data))
		return &Body{Provider: provider, Data: data}
	}
	ep.gateway = append(ep.gateway, &poolEvent{key: evs[0].Key, item: evs[0].Item})
	return &Body{Provider: provider, Data: data, Events: 1, Keys: []string{evs[0].Key}}
}

// envelope wraps evs in a Cloud API webhook: one entry, one change per
// account, messages with their contact.
func envelope(evs []*poolEvent) []byte {
	type group struct{ msgs, statuses []string }
	var order []string
	groups := map[string]*group{}
	for _, ev := range evs {
		g := groups[ev.account]
		if g == nil {
			g = &group{}
			groups[ev.account] = g
			order = append(order, ev.account)
		}
		if ev.field == "statuses" {
			g.statuses = append(g.statuses, string(ev.item))
		} else {
			g.msgs = append(g.msgs, string(ev.item))
		}
	}
	var changes []string
	for _, acct := range order {
		g := groups[acct]
		v := fmt.Sprintf(`"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550000000","phone_number_id":%q}`, acct)
		if len(g.msgs) > 0 {
			v += `,"contacts":[{"profile":{"name":"Chaos"},"wa_id":"15550000001"}],"messages":[` + strings.Join(g.msgs, ",") + `]`
		}
		if len(g.statuses) > 0 {
			v += `,"statuses":[` + strings.Join(g.statuses, ",") + `]`
		}
		changes = append(changes, `{"value":{`+v+`},"field":"messages"}`)
	}
	return []byte(`{"object":"whatsapp_business_account","entry":[{"id":"200000000000001","changes":[` + strings.Join(changes, ",") + `]}]}`)
}
