package worker

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Values of the outcome label of wagate_worker_processed_total: what became
// of one delivery.
const (
	outcomeDone        = "done"        // handler succeeded, key marked done, Ack
	outcomeDuplicate   = "duplicate"   // key already done: acked, handler not run
	outcomeBusy        = "busy"        // another run holds the lock: Nak with delay
	outcomeStoreError  = "store_error" // dedupe store unreachable: one failed begin while the message is held (handler not run), or a run not marked done (Nak with delay)
	outcomeRetry       = "retry"       // handler failed: Nak with backoff
	outcomeLockLost    = "lock_lost"   // lock lost while running or at finish: Nak with delay
	outcomeInterrupted = "interrupted" // cancelled by shutdown: lock released, Nak
	outcomeDeadLetter  = "dead_letter" // published to the dead-letter stream, then Term
	outcomeDLQError    = "dlq_error"   // dead-letter publish failed: Nak with delay
)

// Values of the cause label of wagate_worker_dead_letters_total.
const (
	causePermanent     = "permanent"      // the handler returned Permanent(err)
	causeExhausted     = "exhausted"      // the last delivery failed
	causeUndecodable   = "undecodable"    // the payload is not an event
	causeMaxDeliveries = "max_deliveries" // JetStream gave up (advisory): workers died or timed out
)

// metrics are the worker's Prometheus collectors.
type metrics struct {
	processed       *prometheus.CounterVec   // outcome
	handlerDuration *prometheus.HistogramVec // result
	lockWait        prometheus.Histogram
	busyNaks        prometheus.Counter
	redeliveries    prometheus.Counter
	deadLetters     *prometheus.CounterVec // cause
	dlqErrors       prometheus.Counter
	heartbeatErrors *prometheus.CounterVec // op
	ackErrors       *prometheus.CounterVec // op
	fetchErrors     prometheus.Counter
	advisories      *prometheus.CounterVec // result
	inFlight        prometheus.Gauge
	orderWait       prometheus.Histogram
	orderPartitions prometheus.Gauge

	// The children of the outcomes every event takes in the common case,
	// resolved once: a label lookup hashes the label values on each call.
	processedDone, processedDuplicate prometheus.Counter
	handlerOK                         prometheus.Observer
}

// resolve sets the children of m's common outcomes.
func (m *metrics) resolve() *metrics {
	m.processedDone = m.processed.WithLabelValues(outcomeDone)
	m.processedDuplicate = m.processed.WithLabelValues(outcomeDuplicate)
	m.handlerOK = m.handlerDuration.WithLabelValues("ok")
	return m
}

// outcome returns the wagate_worker_processed_total counter of label.
func (m *metrics) outcome(label string) prometheus.Counter {
	switch label {
	case outcomeDone:
		return m.processedDone
	case outcomeDuplicate:
		return m.processedDuplicate
	}
	return m.processed.WithLabelValues(label)
}

// newMetrics builds the collectors and registers them with reg when it is
// not nil. A collector already registered by another Worker is shared.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		processed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wagate_worker_processed_total",
			Help: "Deliveries handled by the worker, by outcome: done, duplicate, busy, store_error, retry, lock_lost, interrupted, dead_letter, dlq_error.",
		}, []string{"outcome"}),
		handlerDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wagate_worker_handler_duration_seconds",
			Help:    "Time the handler ran for one event, by result: ok, error, permanent.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"result"}),
		lockWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wagate_worker_lock_wait_seconds",
			Help:    "Time taken by one begin round trip to the dedupe store (done check and lock).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}),
		orderWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wagate_worker_order_wait_seconds",
			Help:    "Time from an event's delivery to its run, waiting for the events before it in its conversation and for a handler (WAGATE_ORDER=conversation).",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30, 60, 300},
		}),
		orderPartitions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wagate_worker_order_partitions",
			Help: "Partitions of the events stream this worker owns (WAGATE_ORDER=conversation).",
		}),
		busyNaks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wagate_worker_busy_naks_total",
			Help: "Deliveries Nak'd because another run held the event's lock.",
		}),
		redeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wagate_worker_redeliveries_total",
			Help: "Deliveries received with a JetStream delivery count above 1.",
		}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wagate_worker_dead_letters_total",
			Help: "Events published to the dead-letter stream, by cause: permanent, exhausted, undecodable, max_deliveries.",
		}, []string{"cause"}),
		dlqErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wagate_worker_dead_letter_errors_total",
			Help: "Failed publishes to the dead-letter stream (the event is retried).",
		}),
		heartbeatErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wagate_worker_heartbeat_errors_total",
			Help: "Failed heartbeats of running handlers, by op: extend (lock extension), lock_lost (lock taken or expired), in_progress (JetStream).",
		}, []string{"op"}),
		ackErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wagate_worker_ack_errors_total",
			Help: "Failed acknowledgements to JetStream, by op: ack, nak, term.",
		}, []string{"op"}),
		fetchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wagate_worker_fetch_errors_total",
			Help: "Failed pull requests to the workers' consumer.",
		}),
		advisories: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wagate_worker_max_deliveries_advisories_total",
			Help: "JetStream max-deliveries advisories handled, by result: dead_letter, done (key already done), gone (no longer in the stream), error.",
		}, []string{"result"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wagate_worker_in_flight",
			Help: "Messages held by this process's workers now: fetched and not yet acknowledged.",
		}),
	}
	if reg == nil {
		return m.resolve(), nil
	}
	var err error
	m.processed = register(reg, m.processed, &err)
	m.handlerDuration = register(reg, m.handlerDuration, &err)
	m.lockWait = register(reg, m.lockWait, &err)
	m.busyNaks = register(reg, m.busyNaks, &err)
	m.redeliveries = register(reg, m.redeliveries, &err)
	m.deadLetters = register(reg, m.deadLetters, &err)
	m.dlqErrors = register(reg, m.dlqErrors, &err)
	m.heartbeatErrors = register(reg, m.heartbeatErrors, &err)
	m.ackErrors = register(reg, m.ackErrors, &err)
	m.fetchErrors = register(reg, m.fetchErrors, &err)
	m.advisories = register(reg, m.advisories, &err)
	m.inFlight = register(reg, m.inFlight, &err)
	m.orderWait = register(reg, m.orderWait, &err)
	m.orderPartitions = register(reg, m.orderPartitions, &err)
	if err != nil {
		return nil, fmt.Errorf("worker: register metrics: %w", err)
	}
	return m.resolve(), nil
}

// register registers c with reg and returns it, or the collector of the same
// type already registered under its name. The first failure is kept in *errp.
func register[C prometheus.Collector](reg prometheus.Registerer, c C, errp *error) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	if *errp == nil {
		*errp = err
	}
	return c
}
