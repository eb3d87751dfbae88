// Package worker consumes wagate's events stream and runs business logic on
// each event once (design §2, §4, §5, §7).
//
// Worker processes share one durable pull consumer (messages/streams). Each
// Worker runs at most Config.Concurrency handlers at a time, and holds at
// most Config.Prefetch (default 0) more messages, fetched ahead and waiting
// for a runner. For every delivery:
//
//	decode         payload not an event        → dead letter, Term
//	store.Begin    key done                    → Ack (handler not run)
//	               lock held elsewhere         → Nak with delay
//	               store unreachable           → message held (InProgress) and Begin retried with
//	                                             the BackOff steps until the store answers; the
//	                                             handler never runs without the lock
//	Handler        runs with the lock, its context carrying Run{Fence, Delivery};
//	               every Heartbeat the lock is extended and JetStream told InProgress;
//	               a lost lock cancels the handler's context
//	nil            store.Finish (marks done)   → Ack; lock lost at finish → Nak;
//	                                             store unreachable → retried while the lock is held, then Nak
//	Permanent(err) unlock                      → dead letter, Term
//	other error    unlock                      → Nak with BackOff[delivery-1],
//	                                             or dead letter and Term after the last delivery
//
// Every Nak is delayed by the BackOff step of the delivery (a shutdown's by
// nothing), and a Nak due on the last delivery (MaxDeliver) becomes a dead
// letter instead, since JetStream would not deliver the message again. One
// function, verdict, makes these choices; nothing else acknowledges a
// message. Term only ever follows the dead letter's PubAck: when the
// dead-letter publish fails the message is Nak'd with delay instead.
//
// # Group commit
//
// Under load the worker shares its round trips between messages (design
// §2), without ever waiting for a timer:
//
//   - Pulls: a pull asks for every message the Worker has room for. With
//     Config.Prefetch, it asks for at least Prefetch, unless the runners
//     would otherwise go idle, and the messages fetched ahead wait for a
//     runner without a lock, told InProgress every Heartbeat/2 so that
//     waiting spends no delivery; at shutdown they are Nak'd for another
//     worker at once. Fewer, larger pulls cost less (JetStream's pull
//     request is the costliest step per message here), but a worker that
//     dies spends a delivery of every message it holds.
//   - Begin: the messages handed together to the runners that are idle
//     (those that went idle while the previous Begin was on the wire) are
//     begun in one store call (dedupe.BeginAll: one Redis pipeline), before their
//     handlers start; a store error there is not final, the message's own
//     Begin is then retried as above.
//   - Done marks: the runs that finish while a done mark is on the wire are
//     marked done together in the next store call (dedupe.FinishAll).
//   - Acks: a done event (marked now, or found done) is acknowledged with Ack,
//     which does not wait for JetStream's answer, not with AckSync. The done
//     mark, not the ack, is what stops a second run: an ack lost after the
//     done mark only brings a redelivery after AckWait, which Begin answers
//     ErrDone and the worker acks again, without running the handler.
//   - Heartbeats: the first beat comes one Heartbeat after the lock was
//     taken, so a handler that returns sooner costs no store call, no
//     InProgress and no goroutine.
//
// # Guarantees
//
// Once: the handler runs only under the event's lock, so never in two places
// at once for one key, and each run's fencing number is higher than every
// earlier run's. A key marked done is acknowledged without running again. A
// second run happens only when a run died or lost its lock after its side
// effect and before the done mark; it carries the same key, which Forward
// sends as Idempotency-Key.
//
// Eventually: every event is marked done, or lands in the dead-letter stream
// (wagate.dlq.<provider>.<kind>.<account>) with its payload byte for byte,
// its headers, the error, the delivery count and its original subject and
// sequence (see HeaderError and the other Header constants). An event whose
// deliveries run out without a worker settling it (workers crashed, or
// AckWait passed without InProgress) is announced by JetStream's
// max-deliveries advisory; the workers subscribe to it in one queue group,
// fetch the event by sequence and dead-letter it with ReasonMaxDeliveries,
// unless its key is done by then. The advisory is a core NATS message: one
// sent while no worker is connected is not seen, and the event stays in the
// events stream for replay.
//
// Degraded modes: with the dedupe store unreachable the handler never runs.
// A message whose Begin cannot reach the store is held, not Nak'd: the worker
// tells JetStream it is in progress and tries Begin again after each BackOff
// step (at most Heartbeat), so an outage, however long, spends none of the
// event's deliveries and sends nothing to the dead-letter stream; once every
// slot holds such a message the worker fetches no more. At shutdown a held
// message is Nak'd. A handler that panics is treated as a retryable error.
//
// Busy: a delivery whose lock another run holds (its worker died and
// JetStream redelivered after AckWait, or the event is in the stream twice)
// is not run but Nak'd with the BackOff delay; on its last delivery it is
// held instead, as during an outage, until the lock is released (the holder
// finished: the event is then acknowledged as done) or expires (the holder
// died: the event runs), so that an event that never failed is not
// dead-lettered for having found its lock taken.
//
// # Shutdown
//
// When Run's context is cancelled the worker stops fetching at once (a
// message arriving then, or fetched ahead and waiting for a runner, is Nak'd
// for another worker), lets in-flight handlers
// finish for Config.ShutdownTimeout, then cancels their contexts. A cancelled
// handler's lock is released and its message Nak'd without delay. Run returns
// once every handler has returned: a handler that ignores its context holds
// Run, and keeps its lock alive, until it does.
//
// # Replay
//
// Worker.Replay runs one stored event through the same lock, handler and done
// mark, without a JetStream delivery (wagate replay uses it): a done key is
// skipped unless forced, and a key whose lock another run holds is reported
// busy and not run, so replay is safe while live workers consume. A forced
// run carries a new, higher fencing number; its Run.Delivery is 0.
//
// # Tracing
//
// The handler runs in an OpenTelemetry consumer span ("wagate.handle
// <kind>"), the child of the trace context the ingress wrote into the
// message's NATS headers (W3C traceparent), on the global TracerProvider.
//
// # Metrics
//
// Registered with Config.Registerer:
//
//	wagate_worker_processed_total{outcome}          done, duplicate, busy, store_error, retry,
//	                                                lock_lost, interrupted, dead_letter, dlq_error
//	wagate_worker_handler_duration_seconds{result}  ok, error, permanent
//	wagate_worker_lock_wait_seconds                 begin round trip (done check and lock)
//	wagate_worker_busy_naks_total                   Naks because another run held the lock
//	wagate_worker_redeliveries_total                deliveries with a delivery count above 1
//	wagate_worker_dead_letters_total{cause}         permanent, exhausted, undecodable, max_deliveries
//	wagate_worker_dead_letter_errors_total          failed dead-letter publishes
//	wagate_worker_heartbeat_errors_total{op}        extend, lock_lost, in_progress
//	wagate_worker_ack_errors_total{op}              ack, nak, term
//	wagate_worker_fetch_errors_total                failed pull requests
//	wagate_worker_max_deliveries_advisories_total{result}  dead_letter, done, gone, error
//	wagate_worker_in_flight                         messages held now
//
// # Logs
//
// Every log line about an event carries its key, subject, stream sequence and
// delivery (and the fencing number once locked). No line holds a message
// body; the Log handler masks phone numbers (MaskPhone).
//
// # Handlers
//
// Forward POSTs each event to an HTTP endpoint; Log writes one line per event.
// A Go program embeds the worker with its own Handler (see the example).
package worker
