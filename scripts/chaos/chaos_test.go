package chaos

import (
	"context"
	"flag"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// long selects long traffic and every scenario (make chaos). Without it the
// suite runs the short subset below in make test.
var long = flag.Bool("chaos.long", false, "run every scenario with long traffic (make chaos)")

// inShort lists the scenarios make test runs, with short traffic: the
// crashes of both processes and the Redis outage with persistence. The
// others run under make chaos.
var inShort = map[string]bool{
	"TestChaosIngressKill":   true,
	"TestChaosWorkerKill":    true,
	"TestChaosRedisRestart":  true, // its aof/fail-open case only
	"TestChaosLongHandler":   false,
	"TestChaosNATSRestart":   false,
	"TestChaosNATSCluster":   false,
	"TestChaosSlowIngress":   false,
	"TestChaosWorkerScaling": false,
	"TestChaosOrder":         false,
}

var results Results

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if results.Len() > 0 {
		fmt.Print("\nchaos ledger (" + mode() + ")\n" + results.Table())
	}
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func mode() string {
	if *long {
		return "long traffic"
	}
	return "short traffic"
}

var (
	buildOnce sync.Once
	bins      Binaries
	binDir    string
	buildErr  error
)

// scenario skips t unless it runs in this mode, and returns the binaries.
func scenario(t *testing.T) Binaries {
	t.Helper()
	if testing.Short() {
		t.Skip("chaos: skipped in -short mode")
	}
	name := strings.Split(t.Name(), "/")[0]
	if _, ok := inShort[name]; !ok {
		t.Fatalf("chaos: %s is not listed in inShort", name)
	}
	if !*long && !inShort[name] {
		t.Skip("chaos: runs under make chaos (-chaos.long)")
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "wagate-chaos-bin")
		if buildErr != nil {
			return
		}
		root, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			buildErr = err
			return
		}
		bins, buildErr = Build(root, binDir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bins
}

// traffic is how long the provider sends new bodies.
func traffic(short time.Duration) time.Duration {
	if *long {
		return 20 * time.Second
	}
	return short
}

// expect is what a scenario allows beyond the guarantees every scenario
// must keep.
type expect struct {
	// reruns: a run may die or lose its lock after its side effect, so
	// re-runs after a crash may happen (they are counted).
	reruns bool
	// needReruns: the fault must have produced at least one such re-run
	// (else it never hit a handler after its side effect).
	needReruns bool
	// stateLoss: Redis lost its keys (restart without persistence): the
	// documented limits apply, to the keys written before the loss only.
	stateLoss bool
	// monitorGaps: Redis restarted, so MONITOR may have missed a mark
	// written before it reconnected.
	monitorGaps bool
}

// ledger gathers what every side saw, records the table row and asserts the
// guarantees: zero lost, zero overlapping runs, zero re-runs after a done
// mark, every re-run with a higher fencing number — except exactly what e
// allows.
func ledger(t *testing.T, s *Stack, e expect) Result {
	t.Helper()
	o := s.Observe()
	r := Check(o)
	r.Scenario, r.Seconds = s.Cfg.Name, s.Seconds()
	results.Add(r)
	t.Logf("%s: requests %d (answers by code %v, %d timeouts), events %d, answered %d, forwarded %d, dead-lettered %d, "+
		"duplicates suppressed %d, lost %d, overlaps %d, re-runs after done %d (%d on lost keys), re-runs after crash %d, "+
		"aborted runs %d, stale %d, fence not increasing %d (%d on lost keys), monitor gaps %d, marks %d",
		r.Scenario, r.Requests, r.Codes, r.Timeouts, r.Events, r.Answered, r.Forwarded, r.DeadLettered,
		r.DupSuppressed, r.Lost, r.Overlaps, r.RerunsAfterDone, r.RerunsAfterDoneLost, r.RerunsAfterCrash,
		r.Aborted, r.Stale, r.FenceNotIncreasing, r.FenceNotIncreasingLost, o.MonitorGaps, len(o.Marks))

	zero := func(what string, n int) {
		t.Helper()
		if n != 0 {
			t.Errorf("%s: %d, want 0", what, n)
		}
	}
	zero("bodies never answered 200", r.Unanswered)
	zero("answers whose counts do not add up", r.AnswerMismatch)
	zero("events answered 200 but not stored (G1)", r.NotStored)
	zero("events lost: answered 200, neither forwarded nor dead-lettered (G1, G3)", r.Lost)
	zero("events stored but never processed (G3)", r.Unprocessed)
	zero("dead letters without a reason (G3)", r.DLQNoReason)
	zero("events dead-lettered more than once", r.DeadTwice)
	zero("events made to be refused but not refused and dead-lettered once with the sink's 422 (G3)", r.RefusedNotDead)
	zero("events refused permanently but not dead-lettered (G3)", r.RejectedNotDead)
	zero("dead letters of events that never failed permanently", r.DeadNotRejected)
	zero("overlapping runs of one key (G2)", r.Overlaps)
	zero("forwards that are not a sent event under its key", r.BadRuns)
	zero("forwards whose item differs from the one sent", r.ItemMismatch)
	zero("events stored twice in the events stream", r.StoredTwice)
	zero("re-runs after a done mark (G2)", r.RerunsAfterDone-r.RerunsAfterDoneLost)
	zero("re-runs without a higher fencing number (G2)", r.FenceNotIncreasing-r.FenceNotIncreasingLost)
	zero("stale writes refused by the sink", r.Stale-r.StaleLost)
	zero("forwarded events not marked done", r.NotDone-r.NotDoneLost)
	zero("done marks not from the last committed run", r.DoneFenceMismatch-r.DoneFenceMismatchLost)
	if !e.stateLoss {
		zero("re-runs after a done mark lost with Redis's keys", r.RerunsAfterDoneLost)
		zero("re-runs whose fencing number restarted with Redis's keys", r.FenceNotIncreasingLost)
	}
	switch {
	case s.Cfg.Backend == BackendDynamoDB:
		t.Logf("%s: done marks are not observed on this backend: re-runs after a done mark count as re-runs after a crash", s.Cfg.Backend)
	case !e.monitorGaps || o.MonitorGaps == 0:
		zero("done marks MONITOR (or the PostgreSQL trigger) did not see (the re-run-after-done check would be blind)", r.MonitorMissed)
	}
	if !e.reruns {
		zero("re-runs after a crash (no fault here may cause one)", r.RerunsAfterCrash)
	}
	if e.stateLoss {
		// The documented limit, exactly: runs happen again only for keys
		// Redis forgot, and then with their fencing number started over.
		zero("re-runs not explained by the keys Redis lost", r.RerunsAfterCrash-r.FenceNotIncreasingLost)
	}
	if e.needReruns && r.RerunsAfterCrash == 0 {
		t.Error("no re-run after a crash: the fault never hit a handler between its side effect and its done mark")
	}
	if r.Forwarded == 0 || r.Answered == 0 {
		t.Errorf("no traffic: %d events answered, %d forwarded", r.Answered, r.Forwarded)
	}
	if t.Failed() {
		for _, ex := range r.Examples {
			t.Log("  " + ex)
		}
	}
	return r
}

// pause waits d, or until ctx ends; it reports whether d passed. Faults are
// injected at random moments: this is the randomness, not synchronisation.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func between(lo, hi time.Duration) time.Duration { return lo + rand.N(hi-lo) }

// killLoop kill -9s a random process of procs every 300–800 ms while ctx
// lasts, and starts it again 50–250 ms later. It returns the kills.
func killLoop(ctx context.Context, t *testing.T, procs []*Proc) int {
	kills := 0
	for pause(ctx, between(300*time.Millisecond, 800*time.Millisecond)) {
		p := procs[rand.IntN(len(procs))]
		p.Kill()
		kills++
		pause(ctx, between(50*time.Millisecond, 250*time.Millisecond))
		if err := p.Start(); err != nil {
			t.Error(err)
		}
	}
	return kills
}

// failpointKills counts the "failpoint: <point>: kill" lines in procs' logs.
func failpointKills(procs []*Proc, point string) int {
	n := 0
	for _, p := range procs {
		n += strings.Count(p.Logs(), "failpoint: "+point+": kill\n")
	}
	return n
}

// TestChaosIngressKill kill -9s the ingresses at random moments, and at the
// two moments that matter through failpoints: between the claim and the
// publish, and between the PubAck and the answer.
//
// It runs on each dedupe backend; with short traffic (make test) on Redis
// for 4 s and on PostgreSQL and DynamoDB (dynalite) for 2 s each.
func TestChaosIngressKill(t *testing.T) {
	bins := scenario(t)
	for _, backend := range []string{BackendRedis, BackendPostgres, BackendDynamoDB} {
		t.Run(backend, func(t *testing.T) { chaosIngressKill(t, bins, backend) })
	}
}

func chaosIngressKill(t *testing.T, bins Binaries, backend string) {
	name, short := "1 ingress kill -9", 4*time.Second
	if backend != BackendRedis {
		name, short = name+" "+backend, 2*time.Second
	}
	s := NewStack(t, bins, Config{
		Name:              name,
		Backend:           backend,
		IngressFailpoints: "ingest-after-claim=0.08,ingest-after-puback=0.08",
		Traffic:           traffic(short),
	})
	var kills int
	s.Traffic(func(ctx context.Context) { kills = killLoop(ctx, t, s.Ingress) })
	s.Drain()
	ledger(t, s, expect{})

	if kills == 0 {
		t.Error("no ingress was killed from outside")
	}
	for _, point := range []string{"ingest-after-claim", "ingest-after-puback"} {
		n := failpointKills(s.Ingress, point)
		if n == 0 {
			t.Errorf("failpoint %s never killed an ingress", point)
		}
		t.Logf("failpoint %s killed an ingress %d times", point, n)
	}
	t.Logf("%d kill -9 from outside", kills)
}

// TestChaosWorkerKill kill -9s the workers at random moments while their
// handlers run, and through failpoints after a handler's side effect and
// before its done mark, and after the done mark and before the ack. Every
// 20th body carries a new event the sink refuses permanently (8 with short
// traffic): each must reach the dead-letter stream exactly once, crashes or
// not.
//
// make test runs it on Redis; make chaos on PostgreSQL and DynamoDB as well.
func TestChaosWorkerKill(t *testing.T) {
	bins := scenario(t)
	for _, backend := range []string{BackendRedis, BackendPostgres, BackendDynamoDB} {
		t.Run(backend, func(t *testing.T) {
			if backend != BackendRedis && !*long {
				t.Skip("chaos: runs under make chaos (-chaos.long)")
			}
			chaosWorkerKill(t, bins, backend)
		})
	}
}

func chaosWorkerKill(t *testing.T, bins Binaries, backend string) {
	name := "2 worker kill -9"
	if backend != BackendRedis {
		name += " " + backend
	}
	s := NewStack(t, bins, Config{
		Name:             name,
		Backend:          backend,
		WorkerFailpoints: "worker-before-finish=0.05,worker-after-finish=0.05",
		RefuseEvery:      20,
		Traffic:          traffic(4 * time.Second),
	})
	var kills int
	s.Traffic(func(ctx context.Context) { kills = killLoop(ctx, t, s.Workers) })
	s.Drain()
	r := ledger(t, s, expect{reruns: true, needReruns: true})

	if kills == 0 {
		t.Error("no worker was killed from outside")
	}
	if r.Aborted == 0 {
		t.Error("no kill hit a handler while its forward was in flight")
	}
	checkRefused(t, s, r)
	for _, point := range []string{"worker-before-finish", "worker-after-finish"} {
		n := failpointKills(s.Workers, point)
		if n == 0 {
			t.Errorf("failpoint %s never killed a worker", point)
		}
		t.Logf("failpoint %s killed a worker %d times", point, n)
	}
	t.Logf("%d kill -9 from outside; %d forwards cut short by a kill", kills, r.Aborted)
}

// checkRefused checks that the events made to be refused were exactly one
// in each Cfg.RefuseEvery bodies, that the sink refused each of them and
// that they, and nothing else, were dead-lettered. (The ledger checks that
// each was dead-lettered once, with the sink's 422 as the reason; Drain
// waited, within its bound, until every answered event was forwarded or
// dead-lettered.)
func checkRefused(t *testing.T, s *Stack, r Result) {
	t.Helper()
	bodies := int(s.Cfg.Rate * s.Cfg.Traffic.Seconds())
	want := (bodies + s.Cfg.RefuseEvery - 1) / s.Cfg.RefuseEvery
	if r.Refused != want || r.Rejected != want || r.DeadLettered != want {
		t.Errorf("%d events made to be refused (one in each %d of %d bodies), %d refused permanently by the sink, %d dead-lettered: want %d each",
			r.Refused, s.Cfg.RefuseEvery, bodies, r.Rejected, r.DeadLettered, want)
	}
}

// longHold holds one forward in 16 for 3 s, three times LockTTL and AckWait
// (1 s): only heartbeats keep such a run's lock and message.
func longHold(key string) time.Duration {
	if isLong(key) {
		return 3 * time.Second
	}
	return DefaultHold(key)
}

func isLong(key string) bool { return keyHash(key)%16 == 0 }

// keyHash spreads keys evenly, to pick a share of the events.
func keyHash(key string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(key))
	return h.Sum32()
}

// TestChaosLongHandler runs handlers three times longer than the lock TTL
// and AckWait. Heartbeats must hold them: no re-run at all. Then the lock of
// running handlers is deleted under them (as if it had expired): the
// heartbeat must cancel the handler, and the next run carry a higher fencing
// number.
func TestChaosLongHandler(t *testing.T) {
	bins := scenario(t)
	cfg := Config{
		Hold:    longHold,
		LockTTL: time.Second,
		AckWait: time.Second,
		Rate:    20,
		Traffic: traffic(6 * time.Second),
	}
	t.Run("heartbeats-hold", func(t *testing.T) {
		cfg := cfg
		cfg.Name = "3a long handler, heartbeats hold"
		s := NewStack(t, bins, cfg)
		s.Traffic(nil)
		s.Drain()
		ledger(t, s, expect{})
		long := 0
		for _, r := range s.Sink.Runs() {
			if r.Outcome == RunApplied && r.End.Sub(r.Start) >= 3*time.Second {
				long++
			}
		}
		if long == 0 {
			t.Error("no handler ran longer than the lock TTL and AckWait")
		}
	})
	t.Run("heartbeat-fails", func(t *testing.T) {
		cfg := cfg
		cfg.Name = "3b long handler, lock lost"
		s := NewStack(t, bins, cfg)
		type target struct {
			run Run
			at  time.Time
		}
		var targets []target
		s.Traffic(func(ctx context.Context) {
			hit := map[string]bool{}
			for pause(ctx, 200*time.Millisecond) {
				for _, r := range s.Sink.InFlight() {
					// Running for longer than LockTTL and AckWait: its lock
					// exists only because heartbeats extended it.
					if hit[r.Key] || !isLong(r.Key) || time.Since(r.Start) < 1200*time.Millisecond {
						continue
					}
					hit[r.Key] = true
					n, err := s.RDB.Del(ctx, "{"+r.Key+"}:l").Result()
					if err == nil && n == 1 {
						targets = append(targets, target{run: r, at: time.Now()})
					}
				}
			}
		})
		s.Drain()
		r := ledger(t, s, expect{reruns: true, needReruns: true})

		if len(targets) == 0 {
			t.Fatal("no running handler's lock was deleted")
		}
		if r.RerunsAfterCrash != len(targets) {
			t.Errorf("%d re-runs, want exactly one for each of the %d runs whose lock was lost", r.RerunsAfterCrash, len(targets))
		}
		runs := s.Sink.Runs()
		for _, tg := range targets {
			first := runs[tg.run.ID]
			if first.Outcome != RunAborted {
				t.Errorf("%s: the run whose lock was deleted ended %s, want its handler cancelled (aborted)", tg.run.Key, first.Outcome)
			} else if d := first.End.Sub(tg.at); d > 2*time.Second {
				t.Errorf("%s: handler cancelled %v after its lock was lost, want within a heartbeat", tg.run.Key, d)
			}
			var next *Run
			for i := range runs {
				if runs[i].Key == tg.run.Key && runs[i].Start.After(first.Start) && runs[i].Outcome == RunApplied {
					next = &runs[i]
				}
			}
			switch {
			case next == nil:
				t.Errorf("%s: no run after the one whose lock was lost", tg.run.Key)
			case next.Fence <= first.Fence:
				t.Errorf("%s: the second run has fence %d, the first %d: want it higher", tg.run.Key, next.Fence, first.Fence)
			}
		}
		t.Logf("%d locks deleted under running handlers", len(targets))
	})
}

// TestChaosRedisRestart stops Redis (SIGKILL) for 1.5 s mid-traffic and
// starts it again, with persistence (AOF, fsync always) and without, under
// both ingress policies. Locks live 5 s, longer than the outage: with
// persistence every run keeps its lock, so no run may happen twice; without
// it Redis forgets locks, done marks and fencing numbers, and the README's
// documented limit applies to the keys it held.
func TestChaosRedisRestart(t *testing.T) {
	bins := scenario(t)
	for _, tc := range []struct {
		name      string
		args      []string
		policy    string
		stateLoss bool
	}{
		{"aof/fail-open", []string{"--appendonly", "yes", "--appendfsync", "always"}, "fail-open", false},
		{"aof/fail-closed", []string{"--appendonly", "yes", "--appendfsync", "always"}, "fail-closed", false},
		{"volatile/fail-open", nil, "fail-open", true},
		{"volatile/fail-closed", nil, "fail-closed", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !*long && tc.name != "aof/fail-open" {
				t.Skip("chaos: runs under make chaos (-chaos.long)")
			}
			s := NewStack(t, bins, Config{
				Name:      "4 redis restart " + tc.name,
				RedisArgs: tc.args,
				Policy:    tc.policy,
				Hold:      func(string) time.Duration { return between(50*time.Millisecond, 400*time.Millisecond) },
				LockTTL:   5 * time.Second,
				Traffic:   traffic(5 * time.Second),
			})
			s.Traffic(func(ctx context.Context) {
				if !pause(ctx, s.Cfg.Traffic/3) {
					return
				}
				s.Redis.Stop()
				if tc.stateLoss {
					s.StateLostAt = time.Now()
				}
				pause(context.Background(), 1500*time.Millisecond)
				s.Redis.Start()
			})
			s.Drain()
			var bypassed float64
			for _, p := range s.Ingress {
				n, err := s.Metric(p, "wagate_ingest_events_total", `outcome="bypassed"`)
				if err != nil {
					t.Fatal(err)
				}
				bypassed += n
			}
			r := ledger(t, s, expect{reruns: tc.stateLoss, stateLoss: tc.stateLoss, monitorGaps: true})
			if tc.policy == "fail-open" {
				if bypassed == 0 {
					t.Error("fail-open: no event was published without a claim while Redis was down")
				}
				if r.Codes[http.StatusServiceUnavailable] != 0 {
					t.Errorf("fail-open: %d answers 503, want none", r.Codes[http.StatusServiceUnavailable])
				}
			} else {
				if r.Codes[http.StatusServiceUnavailable] == 0 {
					t.Error("fail-closed: no answer 503 while Redis was down")
				}
				if bypassed != 0 {
					t.Errorf("fail-closed: %v events published without a claim", bypassed)
				}
			}
		})
	}
}

// TestChaosNATSRestart kill -9s the nats-server mid-traffic and starts it
// again on the same storage 1.5 s later.
func TestChaosNATSRestart(t *testing.T) {
	s := NewStack(t, scenario(t), Config{Name: "5 nats restart", Traffic: traffic(5 * time.Second)})
	s.Traffic(func(ctx context.Context) {
		if !pause(ctx, s.Cfg.Traffic/3) {
			return
		}
		s.NATS[0].Kill()
		pause(context.Background(), 1500*time.Millisecond)
		if err := s.NATS[0].Start(); err != nil {
			t.Error(err)
		}
	})
	s.Drain()
	r := ledger(t, s, expect{})
	if r.Codes[http.StatusOK] == r.Requests {
		t.Error("every request was answered 200: the outage was never seen")
	}
}

// TestChaosNATSCluster runs a three-node cluster with three replicas and
// kill -9s the events stream's leader mid-traffic, bringing it back 2 s
// later.
func TestChaosNATSCluster(t *testing.T) {
	s := NewStack(t, scenario(t), Config{Name: "6 nats cluster node kill", NATSNodes: 3, Traffic: traffic(6 * time.Second)})
	var killed string
	s.Traffic(func(ctx context.Context) {
		if !pause(ctx, s.Cfg.Traffic/3) {
			return
		}
		leader, err := s.streamLeader()
		if err != nil {
			t.Error(err)
			return
		}
		for _, n := range s.NATS {
			if n.Name == leader {
				killed = leader
				n.Kill()
				pause(context.Background(), 2*time.Second)
				if err := n.Start(); err != nil {
					t.Error(err)
				}
			}
		}
	})
	s.Drain()
	if killed == "" {
		t.Fatal("the stream leader was not one of the nodes")
	}
	leader, err := s.streamLeader()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed the leader %s; the leader is now %s", killed, leader)
	ledger(t, s, expect{})
}

// streamLeader names the events stream's leader node.
func (s *Stack) streamLeader() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var leader string
	err := s.withJS(ctx, func(js jetstream.JetStream) error {
		st, err := js.Stream(ctx, s.Streams.WithDefaults().Events)
		if err != nil {
			return err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return fmt.Errorf("stream %s has no leader", info.Config.Name)
		}
		leader = info.Cluster.Leader
		return nil
	})
	return leader, err
}

// TestChaosSlowIngress makes the ingress slower than the provider's timeout
// on some requests (after the claim, and after the PubAck), so that the
// provider gives up and retries while the first attempt is still running.
func TestChaosSlowIngress(t *testing.T) {
	s := NewStack(t, scenario(t), Config{
		Name:              "7 slow ingress",
		IngressFailpoints: "ingest-after-claim=2500ms@0.05,ingest-after-puback=2500ms@0.1",
		ProviderTimeout:   2 * time.Second,
		Traffic:           traffic(5 * time.Second),
	})
	s.Traffic(nil)
	s.Drain()
	r := ledger(t, s, expect{})
	if r.Timeouts == 0 {
		t.Error("the provider never timed out")
	}
	if r.DupSuppressed == 0 {
		t.Error("no duplicate delivery was suppressed")
	}
}

// TestChaosWorkerScaling scales the workers from 1 to 4 and back to 1
// (SIGTERM) mid-traffic.
func TestChaosWorkerScaling(t *testing.T) {
	s := NewStack(t, scenario(t), Config{Name: "8 workers 1→4→1", Workers: 1, Traffic: traffic(8 * time.Second)})
	done := map[string]float64{}
	s.Traffic(func(ctx context.Context) {
		if !pause(ctx, s.Cfg.Traffic/4) {
			return
		}
		added := []*Proc{s.AddWorker(), s.AddWorker(), s.AddWorker()}
		for _, p := range added {
			s.WaitReady(p)
		}
		pause(ctx, s.Cfg.Traffic/2)
		for _, p := range added {
			n, err := s.Metric(p, "wagate_worker_processed_total", `outcome="done"`)
			if err != nil {
				t.Error(err)
			}
			done[p.Name] = n
			code, sig, err := p.Stop(20 * time.Second)
			if err != nil || code != 0 || sig != 0 {
				t.Errorf("%s: SIGTERM: exit code %d signal %v err %v, want a clean exit", p.Name, code, sig, err)
			}
		}
	})
	s.Drain()
	n, err := s.Metric(s.Workers[0], "wagate_worker_processed_total", `outcome="done"`)
	if err != nil {
		t.Fatal(err)
	}
	done[s.Workers[0].Name] = n
	ledger(t, s, expect{})
	if len(done) != 4 {
		t.Fatalf("scraped %d workers, want 4", len(done))
	}
	for name, n := range done {
		if n == 0 {
			t.Errorf("%s processed no event", name)
		}
	}
	t.Logf("events done per worker: %v", done)
}

// TestChaosOrder runs the worker kill scenario with WAGATE_ORDER=conversation
// while workers also scale 2 → 3 → 2: besides G1–G3, every conversation's
// events reach the sink in the order the events stream holds them, a re-run
// after a crash only ever repeating an event before the next one, and a
// refused event (dead-lettered) holding its conversation until it is
// dead-lettered.
func TestChaosOrder(t *testing.T) {
	s := NewStack(t, scenario(t), Config{
		Name:             "9 order, worker kill -9, 2→3→2",
		Order:            true,
		WorkerFailpoints: "worker-before-finish=0.05,worker-after-finish=0.05",
		RefuseEvery:      20,
		Traffic:          traffic(6 * time.Second),
		// With order, a worker that dies holds the events of its partitions
		// for AckWait, not only the ones it ran: the failpoints, which kill
		// a worker every twentieth run or so, keep killing them while the
		// backlog drains, and each death costs its partitions an AckWait.
		Drain: 5 * time.Minute,
	})
	var kills int
	s.Traffic(func(ctx context.Context) {
		var scaled sync.WaitGroup
		scaled.Go(func() {
			if !pause(ctx, s.Cfg.Traffic/3) {
				return
			}
			p := s.AddWorker()
			s.WaitReady(p)
			pause(ctx, s.Cfg.Traffic/3)
			if code, sig, err := p.Stop(20 * time.Second); err != nil || code != 0 || sig != 0 {
				t.Errorf("%s: SIGTERM: exit code %d signal %v err %v, want a clean exit", p.Name, code, sig, err)
			}
		})
		kills = killLoop(ctx, t, s.Workers[:2])
		scaled.Wait()
	})
	s.Drain()
	r := ledger(t, s, expect{reruns: true})
	problems, checked := CheckOrder(s.Observe())
	for _, p := range problems {
		t.Error(p)
	}
	if checked < 40 {
		t.Errorf("%d conversations checked, want the traffic's 48 and more", checked)
	}
	checkRefused(t, s, r)
	t.Logf("%d conversations in order; %d kill -9 from outside; %d re-runs after a crash", checked, kills, r.RerunsAfterCrash)
}
