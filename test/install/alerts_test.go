package install

// This file: one rule test per alert and situation (promtool's alert_rule_test
// shape): input series in promtool's notation (a sample per minute from time
// zero; timestamps metrics hold seconds since time zero), the time of the check,
// and the alerts that fire then.

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type alertTest struct {
	alert  string
	series string
	at     time.Duration
	// want are the labels of the firing alerts (alertname and severity included).
	want []map[string]string
	// summary, when set, must be the expanded summary of the first alert.
	summary string
}

func alertLabels(alert, severity string, extra ...string) map[string]string {
	m := map[string]string{"alertname": alert, "severity": severity}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return m
}

var alertTests = map[string]alertTest{
	"ApiTokenNotReady fires after 15 minutes not Ready": {
		alert:   "ApiTokenNotReady",
		series:  `apitoken_apitoken_not_ready_since_timestamp_seconds{namespace="analytics",name="etl",reason="BackendUnavailable"} 0x30`,
		at:      16 * time.Minute,
		want:    []map[string]string{alertLabels("ApiTokenNotReady", "warning", "namespace", "analytics", "name", "etl", "reason", "BackendUnavailable")},
		summary: "ApiToken analytics/etl has not been Ready for 15 minutes.",
	},
	"ApiTokenNotReady waits 15 minutes": {
		alert:  "ApiTokenNotReady",
		series: `apitoken_apitoken_not_ready_since_timestamp_seconds{namespace="analytics",name="etl",reason=""} 0x30`,
		at:     14 * time.Minute,
	},
	"ApiTokenNotReady resolves when the token is Ready again": {
		alert:  "ApiTokenNotReady",
		series: `apitoken_apitoken_not_ready_since_timestamp_seconds{namespace="analytics",name="etl",reason=""} 0x16`,
		at:     25 * time.Minute,
	},
	"ApiTokenStalled fires after 5 minutes": {
		alert:   "ApiTokenStalled",
		series:  `apitoken_apitoken_stalled_since_timestamp_seconds{namespace="analytics",name="etl",reason="BackendRejected"} 60x30`,
		at:      7 * time.Minute,
		want:    []map[string]string{alertLabels("ApiTokenStalled", "warning", "namespace", "analytics", "name", "etl", "reason", "BackendRejected")},
		summary: "ApiToken analytics/etl is Stalled (BackendRejected).",
	},
	"ApiTokenStalled ignores a brief stall": {
		alert:  "ApiTokenStalled",
		series: `apitoken_apitoken_stalled_since_timestamp_seconds{namespace="analytics",name="etl",reason="BackendRejected"} 60x30`,
		at:     5 * time.Minute,
	},
	"TokenBackendNotReady fires after 5 minutes at 0": {
		alert:   "TokenBackendNotReady",
		series:  `apitoken_tokenbackend_ready{name="default",job="apitoken-operator-metrics"} 1 1 0x20`,
		at:      7 * time.Minute,
		want:    []map[string]string{alertLabels("TokenBackendNotReady", "critical", "name", "default", "job", "apitoken-operator-metrics")},
		summary: "TokenBackend default is not Ready.",
	},
	"TokenBackendNotReady is pending for the first 5 minutes": {
		alert:  "TokenBackendNotReady",
		series: `apitoken_tokenbackend_ready{name="default"} 1 1 0x20`,
		at:     6 * time.Minute,
	},
	"TokenBackendNotReady stays quiet for a flapping backend": {
		alert:  "TokenBackendNotReady",
		series: `apitoken_tokenbackend_ready{name="default"} 0 0 0 0 1 0 0 0 0 1 0 0`,
		at:     11 * time.Minute,
	},
	"TokenBackendErrorRate fires above 10% network errors and 5xx for 10 minutes": {
		alert: "TokenBackendErrorRate",
		series: `apitoken_backend_requests_total{namespace="apitoken-system",job="m",call="get",code="200"} 0+60x30
apitoken_backend_requests_total{namespace="apitoken-system",job="m",call="get",code="503"} 0+6x30
apitoken_backend_requests_total{namespace="apitoken-system",job="m",call="create",code="0"} 0+6x30`,
		at:      12 * time.Minute,
		want:    []map[string]string{alertLabels("TokenBackendErrorRate", "warning", "namespace", "apitoken-system", "job", "m")},
		summary: "More than 10% of the calls to token backends fail.",
	},
	"TokenBackendErrorRate is pending for 10 minutes": {
		alert: "TokenBackendErrorRate",
		series: `apitoken_backend_requests_total{namespace="apitoken-system",job="m",call="get",code="200"} 0+60x30
apitoken_backend_requests_total{namespace="apitoken-system",job="m",call="get",code="503"} 0+12x30`,
		at: 10 * time.Minute,
	},
	"TokenBackendErrorRate ignores 429s and a low error rate": {
		alert: "TokenBackendErrorRate",
		series: `apitoken_backend_requests_total{namespace="apitoken-system",job="m",call="get",code="200"} 0+60x30
apitoken_backend_requests_total{namespace="apitoken-system",job="m",call="get",code="429"} 0+60x30
apitoken_backend_requests_total{namespace="apitoken-system",job="m",call="get",code="500"} 0+6x30`,
		at: 20 * time.Minute,
	},
	"ApiTokenRotationOverdue fires 15 minutes after nextRotationTime": {
		alert:   "ApiTokenRotationOverdue",
		series:  `apitoken_next_rotation_timestamp_seconds{namespace="analytics",name="etl"} 3600x90`,
		at:      76 * time.Minute,
		want:    []map[string]string{alertLabels("ApiTokenRotationOverdue", "warning", "namespace", "analytics", "name", "etl")},
		summary: "The scheduled rotation of ApiToken analytics/etl is overdue.",
	},
	"ApiTokenRotationOverdue allows 15 minutes": {
		alert:  "ApiTokenRotationOverdue",
		series: `apitoken_next_rotation_timestamp_seconds{namespace="analytics",name="etl"} 3600x90`,
		at:     74 * time.Minute,
	},
	"ApiTokenRotationOverdue resolves when the rotation moves nextRotationTime": {
		alert:  "ApiTokenRotationOverdue",
		series: `apitoken_next_rotation_timestamp_seconds{namespace="analytics",name="etl"} 3600x62 9000x30`,
		at:     80 * time.Minute,
	},
	"ApiTokenRetiringTokenOverdue fires 15 minutes after deleteAfter": {
		alert:   "ApiTokenRetiringTokenOverdue",
		series:  `apitoken_retiring_token_deadline_timestamp_seconds{namespace="analytics",name="etl"} 600x40`,
		at:      26 * time.Minute,
		want:    []map[string]string{alertLabels("ApiTokenRetiringTokenOverdue", "warning", "namespace", "analytics", "name", "etl")},
		summary: "An old token of ApiToken analytics/etl outlived its deleteAfter.",
	},
	"ApiTokenRetiringTokenOverdue allows 15 minutes": {
		alert:  "ApiTokenRetiringTokenOverdue",
		series: `apitoken_retiring_token_deadline_timestamp_seconds{namespace="analytics",name="etl"} 600x40`,
		at:     24 * time.Minute,
	},
	"ApiTokenRetiringTokenOverdue resolves when the old token is deleted": {
		alert:  "ApiTokenRetiringTokenOverdue",
		series: `apitoken_retiring_token_deadline_timestamp_seconds{namespace="analytics",name="etl"} 600x20`,
		at:     30 * time.Minute,
	},
}

func TestAlertRules(t *testing.T) {
	rules := loadRules(t)
	for name, tc := range alertTests {
		t.Run(name, func(t *testing.T) {
			rule, ok := rules[tc.alert]
			if !ok {
				t.Fatalf("no alert %s in config/prometheus/rules.yaml", tc.alert)
			}
			got := evalAlert(t, rule, tc.series, tc.at)
			var gotLabels []map[string]string
			for _, a := range got {
				gotLabels = append(gotLabels, a.labels)
			}
			if diff := cmp.Diff(tc.want, gotLabels); diff != "" {
				t.Errorf("alerts firing at %s (-want +got):\n%s\ngot:\n%s", tc.at, diff, promFormat(got))
			}
			if tc.summary != "" && len(got) > 0 && got[0].annotations["summary"] != tc.summary {
				t.Errorf("summary = %q, want %q", got[0].annotations["summary"], tc.summary)
			}
		})
	}
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
	for alert, rule := range loadRules(t) {
		fires, quiet := false, false
		for _, tc := range alertTests {
			if tc.alert == alert {
				fires = fires || len(tc.want) > 0
				quiet = quiet || len(tc.want) == 0
			}
		}
		if !fires || !quiet {
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
