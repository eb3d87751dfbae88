package main

import (
	"context"
	"fmt"
	"time"
)

// benchIngress measures the ingress for bodies of perBody events: the
// closed-loop peak, the two floors, then open-loop steps at 25 to 100 % of
// the peak rate; for single events, also the hand-written baseline (see
// compare.go) at the 50 % step's rate, the latency floor of that step. dir
// holds the baseline's log.
func benchIngress(ctx context.Context, e *env, o options, dir, name string, perBody int, logf func(string, ...any)) (Ingress, error) {
	in := Ingress{Name: name, EventsPerBody: perBody}
	url := e.ingressURL + "/webhooks/whatsapp"
	closed := func(target string, d time.Duration) Step {
		m := startCPU(e.pids())
		st := attack{url: target, load: newWorkload(perBody, o.dup, benchSecret, false), workers: o.concurrency, duration: d}.run(ctx)
		st.CPU = m.stop()
		return st
	}
	if err := e.reset(ctx); err != nil {
		return in, err
	}
	logf("ingress %s: warm-up", name)
	if w := closed(url, min(time.Second, o.peakDuration)); w.OK == 0 {
		return in, fmt.Errorf("warm-up: no request answered 200: %v", w.Errors)
	}

	if err := e.reset(ctx); err != nil {
		return in, err
	}
	in.Peak = closed(url, o.peakDuration)
	logf("ingress %s: peak %.0f req/s, %.0f events/s (%d in flight)", name, in.Peak.RPS, in.Peak.EventsPerS, o.concurrency)
	if in.Peak.OK == 0 {
		return in, fmt.Errorf("peak: no request answered 200: %v", in.Peak.Errors)
	}

	if err := e.reset(ctx); err != nil {
		return in, err
	}
	const maxFloorEvents = 60000
	bodies := int(in.Peak.RPS * o.peakDuration.Seconds() * 3)
	bodies = max(50, min(bodies, maxFloorEvents/perBody))
	ops, err := prepareFloor(newWorkload(perBody, o.dup, benchSecret, false), bodies, e.sc.Events)
	if err != nil {
		return in, err
	}
	m := startCPU(e.pids())
	if in.Floor, err = runFloor(ctx, e.store, e.js, ops, o.concurrency, o.peakDuration); err != nil {
		return in, fmt.Errorf("bare loop: %w", err)
	}
	in.Floor.CPU = m.stop()
	logf("ingress %s: bare loop %.0f events/s", name, in.Floor.EventsPerS)

	in.Echo = closed(e.echoURL+"/webhooks/whatsapp", o.peakDuration)
	logf("ingress %s: echo handler %.0f req/s", name, in.Echo.RPS)
	if in.Floor.EventsPerS > 0 {
		in.FloorRatio = in.Peak.EventsPerS / in.Floor.EventsPerS
	}
	if in.Echo.RPS > 0 {
		in.EchoRatio = in.Peak.RPS / in.Echo.RPS
	}

	for _, pct := range []float64{25, 50, 75, 100} {
		if err := e.reset(ctx); err != nil {
			return in, err
		}
		rate := max(1, int(in.Peak.RPS*pct/100+0.5))
		m := startCPU(e.pids())
		s := attack{url: url, load: newWorkload(perBody, o.dup, benchSecret, false), rate: rate, workers: o.concurrency, duration: o.duration}.run(ctx)
		s.CPU = m.stop()
		s.LoadPct = pct
		in.Steps = append(in.Steps, s)
		logf("ingress %s: %3.0f%% (%d req/s): %.0f req/s, p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, %d/%d answered 200",
			name, pct, rate, s.RPS, s.Latency.P50, s.Latency.P99, s.Latency.P999, s.OK, s.Requests)
		if ctx.Err() != nil {
			return in, ctx.Err()
		}
		if pct == 50 && perBody == 1 {
			base, err := baselineAt(ctx, e, o, dir, rate)
			if err != nil {
				return in, fmt.Errorf("baseline at %d req/s: %w", rate, err)
			}
			in.Baseline50 = &base
			logf("ingress %s: baseline at %d req/s: p50 %.2f ms, p99 %.2f ms, %d/%d answered 200",
				name, rate, base.Latency.P50, base.Latency.P99, base.OK, base.Requests)
		}
	}
	rss, err := e.ingress.peakRSS()
	if err != nil {
		return in, err
	}
	in.PeakRSS = rss
	return in, nil
}

// baselineAt runs the hand-written baseline under the open-loop load of
// single-event bodies at rate requests/s for o.duration.
func baselineAt(ctx context.Context, e *env, o options, dir string, rate int) (Step, error) {
	if err := e.reset(ctx); err != nil {
		return Step{}, err
	}
	p, url, err := startBaseline(ctx, dir, e.redisURL, e.natsURL)
	if err != nil {
		return Step{}, err
	}
	defer p.stop()
	pids := e.pids()
	pids["baseline"] = p.cmd.Process.Pid
	m := startCPU(pids)
	s := attack{url: url + "/webhooks/whatsapp", load: newWorkload(1, o.dup, benchSecret, false), rate: rate, workers: o.concurrency, duration: o.duration}.run(ctx)
	s.CPU = m.stop()
	s.LoadPct = 50
	return s, nil
}
