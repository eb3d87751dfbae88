package ingest

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wagate/wagate/messages"
)

// metrics are the ingress's Prometheus metrics:
//
//	wagate_ingest_requests_total{route,code}           HTTP requests answered
//	wagate_ingest_events_total{kind,outcome}           events by outcome: accepted, duplicate, republished, bypassed, rejected
//	wagate_ingest_fallback_identities_total{kind}      events whose identity is a fallback (sender + timestamp + content hash)
//	wagate_ingest_claim_duration_seconds               one store claim of a request's keys
//	wagate_ingest_publish_duration_seconds             one event's publish, from sending to its PubAck or failure
//	wagate_ingest_ack_duration_seconds{code}           a webhook POST, from receiving it to answering the provider
//	wagate_ingest_body_memory_refusals_total           requests answered 503 because Config.BodyMemory was in use
type metrics struct {
	requests *prometheus.CounterVec
	events   *prometheus.CounterVec
	fallback *prometheus.CounterVec
	claim    prometheus.Histogram
	publish  prometheus.Histogram
	ack      *prometheus.HistogramVec

	bodyRefusals prometheus.Counter

	// The children of the labels of every request, resolved once: a label
	// lookup hashes its values under a lock.
	eventCounters map[eventLabels]prometheus.Counter // every kind and outcome
	ackOK         prometheus.Observer                // ack{code="200"}
	requestsOK    sync.Map                           // route → requests{route,code="200"}
}

// eventLabels are the labels of wagate_ingest_events_total.
type eventLabels struct {
	kind    messages.Kind
	outcome string
}

// event returns the counter of events of kind with outcome.
func (m *metrics) event(kind messages.Kind, outcome string) prometheus.Counter {
	if c, ok := m.eventCounters[eventLabels{kind, outcome}]; ok {
		return c
	}
	return m.events.WithLabelValues(string(kind), outcome)
}

// ackDuration returns the observer of the ack durations of answers with
// code.
func (m *metrics) ackDuration(code int) prometheus.Observer {
	if code == http.StatusOK {
		return m.ackOK
	}
	return m.ack.WithLabelValues(codeLabel(code))
}

// request returns the counter of requests to route answered with code.
func (m *metrics) request(route string, code int) prometheus.Counter {
	if code != http.StatusOK {
		return m.requests.WithLabelValues(route, codeLabel(code))
	}
	if c, ok := m.requestsOK.Load(route); ok {
		return c.(prometheus.Counter)
	}
	c := m.requests.WithLabelValues(route, codeLabel(code))
	m.requestsOK.Store(route, c)
	return c
}

// latencyBuckets span 0.5 ms to about 8 s, in seconds.
var latencyBuckets = prometheus.ExponentialBuckets(0.0005, 2, 15)

// eventKinds and outcomes are initialised at zero so that rates and ratios
// exist before the first event.
var (
	eventKinds = []messages.Kind{messages.KindMessage, messages.KindStatus, messages.KindCall, messages.KindField, messages.KindError, messages.KindUnknown}
	outcomes   = []string{outcomeAccepted, outcomeDuplicate, outcomeRepublished, outcomeBypassed, outcomeRejected}
)

// newMetrics creates the metrics and registers them with reg.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "wagate", Subsystem: "ingest", Name: "requests_total",
			Help: "HTTP requests answered by the ingress, by route and status code.",
		}, []string{"route", "code"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "wagate", Subsystem: "ingest", Name: "events_total",
			Help: "Webhook events by kind and outcome (accepted, duplicate, republished, bypassed, rejected).",
		}, []string{"kind", "outcome"}),
		fallback: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "wagate", Subsystem: "ingest", Name: "fallback_identities_total",
			Help: "Events whose provider id was missing or unusable, identified by sender, timestamp and content hash.",
		}, []string{"kind"}),
		claim: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "wagate", Subsystem: "ingest", Name: "claim_duration_seconds",
			Help:    "Time of one dedupe store claim of all the keys of a request, in seconds.",
			Buckets: latencyBuckets,
		}),
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "wagate", Subsystem: "ingest", Name: "publish_duration_seconds",
			Help:    "Time of one event's publish, from sending it to its JetStream PubAck or failure, in seconds.",
			Buckets: latencyBuckets,
		}),
		ack: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "wagate", Subsystem: "ingest", Name: "ack_duration_seconds",
			Help:    "Time from receiving a webhook POST to answering the provider, in seconds, by status code.",
			Buckets: latencyBuckets,
		}, []string{"code"}),
		bodyRefusals: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "wagate", Subsystem: "ingest", Name: "body_memory_refusals_total",
			Help: "Webhook POSTs answered 503 without reading their body because the bodies in flight used all of the body memory.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.events, m.fallback, m.claim, m.publish, m.ack, m.bodyRefusals} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("ingest: register metrics: %w", err)
		}
	}
	m.eventCounters = make(map[eventLabels]prometheus.Counter, len(eventKinds)*len(outcomes))
	for _, k := range eventKinds {
		for _, o := range outcomes {
			m.eventCounters[eventLabels{k, o}] = m.events.WithLabelValues(string(k), o)
		}
		m.fallback.WithLabelValues(string(k))
	}
	m.ackOK = m.ack.WithLabelValues(codeLabel(http.StatusOK))
	return m, nil
}

// routeOther labels requests that matched no route.
const routeOther = "other"

// instrument counts every answered request by route and status code. It is
// the outermost middleware: it hands a handler's error to the error handler
// itself, so that the code it counts is the one sent.
func (s *Server) instrument(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := next(c); err != nil {
			c.Error(err)
		}
		route := c.Path()
		if _, ok := s.routeSet[route]; !ok {
			route = routeOther
		}
		s.metrics.request(route, c.Response().Status).Inc()
		return nil
	}
}

// codeLabel is the label value of a status code.
func codeLabel(code int) string { return strconv.Itoa(code) }
