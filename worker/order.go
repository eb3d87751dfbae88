package worker

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/wagate/wagate/messages"
	"github.com/wagate/wagate/messages/streams"
)

// Order says whether the events of one conversation wait for each other.
type Order string

// The orders of Config.Order.
const (
	// OrderNone runs every event as soon as a worker has room for it: the
	// events of one conversation may run at the same time and finish in any
	// order.
	OrderNone Order = "none"
	// OrderConversation runs the events of one conversation (see
	// messages.Event.Conversation) one at a time, in stream order, which is
	// the order the ingress stored them in; the events of different
	// conversations run in parallel across every worker and its Concurrency.
	// A failed event holds the later events of its conversation until it
	// succeeds or is dead-lettered.
	OrderConversation Order = "conversation"
)

// DefaultMemberBucket is Config.MemberBucket's default.
const DefaultMemberBucket = "WAGATE_WORKERS"

// How order works (OrderConversation). Every event's subject ends with its
// slot (messages.Slot), the same for every event of a conversation, whose
// token travels in the header messages.HeaderConversation. The
// stream is read through streams.Partitions partition consumers
// (streams.EnsurePartitionConsumers), one per slot, each pinned by JetStream
// to one pulling client at a time (priority group, policy pinned_client): whatever the workers believe, JetStream delivers a
// partition's events to one worker only. The workers announce themselves in
// a key-value bucket (MemberBucket, one key per worker, refreshed every
// memberBeat, expiring after memberTTL), and each pulls only the partitions
// the member list gives it (rendezvous hashing: see mine).
//
// The owner of a partition receives its events in stream order and keeps, in
// memory, each conversation's events it holds, in stream order: only the
// first runs; the next starts when it is acknowledged or dead-lettered; a
// Nak'd one (failed, waiting for its backoff) stays first until JetStream
// delivers it again. A waiting event holds no handler slot; it is told
// InProgress every Heartbeat.
//
// Taking over a partition (a worker died, members changed) is safe once no
// event of the partition is pending anywhere but here: the previous owner's
// unacknowledged events come back to the new owner after AckWait, or at
// once when a stopping owner Naks them. Until then (untrusted) the new owner
// runs nothing of the partition: once JetStream has pinned the partition to
// it (its deliveries carry a Nats-Pin-Id), after each pull, with no pull
// outstanding, it reads the consumer's ack pending count and compares it
// with the events it holds. Before the pin, the previous owner may still be
// handed events, so no count read then means anything. A change of pin (a message with another Nats-Pin-Id, or JetStream
// answering "pin ID mismatch") makes a partition untrusted again and hands
// back the events it held that were not running.
//
// Events of no conversation (field changes, errors, unknown items) run as
// soon as they arrive.

// Membership timing: a worker refreshes its member key every memberBeat;
// a key not refreshed for memberTTL expires, and the other workers take its
// partitions.
const (
	memberBeat = time.Second
	memberTTL  = 3 * time.Second
)

// untrustedPull is the pull wait of a partition being taken over, between
// two reads of its ack pending count.
const untrustedPull = 250 * time.Millisecond

// Entry states.
const (
	entryHeld     = iota // delivered here, waiting for its turn
	entryReady           // its turn: waiting for a handler slot
	entryRunning         // handed to a handler
	entryAwaiting        // Nak'd: JetStream delivers it again later
)

// entry is one event of an owned partition known to this worker.
type entry struct {
	seq   uint64
	conv  string // conversation token; "" for none
	part  *partition
	m     jetstream.Msg // the latest delivery; nil while awaiting
	state int
	since time.Time // when it was first delivered here
}

// partition is one partition consumer this worker owns or is releasing.
type partition struct {
	p       int
	cons    jetstream.Consumer
	pin     string // Nats-Pin-Id of the deliveries trusted
	trusted bool
	known   map[uint64]*entry   // every event of the partition pending here
	convs   map[string][]*entry // conversation token → its known events, by seq
	removed uint64              // entries ever removed from known
	cancel  context.CancelFunc  // stops the pull loop
	stopped chan struct{}       // closed when the pull loop has returned
	leaving bool                // being given up (release)
}

// orderer runs OrderConversation for one Run of a Worker.
type orderer struct {
	w    *Worker
	id   string
	kv   jetstream.KeyValue
	st   jetstream.Stream
	cons []jetstream.Consumer

	mu      sync.Mutex
	owned   map[int]*partition
	ready   []*entry
	readyCh chan struct{}           // one token: ready grew
	room    chan struct{}           // closed and replaced when ready shrinks or an event is settled
	maxHeld int                     // the most events one partition holds here
	stop    context.CancelCauseFunc // ends consumeOrdered; a non-nil cause is Run's error
}

// newOrderer ensures the partition consumers and the member bucket.
func newOrderer(ctx context.Context, w *Worker) (*orderer, error) {
	sc := w.cfg.Streams
	cons, err := streams.EnsurePartitionConsumers(ctx, w.js, sc)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	kv, err := w.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      w.cfg.MemberBucket,
		Description: "wagate: the workers sharing the ordered partitions",
		History:     1,
		TTL:         memberTTL,
		Storage:     jetstream.MemoryStorage,
		Replicas:    sc.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("worker: member bucket %s: %w", w.cfg.MemberBucket, err)
	}
	st, err := w.js.Stream(ctx, sc.Events)
	if err != nil {
		return nil, fmt.Errorf("worker: stream %s: %w", sc.Events, err)
	}
	id := w.cfg.MemberID
	if id == "" {
		id = nuid.Next()
	}
	return &orderer{w: w, id: memberKey(id), kv: kv, st: st, cons: cons,
		owned: map[int]*partition{}, readyCh: make(chan struct{}, 1), room: make(chan struct{}),
		maxHeld: max(4*w.cfg.Concurrency, 32)}, nil
}

// memberKey turns a member id into a key-value key: bytes outside
// [-/_=.a-zA-Z0-9] become '_'.
func memberKey(id string) string {
	b := []byte(id)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '/', c == '_', c == '=', c == '.':
		default:
			b[i] = '_'
		}
	}
	return string(b)
}

// slotPartition returns the partition of an event subject (its slot),
// false for a subject without a slot.
func slotPartition(subject string) (int, bool) {
	slot, err := strconv.Atoi(subject[strings.LastIndexByte(subject, '.')+1:])
	if err != nil || slot < 0 || slot >= streams.Partitions {
		return 0, false
	}
	return slot, true
}

// conversationToken returns the conversation token of a stream message
// (messages.HeaderConversation), or "" for an event of no conversation.
func conversationToken(m jetstream.Msg) string {
	if t := m.Headers().Get(messages.HeaderConversation); t != "_" {
		return t
	}
	return ""
}

// consumeOrdered is consume for OrderConversation: it keeps this worker a
// member, pulls the partitions it owns, and runs their events in turn on
// Concurrency runners until ctx ends; then it hands back what waits. Run
// lets the runners finish (drain).
func (w *Worker) consumeOrdered(ctx, hardCtx context.Context, inflight *sync.WaitGroup) error {
	o := w.order
	outer := ctx
	ctx, o.stop = context.WithCancelCause(ctx)
	defer o.stop(nil)
	slots := make(chan struct{}, w.cfg.Concurrency)
	jobs := make(chan job, w.cfg.Concurrency)
	for range w.cfg.Concurrency {
		inflight.Go(func() {
			for j := range jobs {
				w.process(hardCtx, ctx.Done(), j.m, j.pre)
				o.finished(j.e)
				w.metrics.inFlight.Dec()
				<-slots
			}
		})
	}
	var loops sync.WaitGroup
	loops.Go(func() { o.heartbeats(ctx) })
	loops.Go(func() { o.members(ctx, &loops) })
	// The dispatcher: ready events go to free runners, begun together.
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			close(jobs)
			loops.Wait()
			o.handBack()
			if outer.Err() == nil {
				return context.Cause(ctx) // a pull loop's stop
			}
			return nil
		}
		n := takeFree(slots, w.cfg.Concurrency)
		batch, msgs := o.take(ctx, n)
		for range n - len(batch) {
			<-slots
		}
		if len(batch) == 0 {
			continue
		}
		w.metrics.inFlight.Add(float64(len(batch)))
		for i, pre := range w.beginBatch(msgs) {
			jobs <- job{m: msgs[i], pre: pre, e: batch[i]}
		}
	}
}

// take waits until an event is ready (or ctx ends) and returns up to n ready
// events, marked running, and their deliveries.
func (o *orderer) take(ctx context.Context, n int) ([]*entry, []jetstream.Msg) {
	for {
		o.mu.Lock()
		var out []*entry
		var msgs []jetstream.Msg
		i := 0
		for ; i < len(o.ready) && len(out) < n; i++ {
			e := o.ready[i]
			if e.state != entryReady || e.m == nil {
				continue // handed back meanwhile
			}
			e.state = entryRunning
			o.w.metrics.orderWait.Observe(time.Since(e.since).Seconds())
			out = append(out, e)
			msgs = append(msgs, e.m)
		}
		if i > 0 {
			o.ready = slices.Delete(o.ready, 0, i)
			o.roomMade()
		}
		o.mu.Unlock()
		if len(out) > 0 {
			return out, msgs
		}
		select {
		case <-o.readyCh:
		case <-ctx.Done():
			return nil, nil
		}
	}
}

// roomMade wakes the pull loops waiting for room; o.mu is held.
func (o *orderer) roomMade() {
	close(o.room)
	o.room = make(chan struct{})
}

// makeReady queues e for a handler; o.mu is held.
func (o *orderer) makeReady(e *entry) {
	e.state = entryReady
	o.ready = append(o.ready, e)
	select {
	case o.readyCh <- struct{}{}:
	default:
	}
}

// next queues the first event of conversation conv in part when its turn has
// come; o.mu is held.
func (o *orderer) next(part *partition, conv string) {
	if !part.trusted || conv == "" {
		return
	}
	if q := part.convs[conv]; len(q) > 0 && q[0].state == entryHeld {
		o.makeReady(q[0])
	}
}

// add takes a delivery of part's pull.
func (o *orderer) add(part *partition, m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		o.w.log.Error("worker: message without JetStream metadata", slog.String("subject", m.Subject()), slog.Any("error", err))
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if pin := m.Headers().Get(pinHeader); pin != "" && pin != part.pin {
		if part.pin != "" {
			o.untrust(part)
		}
		part.pin = pin
	}
	seq := meta.Sequence.Stream
	if e := part.known[seq]; e != nil {
		switch e.state {
		case entryRunning:
			// Delivered again while it runs (a late heartbeat): the run's
			// ack settles it.
		case entryAwaiting:
			e.m, e.state = m, entryHeld
			if e.conv == "" {
				o.makeReady(e)
			} else {
				o.next(part, e.conv)
			}
		default:
			e.m = m
		}
		return
	}
	e := &entry{seq: seq, conv: conversationToken(m), part: part, m: m, state: entryHeld, since: time.Now()}
	part.known[seq] = e
	if e.conv == "" {
		o.makeReady(e)
		return
	}
	q := part.convs[e.conv]
	at, _ := slices.BinarySearchFunc(q, seq, func(x *entry, s uint64) int { return cmp.Compare(x.seq, s) })
	part.convs[e.conv] = slices.Insert(q, at, e)
	o.next(part, e.conv)
}

// pinHeader is the header JetStream sets on a pinned consumer's deliveries.
const pinHeader = "Nats-Pin-Id"

// entryOf returns the entry of the event at seq on subject; o.mu is held.
func (o *orderer) entryOf(subject string, seq uint64) *entry {
	p, ok := slotPartition(subject)
	if !ok {
		return nil
	}
	part := o.owned[p]
	if part == nil {
		return nil
	}
	return part.known[seq]
}

// settled records that the event at seq on subject was acknowledged or
// dead-lettered (acked) or Nak'd (not acked), and lets the next event of its
// conversation run.
func (o *orderer) settled(subject string, seq uint64, acked bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	e := o.entryOf(subject, seq)
	if e == nil {
		return
	}
	if !acked {
		e.m, e.state = nil, entryAwaiting
		return
	}
	o.remove(e)
	o.next(e.part, e.conv)
}

// finished is called when the run of e returned: an event still marked
// running was neither acknowledged nor Nak'd, and JetStream delivers it again
// after AckWait.
func (o *orderer) finished(e *entry) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if e.state == entryRunning {
		e.m, e.state = nil, entryAwaiting
	}
}

// remove forgets e; o.mu is held.
func (o *orderer) remove(e *entry) {
	part := e.part
	if part.known[e.seq] != e {
		return
	}
	delete(part.known, e.seq)
	part.removed++
	o.roomMade()
	if e.conv != "" {
		q := part.convs[e.conv]
		if i := slices.Index(q, e); i >= 0 {
			q = slices.Delete(q, i, i+1)
		}
		if len(q) == 0 {
			delete(part.convs, e.conv)
		} else {
			part.convs[e.conv] = q
		}
	}
}

// untrust makes part untrusted: the events it holds that are not running
// are Nak'd for whoever owns the partition now, and those awaiting a
// redelivery forgotten (it may go elsewhere); o.mu is held.
func (o *orderer) untrust(part *partition) {
	if part.trusted {
		o.w.log.Info("worker: partition handed back", slog.Int("partition", part.p), slog.Int("held", len(part.known)))
	}
	part.trusted = false
	for _, e := range part.known {
		switch e.state {
		case entryHeld, entryReady:
			if err := e.m.Nak(); err != nil {
				o.w.log.Warn("worker: nak of a handed-back event failed; JetStream redelivers it after AckWait",
					slog.Int("partition", part.p), slog.Uint64("seq", e.seq), slog.Any("error", err))
			}
			e.m, e.state = nil, entryAwaiting
			o.remove(e)
		case entryAwaiting:
			o.remove(e)
		}
	}
}

// checkTrust makes part trusted when no event of it is pending anywhere
// but here: the consumer's ack pending count, read with no pull of part
// outstanding, is at most the events known here before the read minus
// those settled since (an event settled here may still count as pending
// there, which only makes the check fail and run again).
func (o *orderer) checkTrust(ctx context.Context, part *partition) {
	o.mu.Lock()
	known, removed := uint64(len(part.known)), part.removed
	o.mu.Unlock()
	ictx, cancel := context.WithTimeout(ctx, opTimeout)
	info, err := part.cons.Info(ictx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			o.w.log.Warn("worker: reading a partition's pending events failed", slog.Int("partition", part.p), slog.Any("error", err))
		}
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	gone := part.removed - removed
	if uint64(info.NumAckPending)+gone > known || part.trusted {
		return
	}
	part.trusted = true
	o.w.log.Info("worker: partition taken over", slog.Int("partition", part.p), slog.Int("held", len(part.known)))
	for conv := range part.convs {
		o.next(part, conv)
	}
}

// pull is the pull loop of one owned partition. It first unpins the
// partition: whoever held the pin (a worker that died, or one giving the
// partition up) is handed no more of its events, and JetStream pins this
// worker at its first pull, which the events still held elsewhere keep
// untrusted until they come here or are settled.
func (o *orderer) pull(ctx context.Context, part *partition) {
	defer close(part.stopped)
	w := o.w
	o.unpin(ctx, part.p)
	wait := min(fetchWait, w.cfg.Streams.AckWait/3)
	for ctx.Err() == nil {
		o.mu.Lock()
		trusted, room := part.trusted, o.room
		n := min(w.cfg.Concurrency, o.maxHeld-len(part.known))
		if len(o.ready) >= w.cfg.Concurrency {
			n = 0
		}
		o.mu.Unlock()
		if trusted && n <= 0 {
			// Enough is ready for the runners, or held here: wait for
			// room, but pull at least one event a pull wait, so that
			// JetStream keeps the partition pinned here.
			t := time.NewTimer(wait)
			select {
			case <-room:
				t.Stop()
				continue
			case <-t.C:
				n = 1
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
		n = max(n, 1)
		pw := wait
		if !trusted {
			pw = untrustedPull
		}
		batch, err := part.cons.Fetch(n, jetstream.FetchPriorityGroup(streams.PriorityGroup), jetstream.FetchMaxWait(pw))
		if err == nil {
			for m := range batch.Messages() {
				o.add(part, m)
			}
			err = batch.Error()
		}
		switch {
		case ctx.Err() != nil:
			return
		case err == nil, errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		case errors.Is(err, jetstream.ErrPinIDMismatch):
			o.mu.Lock()
			o.untrust(part)
			part.pin = ""
			o.mu.Unlock()
		default:
			recreate := func(ctx context.Context) error { return o.reensure(ctx, part) }
			if stop := w.fetchFailed(ctx, err, recreate, slog.Int("partition", part.p)); stop != nil {
				o.stop(stop) // Run returns it
				return
			}
			continue
		}
		o.mu.Lock()
		pinned := part.pin != ""
		o.mu.Unlock()
		if !trusted && pinned {
			o.checkTrust(ctx, part)
		}
	}
}

// reensure creates the streams and partition consumers again (deleted
// under the workers) and gives part its consumer anew; the partition starts
// over untrusted.
func (o *orderer) reensure(ctx context.Context, part *partition) error {
	w := o.w
	if err := streams.Ensure(ctx, w.js, w.cfg.Streams); err != nil {
		return err
	}
	cons, err := streams.EnsurePartitionConsumers(ctx, w.js, w.cfg.Streams)
	if err != nil {
		return err
	}
	o.mu.Lock()
	o.cons = cons
	part.cons = cons[part.p]
	o.untrust(part)
	part.pin = ""
	o.mu.Unlock()
	return nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// heartbeats tells JetStream every Heartbeat that the events waiting here
// (for their turn or a handler) are in progress.
func (o *orderer) heartbeats(ctx context.Context) {
	t := time.NewTicker(o.w.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var waiting []jetstream.Msg
		o.mu.Lock()
		for _, part := range o.owned {
			for _, e := range part.known {
				if (e.state == entryHeld || e.state == entryReady) && e.m != nil {
					waiting = append(waiting, e.m)
				}
			}
		}
		o.mu.Unlock()
		for _, m := range waiting {
			if err := m.InProgress(); err != nil {
				o.w.log.Warn("worker: in-progress signal failed for an event waiting its turn", slog.Any("error", err))
			}
		}
	}
}

// members keeps this worker's member key fresh every memberBeat and takes
// or gives up partitions as the member list changes, until ctx ends; then
// it stops every pull loop and deletes the key.
func (o *orderer) members(ctx context.Context, loops *sync.WaitGroup) {
	defer func() {
		for _, part := range o.ownedParts() {
			part.cancel()
			<-part.stopped
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
		defer cancel()
		_ = o.kv.Delete(dctx, o.id)
	}()
	// A worker restarted in place finds its own key still there: the
	// partitions are its own, it takes them at once. Others announce first
	// and look one beat later, so that workers starting together see each
	// other before taking partitions.
	gctx, cancel := context.WithTimeout(ctx, opTimeout)
	_, err := o.kv.Get(gctx, o.id)
	cancel()
	restarted := err == nil
	if _, err := o.memberList(ctx); err == nil && !restarted {
		sleep(ctx, memberBeat)
	}
	var last []string
	for {
		list, err := o.memberList(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			o.w.log.WarnContext(ctx, "worker: member list unreadable; keeping the partitions held", slog.Any("error", err))
		default:
			o.assign(ctx, list, loops)
			if !slices.Equal(list, last) {
				last = list
				o.w.log.Info("worker: ordered partitions assigned", slog.Int("members", len(list)), slog.Int("partitions", len(o.mine(list))))
			}
		}
		sleep(ctx, memberBeat)
	}
}

// memberList refreshes this worker's key and returns every live member, this
// one included, sorted.
func (o *orderer) memberList(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if _, err := o.kv.Put(ctx, o.id, nil); err != nil {
		return nil, err
	}
	keys, err := o.kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	list := []string{o.id}
	for k := range keys.Keys() {
		if k != o.id {
			list = append(list, k)
		}
	}
	slices.Sort(list)
	return list, nil
}

// mine returns the partitions the member list gives this worker: partition
// p goes to the member m with the highest hash of (m, p) (rendezvous
// hashing), so that a member joining or leaving moves only the partitions
// it takes or leaves, about 1/members of them, not most.
func (o *orderer) mine(list []string) map[int]bool {
	out := map[int]bool{}
	for p := range streams.Partitions {
		if owner(list, p) == o.id {
			out[p] = true
		}
	}
	return out
}

// owner returns the member of list that partition p goes to.
func owner(list []string, p int) string {
	best, bestScore := "", uint64(0)
	for _, m := range list {
		sum := sha256.Sum256([]byte(m + "/" + strconv.Itoa(p)))
		if score := binary.BigEndian.Uint64(sum[:8]); best == "" || score > bestScore {
			best, bestScore = m, score
		}
	}
	return best
}

// assign starts pulling the partitions list gives this worker and gives up
// the others. It is called every memberBeat: a partition still being given
// up is taken again at a later call.
func (o *orderer) assign(ctx context.Context, list []string, loops *sync.WaitGroup) {
	mine := o.mine(list)
	o.mu.Lock()
	for p := range mine {
		if o.owned[p] != nil {
			continue
		}
		pctx, cancel := context.WithCancel(ctx)
		part := &partition{p: p, cons: o.cons[p], known: map[uint64]*entry{}, convs: map[string][]*entry{},
			cancel: cancel, stopped: make(chan struct{})}
		o.owned[p] = part
		loops.Go(func() { o.pull(pctx, part) })
	}
	for p, part := range o.owned {
		if !mine[p] && !part.leaving {
			part.leaving = true
			loops.Go(func() { o.release(ctx, part) })
		}
	}
	o.w.metrics.orderPartitions.Set(float64(len(mine)))
	o.mu.Unlock()
}

// release gives up part: it stops pulling, hands back what waits, and waits
// for its running events to settle. Its next owner unpins it (see pull).
func (o *orderer) release(ctx context.Context, part *partition) {
	part.cancel()
	<-part.stopped
	for {
		o.mu.Lock()
		o.untrust(part)
		running := 0
		for _, e := range part.known {
			if e.state == entryRunning {
				running++
			}
		}
		if running == 0 || ctx.Err() != nil {
			if o.owned[part.p] == part {
				delete(o.owned, part.p)
			}
			o.mu.Unlock()
			break
		}
		o.mu.Unlock()
		sleep(ctx, 50*time.Millisecond)
	}
}

// unpin lets JetStream pin partition p to its next puller, this worker.
func (o *orderer) unpin(ctx context.Context, p int) {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	name := o.w.cfg.Streams.PartitionConsumer(p)
	if err := o.st.UnpinConsumer(uctx, name, streams.PriorityGroup); err != nil && ctx.Err() == nil {
		o.w.log.Warn("worker: unpinning a partition failed; it comes here once its pin expires (AckWait)",
			slog.Int("partition", p), slog.Any("error", err))
	}
}

// ownedParts returns the partitions owned or being released.
func (o *orderer) ownedParts() []*partition {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]*partition, 0, len(o.owned))
	for _, part := range o.owned {
		out = append(out, part)
	}
	return out
}

// handBack, at shutdown with every pull loop stopped and the runners
// draining, Naks the events that wait here for whoever owns their partition
// next.
func (o *orderer) handBack() {
	o.mu.Lock()
	for _, part := range o.owned {
		o.untrust(part)
	}
	o.ready = nil
	o.mu.Unlock()
}

// turnSettled tells the order that the event at seq on subject was
// acknowledged or dead-lettered (acked true) or Nak'd; without order it does
// nothing.
func (w *Worker) turnSettled(subject string, seq uint64, acked bool) {
	if w.order != nil {
		w.order.settled(subject, seq, acked)
	}
}
