package e2e

// docs/design.md, invariant 7: the operator's metrics only for authenticated,
// authorized clients; admin keys read only from its own namespace.

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

func TestMetricsRequireAuthorization(t *testing.T) {
	e := sharedCluster(t)
	unbound, err := e.c.ServiceAccountToken(e.ctx, framework.OperatorNamespace, "no-metrics-reader")
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		token string
		want  []int
	}{
		"no token": {token: "", want: []int{http.StatusUnauthorized}},
		// controller-runtime's filter answers 500 when the TokenReview carries an
		// error, as it does for a token it cannot parse: refused all the same.
		"a token the API server does not know":     {token: "not-a-token", want: []int{http.StatusUnauthorized, http.StatusInternalServerError}},
		"a ServiceAccount without metrics-reader":  {token: unbound, want: []int{http.StatusForbidden}},
		"a ServiceAccount bound to metrics-reader": {token: e.c.MetricsToken, want: []int{http.StatusOK}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			code, body, err := e.c.ScrapeMetrics(e.ctx, tc.token)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(tc.want, code) {
				t.Errorf("status %d, want %v: %s", code, tc.want, framework.Tail(body, 3))
			}
			wantServed := tc.want[0] == http.StatusOK
			if served := strings.Contains(body, "rest_client_requests_total"); served != wantServed {
				t.Errorf("metrics in the body: %t, want %t", served, wantServed)
			}
		})
	}
	t.Run("nothing over plain http", func(t *testing.T) {
		resp, err := http.Get(strings.Replace(e.c.OperatorMetricsURL, "https://", "http://", 1))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Errorf("plain http answered 200")
			}
		}
	})
}

func TestOperatorRefusesToStartWithoutCredentialsNamespace(t *testing.T) {
	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(t.Context(), binaries.Manager, append([]string{
			"--kubeconfig=/nonexistent/kubeconfig", "--metrics-bind-address=0", "--health-probe-bind-address=0",
		}, args...)...)
		for _, kv := range os.Environ() { // as outside a Pod, whatever runs the test
			if !strings.HasPrefix(kv, "POD_NAMESPACE=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.WaitDelay = 10 * time.Second
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	const refusal = "no credentials namespace: set --credentials-namespace, or POD_NAMESPACE"
	out, err := run()
	if exit := new(exec.ExitError); !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out, refusal) {
		t.Errorf("without POD_NAMESPACE or the flag: %v, want exit 1 saying %q:\n%s", err, refusal, out)
	}
	// With the flag the operator gets past that check (and stops at the
	// kubeconfig, which does not exist).
	if out, _ := run("--credentials-namespace=apitoken-system"); strings.Contains(out, refusal) {
		t.Errorf("an explicit --credentials-namespace was refused:\n%s", out)
	}
}
