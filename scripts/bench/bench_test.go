package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/ingest"
	"github.com/wagate/wagate/internal/testenv"
	"github.com/wagate/wagate/messages"
)

func TestMain(m *testing.M) {
	serveEchoFromEnv()     // the echo floor server is this test binary run again
	serveBaselineFromEnv() // and so is the hand-written baseline
	os.Exit(m.Run())
}

// TestRun runs every phase of the benchmark for a moment at a low load, to
// keep the machinery working. It checks what was measured is real (every
// request answered, every event accounted for, files written), never how
// fast anything was.
func TestRun(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server not on PATH")
		}
		t.Skip("redis-server not on PATH")
	}
	o := defaultOptions()
	o.duration, o.peakDuration = 200*time.Millisecond, 200*time.Millisecond
	o.concurrency, o.batch = 2, 5
	o.workerEvents, o.claims = 200, 2000
	o.compareC = []int{2}
	o.out = t.TempDir()
	o.natsURL = testenv.StartNATS(t).ClientURL() // private, and saves building nats-server

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress strings.Builder
	res, err := run(ctx, o, &progress)
	t.Log("progress:\n" + progress.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}

	if len(res.Ingress) != 2 || res.Ingress[0].EventsPerBody != 1 || res.Ingress[1].EventsPerBody != o.batch {
		t.Fatalf("ingress results %+v", res.Ingress)
	}
	if b := res.Ingress[0].Baseline50; b == nil || b.Requests == 0 || b.OK != b.Requests || b.Latency.P99 <= 0 {
		t.Errorf("baseline at the single events' 50%% step: %+v", b)
	}
	if res.Ingress[1].Baseline50 != nil {
		t.Errorf("baseline measured at the batch bodies' 50%% step: %+v", res.Ingress[1].Baseline50)
	}
	dups := 0
	for _, in := range res.Ingress {
		runs := append([]Step{in.Peak}, in.Steps...)
		for _, s := range runs {
			if s.Requests == 0 || s.OK != s.Requests {
				t.Errorf("%s at %v%%: %d of %d requests answered 200 (%v)", in.Name, s.LoadPct, s.OK, s.Requests, s.Errors)
			}
			// Every event of every answered body is stored or a duplicate.
			if got, want := s.Accepted+s.Duplicates, s.OK*in.EventsPerBody; got != want {
				t.Errorf("%s at %v%%: %d accepted + %d duplicates, want %d events", in.Name, s.LoadPct, s.Accepted, s.Duplicates, want)
			}
			if s.Latency.P50 <= 0 || s.Latency.P50 > s.Latency.P99 || s.Latency.P99 > s.Latency.Max {
				t.Errorf("%s at %v%%: latency %+v", in.Name, s.LoadPct, s.Latency)
			}
			dups += s.Duplicates
		}
		if len(in.Steps) != 4 || in.Steps[0].LoadPct != 25 || in.Steps[3].LoadPct != 100 {
			t.Errorf("%s steps %+v", in.Name, in.Steps)
		}
		if in.Floor.Events == 0 || in.Floor.Published == 0 || in.Floor.Published > in.Floor.Events {
			t.Errorf("%s bare loop %+v", in.Name, in.Floor)
		}
		if in.Echo.OK == 0 || in.Echo.OK != in.Echo.Requests || in.Echo.Accepted != 0 {
			t.Errorf("%s echo run %+v", in.Name, in.Echo)
		}
		if in.PeakRSS <= 0 || in.Peak.CPU == nil || in.Peak.CPU.Procs["ingress"] <= 0 {
			t.Errorf("%s: peak RSS %d, CPU %v", in.Name, in.PeakRSS, in.Peak.CPU)
		}
	}
	if dups == 0 {
		t.Error("no re-sent body was answered as a duplicate")
	}

	// Side by side: each system answered every request, and the end-to-end
	// cells account for every stored event (processed or in the backlog).
	systems := map[string]bool{}
	for _, c := range res.Compare {
		systems[c.System] = true
		if c.Concurrency != 2 || c.RPS <= 0 || len(c.Errors) != 0 || c.CPU == nil || c.CPU.Procs["bench"] <= 0 {
			t.Errorf("compare cell %+v", c)
		}
		if strings.HasPrefix(c.System, "end-to-end") && c.Events+c.Backlog == 0 {
			t.Errorf("%s: no event stored (%+v)", c.System, c)
		}
		if !strings.HasPrefix(c.System, "end-to-end") && c.Events == 0 {
			t.Errorf("%s: no event stored (%+v)", c.System, c)
		}
	}
	if len(res.Compare) != 5 || len(systems) != 5 {
		t.Errorf("compare cells %+v, want baseline, ingress, end-to-end, end-to-end-prefetch and end-to-end-kv", res.Compare)
	}

	wk := res.Worker
	if wk == nil || wk.Worker.Events != o.workerEvents || wk.Bare.Events != o.workerEvents ||
		wk.Worker.EventsPerS <= 0 || wk.Bare.EventsPerS <= 0 {
		t.Fatalf("worker results %+v", wk)
	}
	// The store loop ran the same events, each begun and marked done once
	// (it fails the run otherwise).
	if sl := wk.StoreLoop; sl.Events != o.workerEvents || sl.EventsPerS <= 0 || sl.CPU == nil || sl.CPU.Procs["redis"] <= 0 ||
		wk.StoreLoopRatio <= 0 || wk.StoreLoopOverBare <= 0 {
		t.Errorf("store loop %+v, worker / store loop %v, store loop / bare %v", sl, wk.StoreLoopRatio, wk.StoreLoopOverBare)
	}
	e2e := wk.EndToEnd
	if e2e.OK == 0 || e2e.OK != e2e.Requests || e2e.Handled == 0 || e2e.Handled > e2e.OK ||
		len(e2eNonZero(e2e.FromRequest, e2e.FromReceipt)) != 2 {
		t.Errorf("end to end %+v", e2e)
	}

	if len(res.Order) != 4 {
		t.Errorf("order runs %+v, want 4 (two workloads, two orders)", res.Order)
	}
	for _, r := range res.Order {
		if r.Events != o.workerEvents || r.EventsPerS <= 0 || r.Conversations == 0 {
			t.Errorf("order run %+v", r)
		}
	}
	mem := res.Memory
	if mem == nil || mem.Claims != o.claims || mem.Wagate <= 0 || mem.Naive <= mem.Wagate {
		t.Fatalf("memory results %+v", mem)
	}
	if !strings.HasPrefix(mem.SampleKey, messages.KeyPrefix) || len(mem.SampleKey) != messages.KeyLen {
		t.Errorf("sample key %q", mem.SampleKey)
	}
	if len(res.Targets) != 7 {
		t.Errorf("%d targets, want 7 (six of the group commit, one of order): %+v", len(res.Targets), res.Targets)
	}

	data, err := os.ReadFile(filepath.Join(o.out, "latest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if err := json.Unmarshal(data, &back); err != nil || back.Date != res.Date || back.Machine.Redis == "" {
		t.Errorf("latest.json: %v, date %q, machine %+v", err, back.Date, back.Machine)
	}
	if svg, err := os.ReadFile(filepath.Join(o.out, "compare.svg")); err != nil || !strings.Contains(string(svg), "<svg") {
		t.Errorf("compare.svg: %v, %d bytes", err, len(svg))
	}
	svg, err := os.ReadFile(filepath.Join(o.out, "latest.svg"))
	if err != nil || !strings.Contains(string(svg), "<svg") {
		t.Errorf("latest.svg: %v, %d bytes", err, len(svg))
	}
}

// e2eNonZero returns the percentiles that have a median.
func e2eNonZero(ps ...Percentiles) []Percentiles {
	var out []Percentiles
	for _, p := range ps {
		if p.P50 > 0 {
			out = append(out, p)
		}
	}
	return out
}

// TestWorkloadResends checks the generated bodies: signed as Meta signs,
// parsed into the right number of events, and re-sent at the asked rate.
func TestWorkloadResends(t *testing.T) {
	w := newWorkload(3, 0.1, "s", false)
	seen := map[string]int{}
	const n = 1000
	resends := 0
	for range n {
		b := w.next()
		if b.sig != ingest.Sign(b.data, "s") {
			t.Fatal("body not signed with the secret")
		}
		evs, err := messages.Parse(b.data, time.Now())
		if err != nil || len(evs) != 3 {
			t.Fatalf("parse: %d events, %v", len(evs), err)
		}
		if len(evs[0].ID) != 62 || !strings.HasPrefix(evs[0].ID, "wamid.HBgL") {
			t.Fatalf("wamid %q", evs[0].ID)
		}
		if seen[evs[0].Key] > 0 {
			resends++
		}
		seen[evs[0].Key]++
	}
	// The first recentSkip+1 bodies cannot be re-sends.
	if want := n/10 - 4; resends < want || resends > n/10 {
		t.Errorf("%d re-sends in %d bodies, want about %d", resends, n, n/10)
	}
}
