package deployments

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	promql "github.com/prometheus/prometheus/promql/parser"
)

// metricKind is how a series may be used in PromQL.
type metricKind int

const (
	kindGauge   metricKind = iota // also the NATS exporter's readings
	kindCounter                   // rate, increase
	kindBucket                    // a histogram's _bucket series: histogram_quantile, with le
)

// metric is one series name that a dashboard or an alert may query.
type metric struct {
	kind   metricKind
	labels []string
	// values lists, per label, the only values the code ever sets (from its
	// constants); a label absent here takes any value.
	values map[string][]string
}

// scrapeLabels are added by Prometheus to every scraped series.
var scrapeLabels = []string{"job", "instance"}

// natsExporterMetrics are the JetStream series of prometheus-nats-exporter
// run with -jsz=all, with their labels: collector/jsz.go of
// github.com/nats-io/prometheus-nats-exporter (namespace "jetstream").
func natsExporterMetrics() map[string]metric {
	server := []string{"server_id", "server_name", "cluster", "domain", "meta_leader", "is_meta_leader"}
	stream := append(slices.Clone(server), "account", "account_id", "stream_name", "stream_leader", "is_stream_leader")
	consumer := append(slices.Clone(stream), "consumer_name", "consumer_leader", "is_consumer_leader", "consumer_desc", "consumer_created")
	m := map[string]metric{}
	for _, n := range []string{"jetstream_disabled", "total_streams", "total_consumers", "total_messages", "total_message_bytes", "max_memory", "max_storage"} {
		m["jetstream_server_"+n] = metric{kind: kindGauge, labels: server}
	}
	for _, n := range []string{"total_messages", "total_bytes", "first_seq", "last_seq", "consumer_count"} {
		m["jetstream_stream_"+n] = metric{kind: kindGauge, labels: stream}
	}
	for _, n := range []string{"delivered_consumer_seq", "delivered_stream_seq", "num_ack_pending", "num_redelivered", "num_waiting", "num_pending", "ack_floor_stream_seq", "ack_floor_consumer_seq"} {
		m["jetstream_consumer_"+n] = metric{kind: kindGauge, labels: consumer}
	}
	return m
}

var catalogue = sync.OnceValues(buildCatalogue)

// metricsCatalogue returns every series the dashboard and the alerts may
// query: wagate's own, read from the source of ingest and worker, and the
// NATS exporter's.
func metricsCatalogue(t *testing.T) map[string]metric {
	t.Helper()
	m, err := catalogue()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func buildCatalogue() (map[string]metric, error) {
	all := natsExporterMetrics()
	for _, pkg := range []struct {
		dir    string
		values map[string]map[string]string // metric name → label → constant name prefix
	}{
		{"../ingest", map[string]map[string]string{"wagate_ingest_events_total": {"outcome": "outcome"}}},
		{"../worker", map[string]map[string]string{"wagate_worker_processed_total": {"outcome": "outcome"}, "wagate_worker_dead_letters_total": {"cause": "cause"}}},
	} {
		found, consts, err := goMetrics(pkg.dir)
		if err != nil {
			return nil, err
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("no metrics found in %s", pkg.dir)
		}
		for name, labelPrefix := range pkg.values {
			series, ok := found[name]
			if !ok {
				return nil, fmt.Errorf("%s: metric %s not found", pkg.dir, name)
			}
			series.values = map[string][]string{}
			for label, prefix := range labelPrefix {
				series.values[label] = consts[prefix]
				if len(consts[prefix]) == 0 {
					return nil, fmt.Errorf("%s: no %s* constants for %s{%s}", pkg.dir, prefix, name, label)
				}
			}
			found[name] = series
		}
		for name, s := range found {
			all[name] = s
		}
	}
	return all, nil
}

// goMetrics reads the Prometheus collectors a package declares
// (prometheus.NewCounter, NewCounterVec, NewGauge, NewHistogramVec, ... with
// literal options) and its string constants grouped by name prefix
// ("outcome", "cause").
func goMetrics(dir string) (map[string]metric, map[string][]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, nil, err
	}
	fset := token.NewFileSet()
	out := map[string]metric{}
	consts := map[string][]string{}
	var errs []error
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			return nil, nil, err
		}
		ast.Inspect(file, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ValueSpec:
				for i, name := range n.Names {
					if i >= len(n.Values) {
						break
					}
					lit, ok := n.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					v, _ := strconv.Unquote(lit.Value)
					for _, prefix := range []string{"outcome", "cause"} {
						if strings.HasPrefix(name.Name, prefix) {
							consts[prefix] = append(consts[prefix], v)
						}
					}
				}
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "prometheus" {
					return true
				}
				var kind metricKind
				switch strings.TrimSuffix(sel.Sel.Name, "Vec") {
				case "NewCounter":
					kind = kindCounter
				case "NewGauge":
					kind = kindGauge
				case "NewHistogram":
					kind = kindBucket
				default:
					return true
				}
				name, labelNames, err := collectorLiteral(n)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %v", fset.Position(n.Pos()), err))
					return true
				}
				if kind == kindBucket {
					out[name+"_bucket"] = metric{kind: kindBucket, labels: append(slices.Clone(labelNames), "le")}
					out[name+"_sum"] = metric{kind: kindCounter, labels: labelNames}
					out[name+"_count"] = metric{kind: kindCounter, labels: labelNames}
				} else {
					out[name] = metric{kind: kind, labels: labelNames}
				}
			}
			return true
		})
	}
	return out, consts, errors.Join(errs...)
}

// collectorLiteral returns the full name and the label names of a
// prometheus.NewX(XOpts{Namespace, Subsystem, Name}, []string{...}) call.
func collectorLiteral(call *ast.CallExpr) (string, []string, error) {
	if len(call.Args) == 0 {
		return "", nil, errors.New("collector without options")
	}
	opts, ok := call.Args[0].(*ast.CompositeLit)
	if !ok {
		return "", nil, errors.New("collector options are not a literal")
	}
	parts := map[string]string{}
	for _, e := range opts.Elts {
		kv, ok := e.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		key, _ := kv.Key.(*ast.Ident)
		lit, ok := kv.Value.(*ast.BasicLit)
		if key == nil || !ok || lit.Kind != token.STRING {
			continue
		}
		parts[key.Name], _ = strconv.Unquote(lit.Value)
	}
	if parts["Name"] == "" {
		return "", nil, errors.New("collector without a literal Name")
	}
	var name []string
	for _, k := range []string{"Namespace", "Subsystem", "Name"} {
		if parts[k] != "" {
			name = append(name, parts[k])
		}
	}
	var labelNames []string
	if len(call.Args) > 1 {
		list, ok := call.Args[1].(*ast.CompositeLit)
		if !ok {
			return "", nil, errors.New("label names are not a literal")
		}
		for _, e := range list.Elts {
			lit, ok := e.(*ast.BasicLit)
			if !ok {
				return "", nil, errors.New("label name is not a literal")
			}
			l, _ := strconv.Unquote(lit.Value)
			labelNames = append(labelNames, l)
		}
	}
	return strings.Join(name, "_"), labelNames, nil
}

// promqlParser parses the expressions of the dashboard and the alert rules.
var promqlParser = promql.NewParser(promql.Options{})

// checkPromQL parses expr and checks it against the catalogue: every metric
// exists; every label it matches or groups by is one the metric has; every
// label value matched exactly is one the code sets (outcome, cause); rate and
// increase only read counters; histogram_quantile reads a _bucket series
// grouped by le. It returns the parsed expression.
func checkPromQL(cat map[string]metric, expr string) (promql.Expr, error) {
	e, err := promqlParser.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var errs []error
	promql.Inspect(e, func(node promql.Node, _ []promql.Node) error {
		switch n := node.(type) {
		case *promql.VectorSelector:
			errs = append(errs, checkSelector(cat, n)...)
		case *promql.Call:
			switch n.Func.Name {
			case "rate", "increase", "irate":
				for _, vs := range selectors(n.Args[0]) {
					if m, ok := cat[vs.Name]; ok && m.kind == kindGauge {
						errs = append(errs, fmt.Errorf("%s(%s): %s is a gauge, not a counter", n.Func.Name, vs.Name, vs.Name))
					}
				}
			case "histogram_quantile":
				agg, ok := n.Args[1].(*promql.AggregateExpr)
				if !ok || agg.Without || !slices.Contains(agg.Grouping, "le") {
					errs = append(errs, fmt.Errorf("histogram_quantile over %s: aggregate by (le, ...) first", n.Args[1]))
				}
				for _, vs := range selectors(n.Args[1]) {
					if m, ok := cat[vs.Name]; ok && m.kind != kindBucket {
						errs = append(errs, fmt.Errorf("histogram_quantile over %s: not a histogram's _bucket series", vs.Name))
					}
				}
			}
		case *promql.AggregateExpr:
			have := slices.Clone(scrapeLabels)
			for _, vs := range selectors(n.Expr) {
				have = append(have, cat[vs.Name].labels...)
			}
			for _, g := range n.Grouping {
				if !slices.Contains(have, g) {
					errs = append(errs, fmt.Errorf("%s by (%s): no series below has the label %q", n.Op, strings.Join(n.Grouping, ", "), g))
				}
			}
		}
		return nil
	})
	return e, errors.Join(errs...)
}

// checkSelector checks one selector's metric and matchers.
func checkSelector(cat map[string]metric, vs *promql.VectorSelector) []error {
	m, ok := cat[vs.Name]
	if !ok {
		return []error{fmt.Errorf("metric %q: exported by neither wagate nor prometheus-nats-exporter", vs.Name)}
	}
	var errs []error
	for _, lm := range vs.LabelMatchers {
		if lm.Name == model.MetricNameLabel {
			continue
		}
		if !slices.Contains(m.labels, lm.Name) && !slices.Contains(scrapeLabels, lm.Name) {
			errs = append(errs, fmt.Errorf("%s{%s}: the metric has no label %q (it has %v)", vs.Name, lm, lm.Name, m.labels))
			continue
		}
		allowed, enumerated := m.values[lm.Name]
		if !enumerated {
			continue
		}
		switch lm.Type {
		case labels.MatchEqual:
			if !slices.Contains(allowed, lm.Value) {
				errs = append(errs, fmt.Errorf("%s{%s}: %q is never set (values: %v)", vs.Name, lm, lm.Value, allowed))
			}
		case labels.MatchRegexp:
			if !slices.ContainsFunc(allowed, lm.Matches) {
				errs = append(errs, fmt.Errorf("%s{%s}: matches none of %v", vs.Name, lm, allowed))
			}
		}
	}
	return errs
}

// selectors returns the vector selectors below n.
func selectors(n promql.Node) []*promql.VectorSelector {
	var out []*promql.VectorSelector
	promql.Inspect(n, func(node promql.Node, _ []promql.Node) error {
		if vs, ok := node.(*promql.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

// TestCheckPromQL shows that the checker catches what it is for.
func TestCheckPromQL(t *testing.T) {
	cat := metricsCatalogue(t)
	for _, name := range []string{
		"wagate_ingest_requests_total", "wagate_ingest_events_total", "wagate_ingest_fallback_identities_total",
		"wagate_ingest_ack_duration_seconds_bucket", "wagate_ingest_claim_duration_seconds_bucket", "wagate_ingest_publish_duration_seconds_bucket",
		"wagate_worker_processed_total", "wagate_worker_handler_duration_seconds_bucket", "wagate_worker_dead_letters_total",
		"wagate_worker_redeliveries_total", "wagate_worker_busy_naks_total", "wagate_worker_in_flight",
	} {
		if _, ok := cat[name]; !ok {
			t.Errorf("catalogue lacks %s", name)
		}
	}
	if got := cat["wagate_ingest_events_total"].values["outcome"]; !slices.Equal(slices.Sorted(slices.Values(got)), []string{"accepted", "bypassed", "duplicate", "rejected", "republished"}) {
		t.Errorf("ingest outcomes: %v", got)
	}
	if got := cat["wagate_ingest_ack_duration_seconds_bucket"].labels; !slices.Equal(got, []string{"code", "le"}) {
		t.Errorf("ack histogram labels: %v", got)
	}
	good := []string{
		`sum by (outcome) (rate(wagate_ingest_events_total{outcome=~"duplicate|accepted"}[5m]))`,
		`histogram_quantile(0.99, sum by (le) (rate(wagate_ingest_ack_duration_seconds_bucket{code="200"}[5m])))`,
		`max by (consumer_name) (jetstream_consumer_num_pending{stream_name="WAGATE_EVENTS", job="nats"})`,
	}
	for _, e := range good {
		if _, err := checkPromQL(cat, e); err != nil {
			t.Errorf("%s: %v", e, err)
		}
	}
	bad := map[string]string{
		`rate(wagate_ingest_event_total[5m])`:                                          "exported by neither",
		`rate(wagate_ingest_events_total{outcomes="duplicate"}[5m])`:                   `no label "outcomes"`,
		`rate(wagate_ingest_events_total{outcome="duplicates"}[5m])`:                   "never set",
		`sum by (cause) (rate(wagate_worker_processed_total[5m]))`:                     `has the label "cause"`,
		`rate(wagate_worker_in_flight[5m])`:                                            "is a gauge",
		`histogram_quantile(0.9, rate(wagate_ingest_ack_duration_seconds_bucket[5m]))`: "aggregate by (le",
		`histogram_quantile(0.9, sum by (le) (rate(wagate_ingest_events_total[5m])))`:  "_bucket",
		`sum(rate(wagate_worker_dead_letters_total{cause=~"nothing|never"}[5m]))`:      "matches none",
		`sum(rate(wagate_worker_dead_letters_total[5m])) >`:                            "unexpected end of input",
	}
	for e, want := range bad {
		_, err := checkPromQL(cat, e)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error containing %q", e, err, want)
		}
	}
}
