package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Results is everything one run measured; it is written as latest.json.
type Results struct {
	Date     string     `json:"date"`
	Command  string     `json:"command"`
	Machine  Machine    `json:"machine"`
	Settings Settings   `json:"settings"`
	Compare  []Cell     `json:"compare,omitempty"`
	Ingress  []Ingress  `json:"ingress"`
	Worker   *Worker    `json:"worker,omitempty"`
	Memory   *Memory    `json:"memory,omitempty"`
	Order    []OrderRun `json:"order,omitempty"`
	Targets  []Target   `json:"targets"`
}

// Machine describes where the figures come from.
type Machine struct {
	CPUs     int    `json:"cpus"`
	CPU      string `json:"cpu"`
	MemoryMB int64  `json:"memory_mb"`
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
	Redis    string `json:"redis"`
	NATS     string `json:"nats_server"`
	// BusyBefore is the machine's use by other processes in the second
	// before the run, in cores: figures taken on a busy machine are low.
	BusyBefore float64 `json:"busy_before_cores"`
}

// Settings are the run's flags.
type Settings struct {
	Concurrency   int     `json:"concurrency"`
	StepSeconds   float64 `json:"step_seconds"`
	PeakSeconds   float64 `json:"peak_seconds"`
	BatchSize     int     `json:"batch_size"`
	DuplicatePct  float64 `json:"duplicate_pct"`
	WorkerEvents  int     `json:"worker_events"`
	MemoryClaims  int     `json:"memory_claims"`
	EndToEndShare float64 `json:"end_to_end_load_pct"`
}

// Ingress is the ingress's outcome for one body shape.
type Ingress struct {
	Name          string `json:"name"`
	EventsPerBody int    `json:"events_per_body"`
	// Peak is the closed loop of Settings.Concurrency requests in flight;
	// Steps are open loops at 25, 50, 75 and 100 % of its rate.
	Peak  Step   `json:"peak"`
	Steps []Step `json:"steps"`
	// Floor is the bare claim and publish loop with the same concurrency;
	// Echo is an echo handler that answers 200, under the same load as Peak.
	Floor Floor `json:"floor"`
	Echo  Step  `json:"echo"`
	// FloorRatio is Peak events/s over Floor events/s; EchoRatio is Peak
	// requests/s over Echo requests/s.
	FloorRatio float64 `json:"floor_ratio"`
	EchoRatio  float64 `json:"echo_ratio"`
	// Baseline50 is the hand-written baseline under the 50 % step's load
	// (single events only): that step's latency floor on this machine.
	Baseline50 *Step `json:"baseline_at_50,omitempty"`
	// PeakRSS is the ingress's VmHWM after its 100 % step, in bytes.
	PeakRSS int64 `json:"peak_rss_bytes"`
}

// Worker compares the worker with a bare consumer.
type Worker struct {
	Worker   Consume  `json:"worker"`
	Bare     Consume  `json:"bare_consumer"`
	Ratio    float64  `json:"ratio"`
	EndToEnd EndToEnd `json:"end_to_end"`
	// The same pair with Prefetch = the concurrency (WAGATE_WORKER_PREFETCH).
	Prefetched      Consume `json:"worker_prefetch"`
	BarePrefetched  Consume `json:"bare_consumer_prefetch"`
	PrefetchedRatio float64 `json:"ratio_prefetch"`
	// StoreLoop is the bare consumer that also begins and marks done each
	// group in the dedupe store (one call each), with the worker's
	// concurrency and no prefetch: the least the design's lock and done mark
	// cost. StoreLoopRatio is Worker over it; StoreLoopOverBare is it over
	// Bare, the most any worker keeping the lock and done mark can reach
	// against the bare consumer.
	StoreLoop         Consume `json:"store_loop"`
	StoreLoopRatio    float64 `json:"ratio_store_loop"`
	StoreLoopOverBare float64 `json:"store_loop_over_bare"`
}

// Target is one goal of the benchmark and whether this run met it.
type Target struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Goal  string  `json:"goal"`
	Met   bool    `json:"met"`
}

// evaluate fills r.Targets.
func (r *Results) evaluate() {
	r.Targets = nil
	var none, ordered float64
	for _, o := range r.Order {
		if o.Workload == "many conversations" && o.Order == "none" {
			none = o.EventsPerS
		}
		if o.Workload == "many conversations" && o.Order == "conversation" {
			ordered = o.EventsPerS
		}
	}
	if none > 0 && ordered > 0 {
		r.Targets = append(r.Targets, Target{
			Name: "order, many conversations: events/s with WAGATE_ORDER=conversation over none", Value: ordered / none,
			Goal: "≥ 0.8", Met: ordered/none >= 0.8,
		})
	}
	if base, err := r.cell("baseline", 32); err == nil {
		if in, err := r.cell("ingress", 32); err == nil {
			r.Targets = append(r.Targets, Target{
				Name: "ingress alone, c=32: events/s over the hand-written baseline's", Value: in.Ratio,
				Goal: "≥ 1.2", Met: in.Ratio >= 1.2,
			})
		}
		if e2e, err := r.cell("end-to-end", 32); err == nil {
			r.Targets = append(r.Targets, Target{
				Name: "end to end, c=32: processed events/s over the baseline's req/s", Value: e2e.Ratio,
				Goal: "≥ 0.8", Met: e2e.Ratio >= 0.8,
			})
			r.Targets = append(r.Targets, Target{
				Name: "end to end, c=32: backlog at the end (events)", Value: float64(e2e.Backlog),
				Goal: "≈ 0 (not growing)", Met: e2e.Backlog <= max(100, e2e.Events/100),
			})
			if base.CPUPerEvt > 0 {
				ratio := e2e.CPUPerEvt / base.CPUPerEvt
				r.Targets = append(r.Targets, Target{
					Name: "end to end, c=32: CPU per processed event over the baseline's per request", Value: ratio,
					Goal: "≤ 1", Met: ratio <= 1,
				})
			}
		}
	}
	for _, in := range r.Ingress {
		r.Targets = append(r.Targets, Target{
			Name: "ingress " + in.Name + ": events/s over the bare loop's", Value: in.FloorRatio,
			Goal: "≥ 0.5", Met: in.FloorRatio >= 0.5,
		})
		for _, s := range in.Steps {
			if s.LoadPct == 50 {
				goal := "≤ 5"
				if b := in.Baseline50; b != nil {
					goal += fmt.Sprintf(" (baseline at that rate: %.2f)", b.Latency.P99)
				}
				r.Targets = append(r.Targets, Target{
					Name: "ingress " + in.Name + ": p99 ack at 50% of peak (ms)", Value: s.Latency.P99,
					Goal: goal, Met: s.OK > 0 && s.Latency.P99 <= 5,
				})
			}
		}
	}
	if r.Worker != nil {
		goal := "≥ 0.7"
		if r.Worker.StoreLoopOverBare > 0 {
			goal += fmt.Sprintf(" (store loop: %.2f)", r.Worker.StoreLoopOverBare)
		}
		r.Targets = append(r.Targets, Target{
			Name: "worker: events/s over the bare consumer's", Value: r.Worker.Ratio,
			Goal: goal, Met: r.Worker.Ratio >= 0.7,
		})
	}
	if r.Memory != nil {
		r.Targets = append(r.Targets, Target{
			Name: "redis: bytes per claim over the naive layout's", Value: r.Memory.Ratio,
			Goal: "≤ 0.5", Met: r.Memory.Ratio > 0 && r.Memory.Ratio <= 0.5,
		})
	}
}

// write saves latest.json in dir, and latest.svg when the ingress was
// measured.
func (r *Results) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "latest.json"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	if len(r.Compare) > 0 {
		if err := r.plotCompare(filepath.Join(dir, "compare.svg")); err != nil {
			return err
		}
	}
	if len(r.Ingress) == 0 {
		return nil
	}
	return r.plot(filepath.Join(dir, "latest.svg"))
}

// plotCompare draws the side-by-side phase: events per second against the
// concurrency, one line per system.
func (r *Results) plotCompare(path string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("wagate vs a hand-written Go handler (%d CPUs, single-event bodies; end to end: events fully processed)", r.Machine.CPUs)
	p.X.Label.Text = "requests in flight (log scale)"
	p.X.Scale = plot.LogScale{}
	var ticks []plot.Tick
	seen := map[int]bool{}
	for _, c := range r.Compare {
		if !seen[c.Concurrency] {
			seen[c.Concurrency] = true
			ticks = append(ticks, plot.Tick{Value: float64(c.Concurrency), Label: strconv.Itoa(c.Concurrency)})
		}
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.Y.Label.Text = "events per second"
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	colors := []color.Color{
		color.Gray{Y: 64},
		color.RGBA{R: 31, G: 119, B: 180, A: 255},
		color.RGBA{R: 214, G: 39, B: 40, A: 255},
		color.RGBA{R: 44, G: 160, B: 44, A: 255},
		color.RGBA{R: 148, G: 103, B: 189, A: 255},
	}
	top := 0.0
	for i, sys := range []string{"baseline", "ingress", "end-to-end", "end-to-end-kv", "end-to-end-prefetch"} {
		var pts plotter.XYs
		for _, c := range r.Compare {
			if c.System == sys && c.EventsPerS > 0 {
				pts = append(pts, plotter.XY{X: float64(c.Concurrency), Y: c.EventsPerS})
				top = max(top, c.EventsPerS)
			}
		}
		if len(pts) == 0 {
			continue
		}
		l, sc, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		l.Color, sc.Color = colors[i], colors[i]
		l.Width = vg.Points(1.5)
		sc.Shape = draw.CircleGlyph{}
		p.Add(l, sc)
		p.Legend.Add(sys, l, sc)
	}
	p.Y.Max = top * 1.3 // room for the legend
	return p.Save(9*vg.Inch, 5.5*vg.Inch, path)
}

// plot draws the ack latency percentiles of every step against the offered
// load, one line per body shape and percentile, on a log scale.
func (r *Results) plot(path string) error {
	p := plot.New()
	var peaks []string
	for _, in := range r.Ingress {
		peaks = append(peaks, fmt.Sprintf("%s %.0f req/s", in.Name, in.Peak.RPS))
	}
	p.Title.Text = fmt.Sprintf("wagate ingress: ack latency vs offered load (%d CPUs; peak with %d in flight: %s)",
		r.Machine.CPUs, r.Settings.Concurrency, strings.Join(peaks, ", "))
	p.X.Label.Text = "offered load (% of peak)"
	p.X.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: 25, Label: "25"}, {Value: 50, Label: "50"}, {Value: 75, Label: "75"}, {Value: 100, Label: "100"}})
	p.Y.Label.Text = "ack latency (ms, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.X.Min, p.X.Max = 20, 105
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())

	colors := []color.Color{
		color.RGBA{R: 31, G: 119, B: 180, A: 255},
		color.RGBA{R: 214, G: 39, B: 40, A: 255},
	}
	dashes := [][]vg.Length{nil, {vg.Points(6), vg.Points(3)}, {vg.Points(2), vg.Points(2)}}
	lines, top := 0, 0.0
	for i, in := range r.Ingress {
		for j, q := range []struct {
			name string
			get  func(Percentiles) float64
		}{
			{"p50", func(p Percentiles) float64 { return p.P50 }},
			{"p99", func(p Percentiles) float64 { return p.P99 }},
			{"p99.9", func(p Percentiles) float64 { return p.P999 }},
		} {
			var pts plotter.XYs
			for _, s := range in.Steps {
				if v := q.get(s.Latency); v > 0 {
					pts = append(pts, plotter.XY{X: s.LoadPct, Y: v})
					top = max(top, v)
				}
			}
			if len(pts) == 0 {
				continue
			}
			l, sc, err := plotter.NewLinePoints(pts)
			if err != nil {
				return err
			}
			l.Color, sc.Color = colors[i%len(colors)], colors[i%len(colors)]
			l.Dashes = dashes[j]
			l.Width = vg.Points(1.5)
			sc.Shape = draw.CircleGlyph{}
			p.Add(l, sc)
			lines++
			p.Legend.Add(in.Name+" "+q.name, l, sc)
		}
	}
	if lines == 0 {
		return fmt.Errorf("plot: no latency to draw")
	}
	p.Y.Max = top * 20 // room for the legend above the lines
	target := plotter.NewFunction(func(float64) float64 { return 5 })
	target.Color = color.Gray{Y: 96}
	target.Dashes = []vg.Length{vg.Points(1), vg.Points(3)}
	p.Add(target)
	p.Legend.Add("5 ms: p99 target at 50%", target)
	return p.Save(9*vg.Inch, 5.5*vg.Inch, path)
}

// print writes the readable table of r to w.
func (r *Results) print(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "\nwagate benchmark, %s\n", r.Date)
	fmt.Fprintf(w, "machine: %d × %s, %d MB, Linux %s; %s; Redis %s; nats-server %s\n",
		m.CPUs, m.CPU, m.MemoryMB, m.Kernel, m.Go, m.Redis, m.NATS)
	fmt.Fprintf(w, "command: %s\n", r.Command)
	if m.BusyBefore >= 0.2 {
		fmt.Fprintf(w, "WARNING: other processes used %.2f cores just before the run; the figures are low\n", m.BusyBefore)
	}
	fmt.Fprintf(w, "load: %d requests in flight at peak, %.0f%% of bodies re-sent, %.0fs per step\n",
		r.Settings.Concurrency, r.Settings.DuplicatePct, r.Settings.StepSeconds)
	fmt.Fprintf(w, "other cores: processors used by processes outside the benchmark during a step (figures are low when it is not 0)\n")

	if len(r.Compare) > 0 {
		fmt.Fprintf(w, "\nSIDE BY SIDE (single-event bodies, unique wamids, closed loop of c requests, %.0fs per cell; end to end counts events fully processed by 2 workers)\n", r.Settings.PeakSeconds)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "system\tc\treq/s\tevents/s\t× baseline\tp99 ms\tbacklog\tCPU µs/event\tby process\tother cores\t")
		for _, c := range r.Compare {
			total, _ := c.CPU.PerEvent(c.Events)
			by := ""
			for _, n := range []string{"baseline", "ingress", "worker", "redis", "nats-server", "bench"} {
				if v, ok := c.CPUByProcJ[n]; ok {
					by += fmt.Sprintf("%s %.0f ", n, v)
				}
			}
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.2f\t%.2f\t%d\t%.0f\t%s\t%.2f\t\n", c.System, c.Concurrency, c.RPS, c.EventsPerS, c.Ratio,
				c.Latency.P99, c.Backlog, total, by, c.CPU.Other())
		}
		tw.Flush()
	}

	for _, in := range r.Ingress {
		fmt.Fprintf(w, "\nINGRESS, %s (%d event(s) per body)\n", in.Name, in.EventsPerBody)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "load\toffered req/s\treq/s\tevents/s\tp50 ms\tp99 ms\tp99.9 ms\tmax ms\tdup %\t200s\tother cores\t")
		row := func(name string, s Step) {
			offered := "closed"
			if s.OfferedRPS > 0 {
				offered = fmt.Sprintf("%.0f", s.OfferedRPS)
			}
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f\t%d/%d\t%.2f\t\n", name, offered,
				s.RPS, s.EventsPerS, s.Latency.P50, s.Latency.P99, s.Latency.P999, s.Latency.Max, s.DuplicatePct, s.OK, s.Requests, s.CPU.Other())
		}
		row(fmt.Sprintf("peak (%d in flight)", in.Peak.Workers), in.Peak)
		for _, s := range in.Steps {
			row(fmt.Sprintf("%.0f%%", s.LoadPct), s)
		}
		tw.Flush()
		fmt.Fprintf(w, "cores used at peak: %s\n", in.Peak.CPU)
		fmt.Fprintf(w, "CPU per event at peak: %s; bare loop: %s\n",
			in.Peak.CPU.perEventString(in.Peak.OK*in.EventsPerBody), in.Floor.CPU.perEventString(in.Floor.Events))
		fmt.Fprintf(w, "floor, bare claim+publish loop (%d goroutines, no HTTP): %.0f events/s (p50 %.2f ms, p99 %.2f ms per body)\n",
			in.Floor.Workers, in.Floor.EventsPerS, in.Floor.Latency.P50, in.Floor.Latency.P99)
		fmt.Fprintf(w, "floor, echo handler answering 200 (%d in flight): %.0f req/s (p50 %.2f ms, p99 %.2f ms)\n",
			in.Echo.Workers, in.Echo.RPS, in.Echo.Latency.P50, in.Echo.Latency.P99)
		fmt.Fprintf(w, "cores used by the bare loop: %s\ncores used by the echo run: %s\n", in.Floor.CPU, in.Echo.CPU)
		fmt.Fprintf(w, "ingress / bare loop: %.2f (events/s)   ingress / echo: %.2f (req/s)   ingress peak RSS: %.1f MiB\n",
			in.FloorRatio, in.EchoRatio, float64(in.PeakRSS)/(1<<20))
		if b := in.Baseline50; b != nil {
			fmt.Fprintf(w, "hand-written baseline at the 50%% step's rate (%.0f req/s): p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, %d/%d answered 200; cores used: %s\n",
				b.OfferedRPS, b.Latency.P50, b.Latency.P99, b.Latency.P999, b.OK, b.Requests, b.CPU)
		}
	}

	if wk := r.Worker; wk != nil {
		fmt.Fprintf(w, "\nWORKER (%d in flight)\n", wk.Worker.Concurrency)
		fmt.Fprintf(w, "no-op handler (lock, done mark, Ack): %.0f events/s over %d events\n", wk.Worker.EventsPerS, wk.Worker.Events)
		fmt.Fprintf(w, "bare consumer (Ack only, as the worker):   %.0f events/s over %d events\n", wk.Bare.EventsPerS, wk.Bare.Events)
		fmt.Fprintf(w, "worker / bare consumer: %.2f\n", wk.Ratio)
		fmt.Fprintf(w, "cores used: worker run %s; bare consumer run %s\n", wk.Worker.CPU, wk.Bare.CPU)
		fmt.Fprintf(w, "CPU per event: worker %s; bare consumer %s\n",
			wk.Worker.CPU.perEventString(wk.Worker.Events), wk.Bare.CPU.perEventString(wk.Bare.Events))
		if p, bp := wk.Prefetched, wk.BarePrefetched; p.Events > 0 {
			fmt.Fprintf(w, "with prefetch %d (both pulling ahead): worker %.0f events/s, bare consumer %.0f events/s, worker / bare consumer: %.2f\n",
				p.Concurrency, p.EventsPerS, bp.EventsPerS, wk.PrefetchedRatio)
			fmt.Fprintf(w, "CPU per event with prefetch: worker %s; bare consumer %s\n",
				p.CPU.perEventString(p.Events), bp.CPU.perEventString(bp.Events))
		}
		if sl := wk.StoreLoop; sl.Events > 0 {
			fmt.Fprintf(w, "store loop (the bare consumer plus one Begin and one Finish call per group, no worker): %.0f events/s; worker / store loop: %.2f; store loop / bare consumer: %.2f\n",
				sl.EventsPerS, wk.StoreLoopRatio, wk.StoreLoopOverBare)
			fmt.Fprintf(w, "CPU per event in the store loop: %s\n", sl.CPU.perEventString(sl.Events))
		}
		e := wk.EndToEnd
		fmt.Fprintf(w, "end to end at %d req/s (%d events handled): request → handler start p50 %.2f ms, p99 %.2f ms; ingress receipt → handler start p50 %.2f ms, p99 %.2f ms\n",
			e.RPS, e.Handled, e.FromRequest.P50, e.FromRequest.P99, e.FromReceipt.P50, e.FromReceipt.P99)
	}

	if mem := r.Memory; mem != nil {
		fmt.Fprintf(w, "\nREDIS MEMORY (%d claims, default 168h horizon, used_memory delta)\n", mem.Claims)
		fmt.Fprintf(w, "wagate (dedupe.Redis, Claim + Accept): %.1f bytes/claim   e.g. %s = %q\n", mem.Wagate, mem.SampleKey, mem.SampleValue)
		fmt.Fprintf(w, "naive (whatsapp:msg:<%d-char wamid> = processed, EX 604800): %.1f bytes/claim\n", mem.WamidLen, mem.Naive)
		fmt.Fprintf(w, "wagate / naive: %.2f\n", mem.Ratio)
	}

	fmt.Fprintf(w, "\nTARGETS\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, t := range r.Targets {
		verdict := "met"
		if !t.Met {
			verdict = "MISSED"
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%s\t%s\n", t.Name, t.Value, t.Goal, verdict)
	}
	tw.Flush()
}
