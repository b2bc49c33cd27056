package install

// This file: the alerting rules of config/prometheus evaluated the way
// Prometheus does (promtool's rule tests, from Go): the rules are parsed and
// validated by rulefmt, input series are written in promtool's notation and
// loaded into Prometheus's test storage, each rule's expression is evaluated by
// the PromQL engine at every evaluation interval, an alert fires once its
// expression has returned the series for `for`, and its annotations are
// expanded by Prometheus's template engine.

import (
	"bytes"
	"context"
	"log/slog"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/template"
	"sigs.k8s.io/yaml"
)

// evalInterval is the rule group's evaluation interval in the tests.
const evalInterval = time.Minute

// epoch is promqltest's time zero: series samples start there.
var epoch = time.Unix(0, 0).UTC()

// loadRules reads config/prometheus/rules.yaml (a PrometheusRule) and parses
// its groups with Prometheus's own rule file parser, which validates every
// expression, duration, label and annotation template.
func loadRules(t *testing.T) map[string]rulefmt.Rule {
	t.Helper()
	var pr struct {
		Spec struct {
			Groups []any `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(readFile(t, filepath.Join(repoRoot, "config", "prometheus", "rules.yaml")), &pr); err != nil {
		t.Fatal(err)
	}
	groups, err := yaml.Marshal(map[string]any{"groups": pr.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	rgs, errs := rulefmt.Parse(groups, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("rules.yaml: %v", err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	rules := map[string]rulefmt.Rule{}
	for _, g := range rgs.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Fatalf("rule %q is not an alert", r.Record)
			}
			rules[r.Alert] = r
		}
	}
	return rules
}

// firingAlert is an alert as a rule test sees it: its labels and expanded annotations.
type firingAlert struct {
	labels      map[string]string
	annotations map[string]string
}

// evalAlert evaluates rule over the series every evalInterval from time zero
// to at and returns the alerts firing at at, sorted by their labels.
func evalAlert(t *testing.T, rule rulefmt.Rule, series string, at time.Duration) []firingAlert {
	t.Helper()
	st := loadSeries(t, series)
	engine := promqltest.NewTestEngine(t, false, 0, 100000)
	activeAt := map[uint64]time.Duration{}
	var last promql.Vector
	for ts := time.Duration(0); ts <= at; ts += evalInterval {
		vec := instantQuery(t, engine, st, rule.Expr, ts)
		seen := map[uint64]bool{}
		for _, s := range vec {
			h := s.Metric.Hash()
			seen[h] = true
			if _, ok := activeAt[h]; !ok {
				activeAt[h] = ts
			}
		}
		for h := range activeAt {
			if !seen[h] {
				delete(activeAt, h)
			}
		}
		last = vec
	}
	var alerts []firingAlert
	for _, s := range last {
		if at-activeAt[s.Metric.Hash()] < time.Duration(rule.For) {
			continue // pending
		}
		b := labels.NewBuilder(s.Metric).Del(model.MetricNameLabel)
		for k, v := range rule.Labels {
			b.Set(k, v)
		}
		b.Set(labels.AlertName, rule.Alert)
		lbls := b.Labels().Map()
		alerts = append(alerts, firingAlert{labels: lbls, annotations: expandAnnotations(t, rule, lbls, s, at)})
	}
	sort.Slice(alerts, func(i, j int) bool {
		return labels.FromMap(alerts[i].labels).String() < labels.FromMap(alerts[j].labels).String()
	})
	return alerts
}

// loadSeries loads series written in promtool's notation, one per line, a
// sample per evalInterval from time zero.
func loadSeries(t *testing.T, series string) storage.Queryable {
	t.Helper()
	var b strings.Builder
	b.WriteString("load " + evalInterval.String() + "\n")
	for _, line := range strings.Split(strings.TrimSpace(series), "\n") {
		b.WriteString("  " + strings.TrimSpace(line) + "\n")
	}
	return promqltest.LoadedStorage(t, b.String())
}

// instantQuery evaluates expr at ts (from time zero).
func instantQuery(t *testing.T, engine *promql.Engine, st storage.Queryable, expr string, ts time.Duration) promql.Vector {
	t.Helper()
	q, err := engine.NewInstantQuery(context.Background(), st, nil, expr, epoch.Add(ts))
	if err != nil {
		t.Fatalf("query %q: %v", expr, err)
	}
	defer q.Close()
	res := q.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("query %q at %s: %v", expr, ts, res.Err)
	}
	switch v := res.Value.(type) {
	case promql.Vector:
		return v
	case promql.Scalar:
		return promql.Vector{{T: v.T, F: v.V}}
	default:
		t.Fatalf("query %q returned a %s", expr, res.Value.Type())
		return nil
	}
}

// expandAnnotations expands the rule's annotations as Prometheus does for a
// firing alert; an error or a missing value fails the test.
func expandAnnotations(t *testing.T, rule rulefmt.Rule, lbls map[string]string, s promql.Sample, at time.Duration) map[string]string {
	t.Helper()
	const defs = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
	data := template.AlertTemplateData(lbls, nil, "", s)
	out := map[string]string{}
	for k, text := range rule.Annotations {
		exp := template.NewTemplateExpander(context.Background(), defs+text, "__alert_"+rule.Alert, data,
			model.TimeFromUnixNano(epoch.Add(at).UnixNano()), nil, &url.URL{}, nil)
		v, err := exp.Expand()
		if err != nil {
			t.Fatalf("%s annotation %s: %v", rule.Alert, k, err)
		}
		if strings.Contains(v, "<no value>") {
			t.Errorf("%s annotation %s expands to %q", rule.Alert, k, v)
		}
		out[k] = v
	}
	return out
}

// exprMetricNames returns the metric names an expression selects.
func exprMetricNames(t *testing.T, expr string) []string {
	t.Helper()
	node, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		t.Fatalf("parse %q: %v", expr, err)
	}
	var names []string
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			for _, m := range vs.LabelMatchers {
				if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
					names = append(names, m.Value)
				}
			}
		}
		return nil
	})
	return names
}

// metricsReadByRulesAndDashboard are the metric names the alerts and the
// dashboard's panels select, sorted and unique.
func metricsReadByRulesAndDashboard(t *testing.T) []string {
	t.Helper()
	set := map[string]bool{}
	for _, r := range loadRules(t) {
		for _, n := range exprMetricNames(t, r.Expr) {
			set[n] = true
		}
	}
	for _, p := range dashboardQueries(t) {
		for _, n := range exprMetricNames(t, p.expr) {
			set[n] = true
		}
	}
	var names []string
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// promFormat prints alert labels in Prometheus's notation for messages.
func promFormat(alerts []firingAlert) string {
	var b bytes.Buffer
	for _, a := range alerts {
		b.WriteString(labels.FromMap(a.labels).String() + "\n")
	}
	return b.String()
}
