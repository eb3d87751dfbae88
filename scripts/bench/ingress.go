package main

import (
	"context"
	"fmt"
	"time"
)

// benchIngress measures the ingress for bodies of perBody events: the
// closed-loop peak, the two floors, then open-loop steps at 25 to 100 % of
// the peak rate.
func benchIngress(ctx context.Context, e *env, o options, name string, perBody int, logf func(string, ...any)) (Ingress, error) {
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
	}
	rss, err := e.ingress.peakRSS()
	if err != nil {
		return in, err
	}
	in.PeakRSS = rss
	return in, nil
}
