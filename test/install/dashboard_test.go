package install

// This file: the Grafana dashboard of config/prometheus: every panel query is
// parsed and evaluated by the PromQL engine over series shaped like the
// operator's, and must return data.

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/promqltest"
)

type panelQuery struct {
	panel, expr string
}

// dashboardQueries returns every target expression of every panel (rows'
// nested panels included).
func dashboardQueries(t *testing.T) []panelQuery {
	t.Helper()
	var dash struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(readFile(t, filepath.Join(repoRoot, "config", "prometheus", "dashboard.json")), &dash); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	var out []panelQuery
	var walk func(raw []json.RawMessage)
	walk = func(raw []json.RawMessage) {
		for _, r := range raw {
			var p struct {
				Title   string            `json:"title"`
				Panels  []json.RawMessage `json:"panels"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			}
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatalf("dashboard.json panel: %v", err)
			}
			for _, tg := range p.Targets {
				out = append(out, panelQuery{panel: p.Title, expr: grafanaVariables.Replace(tg.Expr)})
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	if len(out) == 0 {
		t.Fatal("dashboard.json has no panel queries")
	}
	return out
}

// grafanaVariables replaces Grafana's variables with what Grafana would send.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h", "$namespace", ".*")

// dashboardSeries are an hour of series shaped like the operator's metrics.
const dashboardSeries = `
apitoken_apitokens{namespace="analytics",condition="Ready",status="True"} 3x60
apitoken_apitokens{namespace="analytics",condition="Ready",status="False"} 1x60
apitoken_apitokens{namespace="analytics",condition="Stalled",status="True"} 1x60
apitoken_apitoken_not_ready_since_timestamp_seconds{namespace="analytics",name="a",reason="BackendRejected"} 60x60
apitoken_apitoken_stalled_since_timestamp_seconds{namespace="analytics",name="a",reason="BackendRejected"} 120x60
apitoken_tokenbackend_ready{name="default"} 1x60
apitoken_backend_requests_total{call="get",code="200"} 0+60x60
apitoken_backend_requests_total{call="get",code="503"} 0+1x60
apitoken_backend_request_duration_seconds_bucket{call="get",le="0.01"} 0+50x60
apitoken_backend_request_duration_seconds_bucket{call="get",le="0.1"} 0+60x60
apitoken_backend_request_duration_seconds_bucket{call="get",le="+Inf"} 0+61x60
apitoken_resets_total 0+1x60
apitoken_next_rotation_timestamp_seconds{namespace="analytics",name="a"} 7200x60
apitoken_retiring_tokens{namespace="analytics",name="a"} 1x60
apitoken_retiring_token_deadline_timestamp_seconds{namespace="analytics",name="a"} 3000x60
controller_runtime_reconcile_total{controller="apitoken",result="success"} 0+10x60
workqueue_depth{name="apitoken"} 0x60
`

func TestDashboardQueries(t *testing.T) {
	st := loadSeries(t, dashboardSeries)
	engine := promqltest.NewTestEngine(t, false, 0, 100000)
	for _, q := range dashboardQueries(t) {
		t.Run(q.panel+": "+q.expr, func(t *testing.T) {
			if len(instantQuery(t, engine, st, q.expr, 60*time.Minute)) == 0 {
				t.Errorf("panel %q: %s returns no data over the operator's series", q.panel, q.expr)
			}
		})
	}
}

// TestDashboardVariables: the namespace variable lists a metric the operator serves.
func TestDashboardVariables(t *testing.T) {
	var dash struct {
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(readFile(t, filepath.Join(repoRoot, "config", "prometheus", "dashboard.json")), &dash); err != nil {
		t.Fatal(err)
	}
	for _, v := range dash.Templating.List {
		if v.Name == "namespace" && v.Definition != "label_values(apitoken_apitokens, namespace)" {
			t.Errorf("namespace variable: %q", v.Definition)
		}
	}
}
