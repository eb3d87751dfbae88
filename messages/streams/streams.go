// Package streams declares wagate's JetStream streams and consumer (design §5)
// and creates or updates them idempotently. The ingress, the worker and the
// operator's command line all call Ensure, so any of them may start first.
//
// A program embedding the ingress or the worker sets ingest.Config.Streams
// and worker.Config.Streams with a Config from here, and matches ErrConflict
// with errors.Is on the error of their Run.
package streams

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/messages"
)

// Defaults (design §5).
const (
	DefaultEvents          = "WAGATE_EVENTS"
	DefaultDLQ             = "WAGATE_DLQ"
	DefaultConsumer        = "wagate-workers"
	DefaultMaxAge          = dedupe.DefaultHorizon // replay reaches as far back as dedupe remembers
	DefaultDuplicateWindow = 2 * time.Minute
	DefaultAckWait         = 30 * time.Second
	DefaultMaxDeliver      = 10
	DefaultMaxAckPending   = 1000
	// Partitions is the number of partition consumers the workers share
	// when they keep order within conversations (worker
	// OrderConversation): one per slot (messages.Slots), partition p taking
	// the events whose subject ends with slot p. It bounds the workers that
	// share the load: a worker owns at least one partition.
	Partitions = messages.Slots
	// PriorityGroup is the priority group every worker pulls the partition
	// consumers with: each is pinned to one worker at a time.
	PriorityGroup = "wagate"

	// EventsSubjectPrefix prefixes every event subject:
	// wagate.events.<provider>.<kind>.<account>.<slot> (messages.Subject).
	EventsSubjectPrefix = messages.SubjectPrefix
	// DLQSubjectPrefix prefixes every dead-letter subject: wagate.dlq.<original subject minus "wagate.events.">.
	DLQSubjectPrefix = "wagate.dlq"
)

// DefaultBackOff is the redelivery schedule: the delay before delivery n+1
// after the n-th failed delivery (the last value repeats).
var DefaultBackOff = []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute}

// Config names and sizes the streams and the consumer. The zero value is the
// documented default for every field.
type Config struct {
	// Events is the events stream's name. Default "WAGATE_EVENTS".
	Events string
	// DLQ is the dead-letter stream's name. Default "WAGATE_DLQ".
	DLQ string
	// Consumer is the workers' durable pull consumer. Default "wagate-workers".
	Consumer string
	// Replicas of each stream: 1 for a single server, 3 for a cluster. Default 1.
	Replicas int
	// MaxAge is how long events are kept for replay. Default DefaultMaxAge.
	MaxAge time.Duration
	// DuplicateWindow is JetStream's Nats-Msg-Id dedupe window. Default 2 minutes.
	DuplicateWindow time.Duration
	// AckWait is how long a delivered message may go without an ack or
	// InProgress before JetStream redelivers it. Default 30 s.
	AckWait time.Duration
	// MaxDeliver is the most deliveries of one message; after the last one a
	// failing event goes to the dead-letter stream. Default 10.
	MaxDeliver int
	// MaxAckPending bounds unacknowledged messages across all workers. Default 1000.
	MaxAckPending int
	// BackOff is the redelivery schedule after a failed handler, applied by
	// the worker's NakWithDelay (see Delay), not by JetStream. Default
	// DefaultBackOff.
	BackOff []time.Duration
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Events == "" {
		c.Events = DefaultEvents
	}
	if c.DLQ == "" {
		c.DLQ = DefaultDLQ
	}
	if c.Consumer == "" {
		c.Consumer = DefaultConsumer
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = DefaultMaxAckPending
	}
	if len(c.BackOff) == 0 {
		c.BackOff = DefaultBackOff
	}
	return c
}

// Delay returns the backoff before the next delivery after delivery n
// (counted from 1) failed.
func (c Config) Delay(n uint64) time.Duration {
	b := c.WithDefaults().BackOff
	if n == 0 {
		n = 1
	}
	if n > uint64(len(b)) {
		return b[len(b)-1]
	}
	return b[n-1]
}

// EventsStream is the events stream's configuration.
func (c Config) EventsStream() jetstream.StreamConfig {
	c = c.WithDefaults()
	return jetstream.StreamConfig{
		Name:        c.Events,
		Description: "wagate: every webhook event, stored before the provider is answered",
		Subjects:    []string{EventsSubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      c.MaxAge,
		Duplicates:  c.DuplicateWindow,
		Replicas:    c.Replicas,
		Discard:     jetstream.DiscardOld,
	}
}

// DLQStream is the dead-letter stream's configuration. Dead letters are kept
// until purged.
func (c Config) DLQStream() jetstream.StreamConfig {
	c = c.WithDefaults()
	return jetstream.StreamConfig{
		Name:        c.DLQ,
		Description: "wagate: events that failed permanently or ran out of deliveries",
		Subjects:    []string{DLQSubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  c.DuplicateWindow,
		Replicas:    c.Replicas,
	}
}

// ConsumerConfig is the workers' durable pull consumer's configuration. It
// sets no JetStream BackOff: a delivery whose handler failed is Nak'd by the
// worker with the delay Config.Delay gives (NakWithDelay, from
// Config.BackOff), and a delivery nobody acknowledged is redelivered after
// AckWait.
func (c Config) ConsumerConfig() jetstream.ConsumerConfig {
	c = c.WithDefaults()
	return jetstream.ConsumerConfig{
		Durable:       c.Consumer,
		Description:   "wagate workers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    c.MaxDeliver,
		MaxAckPending: c.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		FilterSubject: EventsSubjectPrefix + ".>",
	}
}

// ErrConflict is returned by Ensure when a live stream's configuration
// conflicts with the wanted one in a way that cannot be updated in place
// (for example its storage type).
var ErrConflict = errors.New("streams: live configuration conflicts")

// Ensure creates the events and dead-letter streams, or updates them to
// match c. A live stream that already has c's settings is not updated, so
// limits an operator set outside them (MaxMsgs, MaxBytes, …) are kept until
// one of c's settings changes. It returns an error wrapping ErrConflict when a live stream cannot
// be updated to c.
func Ensure(ctx context.Context, js jetstream.JetStream, c Config) error {
	for _, sc := range []jetstream.StreamConfig{c.EventsStream(), c.DLQStream()} {
		// A live stream that already has the wanted settings is left
		// alone: every ingress and worker start would otherwise update it,
		// and nats-server (2.15) races a stream update against a consumer
		// being created on it.
		if st, err := js.Stream(ctx, sc.Name); err == nil && sameSettings(st.CachedInfo().Config, sc) {
			continue
		}
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			var apiErr *jetstream.APIError
			if errors.As(err, &apiErr) && conflict(apiErr) {
				return fmt.Errorf("%w: stream %s: %v", ErrConflict, sc.Name, err)
			}
			return fmt.Errorf("streams: stream %s: %w", sc.Name, err)
		}
	}
	return nil
}

// sameSettings reports whether the live stream configuration has every
// setting Ensure sets as want has it.
func sameSettings(live, want jetstream.StreamConfig) bool {
	return slices.Equal(live.Subjects, want.Subjects) && live.Description == want.Description &&
		live.Storage == want.Storage && live.Retention == want.Retention && live.MaxAge == want.MaxAge &&
		live.Duplicates == want.Duplicates && live.Replicas == want.Replicas && live.Discard == want.Discard
}

// errCodeStreamInvalidConfig is nats-server's JSStreamInvalidConfigF
// (server/errors.json): a stream configuration the server refuses, among
// them an update that changes the storage type. It comes with HTTP-like
// code 500, not 400.
const errCodeStreamInvalidConfig jetstream.ErrorCode = 10052

// conflict reports whether a CreateOrUpdateStream error means the live
// stream cannot take the wanted configuration: a 400 with a JetStream error
// code (name in use, subjects overlap, …) or an invalid update.
func conflict(e *jetstream.APIError) bool {
	return e.ErrorCode == errCodeStreamInvalidConfig || (e.ErrorCode != 0 && e.Code == 400)
}

// EnsureConsumer creates or updates the workers' durable consumer on the
// events stream.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, c Config) (jetstream.Consumer, error) {
	c = c.WithDefaults()
	cons, err := js.CreateOrUpdateConsumer(ctx, c.Events, c.ConsumerConfig())
	if err != nil {
		return nil, fmt.Errorf("streams: consumer %s: %w", c.Consumer, err)
	}
	return cons, nil
}

// DLQSubject returns the dead-letter subject of an event subject:
// wagate.events.<provider>.<kind>.<account> becomes
// wagate.dlq.<provider>.<kind>.<account>. A subject outside
// EventsSubjectPrefix keeps all its tokens under DLQSubjectPrefix.
func DLQSubject(eventSubject string) string {
	if rest, ok := strings.CutPrefix(eventSubject, EventsSubjectPrefix+"."); ok && rest != "" {
		return DLQSubjectPrefix + "." + rest
	}
	return DLQSubjectPrefix + "." + eventSubject
}

// MaxDeliveriesAdvisory is the subject on which JetStream announces that a
// message of the events stream ran out of deliveries on the workers'
// consumer: $JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>.
func (c Config) MaxDeliveriesAdvisory() string {
	c = c.WithDefaults()
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + c.Events + "." + c.Consumer
}

// PartitionConsumer returns the name of partition p's durable consumer:
// "<Consumer>-p<p>", for example wagate-workers-p3.
func (c Config) PartitionConsumer(p int) string {
	c = c.WithDefaults()
	return c.Consumer + "-p" + strconv.Itoa(p)
}

// WorkerConsumers returns the names of every consumer the workers may read:
// Consumer (order off), then the partition consumers in partition order
// (order on).
func (c Config) WorkerConsumers() []string {
	names := []string{c.WithDefaults().Consumer}
	for p := range Partitions {
		names = append(names, c.PartitionConsumer(p))
	}
	return names
}

// PartitionConsumerConfig is partition p's durable consumer: ConsumerConfig's
// settings, filtered to the events of slot p (one filter subject: a
// consumer with several is several times slower to pull from), pinned to one
// client of PriorityGroup at a time (unpinned after AckWait without a pull),
// and never giving up on a message (MaxDeliver -1: the worker counts an
// event's runs against MaxDeliver, see worker.OrderConversation).
// MaxAckPending bounds each partition. start is the first stream sequence it
// delivers (0 or 1: the whole stream).
func (c Config) PartitionConsumerConfig(p int, start uint64) jetstream.ConsumerConfig {
	c = c.WithDefaults()
	cc := c.ConsumerConfig()
	cc.Durable = c.PartitionConsumer(p)
	cc.Description = fmt.Sprintf("wagate workers, in order: partition %d of %d", p, Partitions)
	cc.MaxDeliver = -1
	cc.FilterSubject = EventsSubjectPrefix + ".*.*.*." + strconv.Itoa(p)
	cc.PriorityGroups = []string{PriorityGroup}
	cc.PriorityPolicy = jetstream.PriorityPolicyPinned
	cc.PinnedTTL = c.AckWait
	if start > 1 {
		cc.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cc.OptStartSeq = start
	}
	return cc
}

// EnsurePartitionConsumers creates or updates the Partitions partition
// consumers and returns them, in partition order. A partition consumer
// created for the first time starts one past the ack floor of the workers'
// consumer (Consumer) when it exists, so that turning order on neither skips
// an event nor runs the whole stream again (events above that floor that
// were already done come again and are acknowledged as duplicates). It
// returns an error wrapping ErrNoPinning when the server is older than 2.11
// or hands back a consumer that is not pinned, and an error when the events
// stream does not exist or a consumer cannot be created.
func EnsurePartitionConsumers(ctx context.Context, js jetstream.JetStream, c Config) ([]jetstream.Consumer, error) {
	c = c.WithDefaults()
	if v := serverVersion(js); !atLeast(v, 2, 11) {
		return nil, fmt.Errorf("%w (connected to nats-server %s)", ErrNoPinning, v)
	}
	st, err := js.Stream(ctx, c.Events)
	if err != nil {
		return nil, fmt.Errorf("streams: stream %s: %w", c.Events, err)
	}
	var start uint64
	if cons, err := st.Consumer(ctx, c.Consumer); err == nil {
		start = cons.CachedInfo().AckFloor.Stream + 1
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("streams: consumer %s: %w", c.Consumer, err)
	}
	out := make([]jetstream.Consumer, Partitions)
	for p := range Partitions {
		cc := c.PartitionConsumerConfig(p, start)
		if cur, err := st.Consumer(ctx, cc.Durable); err == nil {
			// Exists: update what may change, keeping where it started.
			was := cur.CachedInfo().Config
			cc.DeliverPolicy, cc.OptStartSeq = was.DeliverPolicy, was.OptStartSeq
		} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, fmt.Errorf("streams: consumer %s: %w", cc.Durable, err)
		}
		cons, err := st.CreateOrUpdateConsumer(ctx, cc)
		if err != nil {
			return nil, fmt.Errorf("streams: consumer %s: %w", cc.Durable, err)
		}
		// A server that does not know priority groups ignores them: its
		// consumer would hand a partition to several workers at once.
		if got := cons.CachedInfo().Config; got.PriorityPolicy != jetstream.PriorityPolicyPinned || len(got.PriorityGroups) == 0 {
			return nil, fmt.Errorf("%w: consumer %s is not pinned to one client (nats-server %s)",
				ErrNoPinning, cc.Durable, serverVersion(js))
		}
		out[p] = cons
	}
	return out, nil
}

// ErrNoPinning is returned by EnsurePartitionConsumers when the NATS server
// does not pin a consumer to one client: priority groups need nats-server
// 2.11 or later.
var ErrNoPinning = errors.New("streams: order within conversations needs nats-server 2.11 or later (priority groups, pinned client)")

// atLeast reports whether version (major.minor.patch, as a server reports
// it) is at least major.minor; an unreadable version counts as new enough
// (the consumers' own check still applies).
func atLeast(version string, major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(version, "%d.%d", &ma, &mi); err != nil {
		return true
	}
	return ma > major || ma == major && mi >= minor
}

// serverVersion returns the version of the server js is connected to, or
// "unknown".
func serverVersion(js jetstream.JetStream) string {
	if nc := js.Conn(); nc != nil && nc.ConnectedServerVersion() != "" {
		return nc.ConnectedServerVersion()
	}
	return "unknown"
}

// Backlog returns the events the workers have yet to take (pending) and those
// delivered and not yet acknowledged (ackPending), summed over the workers'
// consumer and the partition consumers that exist: what an operator or a
// test waiting for the workers to be idle reads, with order on or off.
// Consumers that do not exist count as empty; it returns an error when one
// that exists cannot be read.
func Backlog(ctx context.Context, js jetstream.JetStream, c Config) (pending, ackPending uint64, err error) {
	c = c.WithDefaults()
	for _, name := range c.WorkerConsumers() {
		cons, err := js.Consumer(ctx, c.Events, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue
		}
		if err != nil {
			return 0, 0, fmt.Errorf("streams: consumer %s: %w", name, err)
		}
		info := cons.CachedInfo()
		pending += info.NumPending
		ackPending += uint64(info.NumAckPending)
	}
	return pending, ackPending, nil
}
