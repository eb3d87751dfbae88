package deployments

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/prometheus/common/model"
	promql "github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/wagate/wagate/messages/streams"
)

// ruleFile is a Prometheus rule file, field for field
// (https://prometheus.io/docs/prometheus/latest/configuration/recording_rules/#rule_group):
// decoded strictly, an unknown or misspelt field fails.
type ruleFile struct {
	Groups []ruleGroup `json:"groups"`
}

type ruleGroup struct {
	Name        string            `json:"name"`
	Interval    string            `json:"interval,omitempty"`
	QueryOffset string            `json:"query_offset,omitempty"`
	Limit       int               `json:"limit,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Rules       []rule            `json:"rules"`
}

type rule struct {
	Record        string            `json:"record,omitempty"`
	Alert         string            `json:"alert,omitempty"`
	Expr          string            `json:"expr"`
	For           string            `json:"for,omitempty"`
	KeepFiringFor string            `json:"keep_firing_for,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// templateFuncs names the functions of Prometheus's alert templates
// (https://prometheus.io/docs/prometheus/latest/configuration/template_reference/),
// so that a template using any other fails to parse. They return their
// argument's text: only parsing and field access are checked.
var templateFuncs = func() template.FuncMap {
	m := template.FuncMap{}
	for _, name := range []string{
		"humanize", "humanize1024", "humanizeDuration", "humanizePercentage", "humanizeTimestamp",
		"title", "toUpper", "toLower", "safeHtml", "stripPort", "stripDomain", "parseDuration",
		"toTime", "toDuration", "urlUnescape", "graphLink", "tableLink", "strvalue", "label", "value", "first",
	} {
		m[name] = func(v any) string { return fmt.Sprint(v) }
	}
	m["match"] = func(string, string) bool { return true }
	m["reReplaceAll"] = func(_, repl, _ string) string { return repl }
	m["query"] = func(string) []any { return nil }
	return m
}()

// templateDefs are the variables Prometheus defines before every alert template.
const templateDefs = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$value := .Value}}"

var labelRef = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)

func TestAlertRules(t *testing.T) {
	raw, err := os.ReadFile("prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.UnmarshalStrict(raw, &f); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	cat := metricsCatalogue(t)
	alerts := map[string]rule{}
	for _, g := range f.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: needs a name and rules", g.Name)
		}
		for _, r := range g.Rules {
			if r.Alert == "" || r.Record != "" {
				t.Errorf("group %s: %+v: want alerting rules only", g.Name, r)
				continue
			}
			if _, dup := alerts[r.Alert]; dup {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			alerts[r.Alert] = r
			checkAlert(t, cat, r)
		}
	}
	for _, name := range []string{"WagateDuplicateRateHigh", "WagateDLQGrowing", "WagateConsumerLag", "WagateIngress5xx", "WagateRedisBypass", "WagateFallbackIdentities"} {
		if _, ok := alerts[name]; !ok {
			t.Errorf("alert %s is missing", name)
		}
	}

	// The duplicate-rate alert: duplicates over all events, above 5%, for 10 minutes.
	dup := alerts["WagateDuplicateRateHigh"]
	if e, err := promqlParser.ParseExpr(dup.Expr); err == nil {
		if !hasThreshold(e, 0.05) {
			t.Errorf("WagateDuplicateRateHigh: no comparison > 0.05 in %s", dup.Expr)
		}
		if !matches(e, "wagate_ingest_events_total", "outcome", "duplicate") {
			t.Errorf("WagateDuplicateRateHigh: does not read outcome=\"duplicate\"")
		}
	}
	if dup.For != "10m" {
		t.Errorf("WagateDuplicateRateHigh: for %q, want 10m", dup.For)
	}
	if a := dup.Annotations["description"] + dup.Annotations["action"]; !strings.Contains(a, "too slowly") {
		t.Errorf("WagateDuplicateRateHigh: the annotations must say that the usual cause is a slow ingress: %q", a)
	}
}

// checkAlert checks one alerting rule: its expression against the metrics,
// its durations, its severity and its annotation templates.
func checkAlert(t *testing.T, cat map[string]metric, r rule) {
	t.Helper()
	if !regexp.MustCompile(`^Wagate[A-Z][A-Za-z0-9]+$`).MatchString(r.Alert) {
		t.Errorf("alert %q: name it Wagate<What>", r.Alert)
	}
	e, err := checkPromQL(cat, r.Expr)
	if err != nil {
		t.Errorf("%s: %v", r.Alert, err)
		return
	}
	if e.Type() != promql.ValueTypeVector {
		t.Errorf("%s: expression is a %s, want a vector", r.Alert, e.Type())
	}
	checkStreamNames(t, r.Alert, e)
	for _, d := range []string{r.For, r.KeepFiringFor} {
		if d == "" {
			continue
		}
		if _, err := model.ParseDuration(d); err != nil {
			t.Errorf("%s: duration %q: %v", r.Alert, d, err)
		}
	}
	if s := r.Labels["severity"]; !slices.Contains([]string{"info", "warning", "critical"}, s) {
		t.Errorf("%s: severity %q, want info, warning or critical", r.Alert, s)
	}
	for _, a := range []string{"summary", "description", "action"} {
		if strings.TrimSpace(r.Annotations[a]) == "" {
			t.Errorf("%s: annotation %q is empty: say what happened and what to do", r.Alert, a)
		}
	}
	grouping, known := outputLabels(e)
	for k, v := range mergeMaps(r.Labels, r.Annotations) {
		tmpl, err := template.New(k).Funcs(templateFuncs).Option("missingkey=zero").Parse(templateDefs + v)
		if err != nil {
			t.Errorf("%s: %s: template: %v", r.Alert, k, err)
			continue
		}
		data := map[string]any{"Labels": map[string]string{}, "ExternalLabels": map[string]string{}, "Value": 0.5}
		if err := tmpl.Execute(new(strings.Builder), data); err != nil {
			t.Errorf("%s: %s: template: %v", r.Alert, k, err)
		}
		for _, m := range labelRef.FindAllStringSubmatch(v, -1) {
			if known && !slices.Contains(grouping, m[1]) {
				t.Errorf("%s: %s uses $labels.%s, but the alert's series only have %v", r.Alert, k, m[1], grouping)
			}
		}
	}
}

// outputLabels returns the labels of the series an expression yields, when
// its outermost aggregation says so (sum by (cause) (...) > 0).
func outputLabels(e promql.Expr) ([]string, bool) {
	for {
		switch n := e.(type) {
		case *promql.ParenExpr:
			e = n.Expr
		case *promql.BinaryExpr:
			e = n.LHS
		case *promql.AggregateExpr:
			if n.Without {
				return nil, false
			}
			return n.Grouping, true
		default:
			return nil, false
		}
	}
}

// hasThreshold reports whether e compares something with > v.
func hasThreshold(e promql.Expr, v float64) bool {
	found := false
	promql.Inspect(e, func(node promql.Node, _ []promql.Node) error {
		if b, ok := node.(*promql.BinaryExpr); ok && b.Op == promql.GTR {
			if n, ok := b.RHS.(*promql.NumberLiteral); ok && n.Val == v {
				found = true
			}
		}
		return nil
	})
	return found
}

// matches reports whether e selects metric with label="value".
func matches(e promql.Expr, metric, label, value string) bool {
	for _, vs := range selectors(e) {
		if vs.Name != metric {
			continue
		}
		for _, m := range vs.LabelMatchers {
			if m.Name == label && m.Value == value {
				return true
			}
		}
	}
	return false
}

// checkStreamNames checks that the JetStream selectors name wagate's default
// streams and consumer (messages/streams).
func checkStreamNames(t *testing.T, where string, e promql.Expr) {
	t.Helper()
	for _, vs := range selectors(e) {
		for _, m := range vs.LabelMatchers {
			var want []string
			switch m.Name {
			case "stream_name":
				want = []string{streams.DefaultEvents, streams.DefaultDLQ}
			case "consumer_name":
				want = []string{streams.DefaultConsumer}
			default:
				continue
			}
			if !slices.ContainsFunc(want, m.Matches) {
				t.Errorf("%s: %s{%s} matches none of %v", where, vs.Name, m, want)
			}
		}
	}
}

func mergeMaps(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// dashboard is the part of a Grafana dashboard model the test reads.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name    string `json:"name"`
			Type    string `json:"type"`
			Query   string `json:"query"`
			Current struct {
				Value any `json:"value"`
			} `json:"current"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// grafanaIntervals are Grafana's built-in range variables.
var grafanaIntervals = strings.NewReplacer("$__rate_interval", "5m", "${__rate_interval}", "5m", "$__interval", "1m", "${__interval}", "1m", "$__range", "1h", "${__range}", "1h")

// variable matches a dashboard variable reference: $name or ${name}.
var variable = regexp.MustCompile(`\$\{[A-Za-z_]\w*\}|\$[A-Za-z_]\w*`)

func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile("grafana/wagate.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("wagate.json: %v", err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion == 0 {
		t.Errorf("dashboard needs uid, title and schemaVersion: %q %q %d", d.UID, d.Title, d.SchemaVersion)
	}

	vars := map[string]string{}
	hasDatasource := false
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
			hasDatasource = v.Query == "prometheus"
		case "custom", "constant", "textbox":
			vars[v.Name] = fmt.Sprint(v.Current.Value)
		}
	}
	if !hasDatasource {
		t.Error("no Prometheus data source variable: the dashboard would be bound to one data source uid")
	}
	for name, want := range map[string]string{"stream": streams.DefaultEvents, "consumer": streams.DefaultConsumer, "dlq": streams.DefaultDLQ} {
		if vars[name] != want {
			t.Errorf("variable %s = %q, want %q (messages/streams)", name, vars[name], want)
		}
	}
	// expand replaces the dashboard's variables as Grafana does; a name it
	// does not define is left as it is and reported.
	expand := func(s string) string {
		return variable.ReplaceAllStringFunc(grafanaIntervals.Replace(s), func(ref string) string {
			if v, ok := vars[strings.Trim(ref, "${}")]; ok {
				return v
			}
			return ref
		})
	}

	cat := metricsCatalogue(t)
	used := map[string]bool{}
	duplicateRate := false
	ids := map[int]bool{}
	var placed []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
			}
			for _, q := range placed {
				if overlap(p, q) {
					t.Errorf("panels %q and %q overlap", p.Title, q.Title)
				}
			}
			placed = append(placed, p)
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: data source must be ${datasource}", p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q: no queries", p.Title)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if refs[tg.RefID] || tg.RefID == "" {
					t.Errorf("panel %q: refId %q missing or repeated", p.Title, tg.RefID)
				}
				refs[tg.RefID] = true
				expr := expand(tg.Expr)
				if u := variable.FindString(expr); u != "" {
					t.Errorf("panel %q: %s: unknown variable %s", p.Title, tg.Expr, u)
					continue
				}
				e, err := checkPromQL(cat, expr)
				if err != nil {
					t.Errorf("panel %q: %s: %v", p.Title, tg.Expr, err)
					continue
				}
				checkStreamNames(t, "panel "+p.Title, e)
				for _, vs := range selectors(e) {
					used[vs.Name] = true
				}
				duplicateRate = duplicateRate || matches(e, "wagate_ingest_events_total", "outcome", "duplicate")
			}
		}
	}
	walk(d.Panels)
	for _, m := range []string{
		"wagate_ingest_requests_total", "wagate_ingest_ack_duration_seconds_bucket", "wagate_ingest_events_total",
		"wagate_worker_processed_total", "wagate_worker_handler_duration_seconds_bucket", "wagate_worker_dead_letters_total",
		"jetstream_consumer_num_pending", "jetstream_stream_total_messages",
	} {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
	if !duplicateRate {
		t.Error("no panel shows the duplicate rate (outcome=\"duplicate\")")
	}
}

func overlap(a, b panel) bool {
	ga, gb := a.GridPos, b.GridPos
	return ga.X < gb.X+gb.W && gb.X < ga.X+ga.W && ga.Y < gb.Y+gb.H && gb.Y < ga.Y+ga.H
}
