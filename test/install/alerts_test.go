package install

// This file: one rule test per alert and situation (promtool's alert_rule_test
// shape), from testdata/alert-tests.yaml: input series in promtool's notation
// (a sample per minute from time zero; timestamps metrics hold seconds since
// time zero), the time of the check, and the alerts that fire then.

import (
	"maps"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/prometheus/model/rulefmt"
	"sigs.k8s.io/yaml"
)

// alertTest is the rule tests of one alert (testdata/alert-tests.yaml): a
// situation in which it fires, with these labels (alertname aside) and this
// expanded summary, and situations in which it must not.
type alertTest struct {
	Fires struct {
		situation
		Labels  map[string]string `json:"labels"`
		Summary string            `json:"summary"`
	} `json:"fires"`
	Quiet map[string]situation `json:"quiet"`
}

// situation is input series in promtool's notation and the time of the check.
type situation struct {
	Series string `json:"series"`
	At     string `json:"at"`
}

// loadAlertTests reads testdata/alert-tests.yaml, alert by alert.
func loadAlertTests(t *testing.T) map[string]alertTest {
	t.Helper()
	tests := map[string]alertTest{}
	if err := yaml.UnmarshalStrict(readFile(t, filepath.Join("testdata", "alert-tests.yaml")), &tests); err != nil {
		t.Fatal(err)
	}
	return tests
}

func TestAlertRules(t *testing.T) {
	rules := loadRules(t)
	for alert, tc := range loadAlertTests(t) {
		rule, ok := rules[alert]
		if !ok {
			t.Errorf("no alert %s in config/prometheus/rules.yaml", alert)
			continue
		}
		t.Run(alert+" fires", func(t *testing.T) {
			want := map[string]string{"alertname": alert}
			maps.Copy(want, tc.Fires.Labels)
			got := checkAlert(t, rule, tc.Fires.situation, []map[string]string{want})
			if len(got) > 0 && got[0].annotations["summary"] != tc.Fires.Summary {
				t.Errorf("summary = %q, want %q", got[0].annotations["summary"], tc.Fires.Summary)
			}
		})
		for name, quiet := range tc.Quiet {
			t.Run(alert+" stays quiet "+name, func(t *testing.T) { checkAlert(t, rule, quiet, nil) })
		}
	}
}

// checkAlert evaluates the rule in the situation and fails unless the alerts
// firing then have the labels of want; it returns them.
func checkAlert(t *testing.T, rule rulefmt.Rule, s situation, want []map[string]string) []firingAlert {
	t.Helper()
	at, err := time.ParseDuration(s.At)
	if err != nil {
		t.Fatal(err)
	}
	got := evalAlert(t, rule, strings.TrimSpace(s.Series), at)
	var gotLabels []map[string]string
	for _, a := range got {
		gotLabels = append(gotLabels, a.labels)
	}
	if diff := cmp.Diff(want, gotLabels); diff != "" {
		t.Errorf("alerts firing at %s (-want +got):\n%s\ngot:\n%s", at, diff, promFormat(got))
	}
	return got
}

// TestEveryAlertIsTestedAndHasARunbook: each alert has a test in which it
// fires and one in which it does not, a runbook_url, and a runbook section in
// docs/operations.md that the URL's anchor names.
func TestEveryAlertIsTestedAndHasARunbook(t *testing.T) {
	docs := string(readFile(t, filepath.Join(repoRoot, "docs", "operations.md")))
	headings := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#+ +(.+)$`).FindAllStringSubmatch(docs, -1) {
		headings[githubAnchor(m[1])] = true
	}
	tests := loadAlertTests(t)
	for alert, rule := range loadRules(t) {
		tc, fires := tests[alert]
		if quiet := len(tc.Quiet) > 0; !fires || !quiet {
			t.Errorf("%s: needs a rule test where it fires (%v) and one where it does not (%v)", alert, fires, quiet)
		}
		u := rule.Annotations["runbook_url"]
		anchor := u[strings.LastIndex(u, "#")+1:]
		if !strings.HasSuffix(strings.TrimSuffix(u, "#"+anchor), "/docs/operations.md") || anchor != strings.ToLower(alert) {
			t.Errorf("%s: runbook_url %q does not point at docs/operations.md#%s", alert, u, strings.ToLower(alert))
		}
		if !headings[anchor] {
			t.Errorf("%s: docs/operations.md has no heading for #%s", alert, anchor)
		}
	}
}

// githubAnchor is the anchor GitHub gives a Markdown heading.
func githubAnchor(heading string) string {
	s := strings.ToLower(strings.TrimSpace(heading))
	s = regexp.MustCompile(`[^a-z0-9 _-]`).ReplaceAllString(s, "")
	return strings.ReplaceAll(s, " ", "-")
}

// TestMetricsReadAreDefined: every metric an alert or a panel reads is defined
// by the operator's code (controllers/metrics*.go) or is one of
// controller-runtime's; TestScopedInstall checks them against a real scrape.
func TestMetricsReadAreDefined(t *testing.T) {
	var src strings.Builder
	paths, _ := filepath.Glob(filepath.Join(repoRoot, "controllers", "metrics*.go"))
	for _, p := range paths {
		if !strings.HasSuffix(p, "_test.go") {
			src.Write(readFile(t, p))
		}
	}
	controllerRuntime := map[string]bool{"controller_runtime_reconcile_total": true, "workqueue_depth": true}
	for _, name := range metricsReadByRulesAndDashboard(t) {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if !controllerRuntime[name] && !strings.Contains(src.String(), `"`+base+`"`) {
			t.Errorf("%s is read by an alert or panel but defined nowhere in controllers/metrics*.go", name)
		}
	}
}
