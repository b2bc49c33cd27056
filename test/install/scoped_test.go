package install

// This file: the binaries as shipped (--version stamped at build time), and a
// scoped install: the chart with watchNamespaces applied for real, the
// operator binary running as the chart's ServiceAccount with
// --watch-namespaces, ApiTokens inside and outside the set.

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// testVersion is stamped into the binaries the tests build, as make and the
// Dockerfile stamp VERSION.
const testVersion = "v0.0.0-install-test"

var (
	buildOnce sync.Once
	binDir    string
	binaries  framework.Binaries
	buildErr  error
)

// buildBinaries builds the operator and tokenservice once, as the Dockerfile
// does (framework.BuildBinaries), with -X main.version.
func buildBinaries(t *testing.T) framework.Binaries {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "apitoken-install-bin"); buildErr == nil {
			binaries, buildErr = framework.BuildBinaries(repoRoot, binDir, "-ldflags", "-X main.version="+testVersion)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binaries
}

func TestVersionFlag(t *testing.T) {
	needCluster(t)
	b := buildBinaries(t)
	for binary, want := range map[string]string{b.Manager: "apitoken-operator " + testVersion, b.TokenService: "tokenservice " + testVersion} {
		out, err := exec.Command(binary, "--version").Output()
		if err != nil {
			t.Fatalf("%s --version: %v", filepath.Base(binary), err)
		}
		if got := strings.TrimSpace(string(out)); got != want {
			t.Errorf("%s --version = %q, want %q", filepath.Base(binary), got, want)
		}
	}
}

// scoped names the objects of the scoped install.
const (
	scopedSystem = "scoped-system"
	scopedSA     = "scoped-controller-manager"
	scopedOut    = "scoped-c"
)

var scopedWatched = []string{"scoped-a", "scoped-b"}

func TestScopedInstall(t *testing.T) {
	needCluster(t)
	manager := buildBinaries(t).Manager
	for _, ns := range append([]string{scopedSystem, scopedOut}, scopedWatched...) {
		framework.CreateNamespace(t, cp.Client, ns, nil)
	}
	installScoped(t)
	ts := framework.NewTokenService(t, "scoped-admin-key", nil)
	mustKubectl(t, "", "-n", scopedSystem, "create", "secret", "generic", "tokenservice-admin", "--from-literal=apiKey="+ts.AdminKey)
	tb := framework.TokenBackendFor("scoped", ts.URL, time.Minute)
	tb.Spec.CredentialsSecretRef.Namespace = scopedSystem
	if err := cp.Client.Create(t.Context(), tb); err != nil {
		t.Fatal(err)
	}
	op := startScopedOperator(t, manager)

	for _, ns := range append([]string{scopedOut}, scopedWatched...) {
		at := &tokensv1alpha1.ApiToken{
			ObjectMeta: metav1.ObjectMeta{Name: "etl", Namespace: ns},
			Spec: tokensv1alpha1.ApiTokenSpec{BackendRef: tokensv1alpha1.BackendReference{Name: "scoped"},
				PrimaryContact: "ops@example.com", Scopes: []string{"reports:read"}},
		}
		if err := cp.Client.Create(t.Context(), at); err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range scopedWatched {
		framework.Eventually(t, "ApiToken in "+ns+" Ready with its Secret", framework.LongWait, func() error {
			return readyWithSecret(t, ns)
		})
	}
	// The ApiToken outside the set was created first and the watched
	// namespaces' tokens are Ready: the operator never saw it.
	at := &tokensv1alpha1.ApiToken{}
	if err := cp.Client.Get(t.Context(), client.ObjectKey{Namespace: scopedOut, Name: "etl"}, at); err != nil {
		t.Fatal(err)
	}
	if len(at.Finalizers) > 0 || len(at.Status.Conditions) > 0 {
		t.Errorf("the ApiToken outside the watched namespaces was touched: finalizers %v, conditions %v", at.Finalizers, at.Status.Conditions)
	}
	if err := cp.Client.Get(t.Context(), client.ObjectKey{Namespace: scopedOut, Name: "etl"}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Errorf("a Secret outside the watched namespaces: %v", err)
	}
	if log := string(readFile(t, op.logPath)); strings.Contains(log, "forbidden") {
		t.Errorf("the operator was refused something:\n%s", framework.GrepLines(log, "forbidden"))
	}
	// The metrics are HTTPS for clients allowed get on /metrics: a scraper
	// bound to the chart's metrics-reader ClusterRole.
	mustKubectl(t, "", "-n", scopedSystem, "create", "serviceaccount", "scraper")
	mustKubectl(t, "", "create", "clusterrolebinding", "scoped-scraper", "--clusterrole=scoped-metrics-reader", "--serviceaccount="+scopedSystem+":scraper")
	scraper := strings.TrimSpace(mustKubectl(t, "", "-n", scopedSystem, "create", "token", "scraper", "--duration=1h"))
	for who, bearer := range map[string]string{"no token": "", "the operator's own token": op.token} {
		if code, _, err := scrape(op.metricsURL, bearer); err != nil || code < 400 {
			t.Errorf("scrape with %s: HTTP %d, %v; want it refused", who, code, err)
		}
	}
	checkScopedMetrics(t, op.metricsURL, scraper, ts.Issued.All())
}

// installScoped applies the chart with watchNamespaces for real (its CRDs are
// already installed by the control plane) and checks what its ServiceAccount
// may do.
func installScoped(t *testing.T) {
	t.Helper()
	values := parseValues(t, fmt.Sprintf("{fullnameOverride: scoped, crds: {enabled: false}, watchNamespaces: [%s]}", strings.Join(scopedWatched, ", ")))
	mustKubectl(t, mustRender(t, values, renderOptions{namespace: scopedSystem}), "apply", "--server-side", "-f", "-")
	wantCanI(t, scopedSystem, scopedSA, map[string]string{
		"list secrets --all-namespaces": "no", "get secrets -n " + scopedOut: "no", "watch apitokens -n " + scopedOut: "no",
		"list secrets -n scoped-a": "yes", "patch apitokens/status -n scoped-b": "yes", "get secrets -n " + scopedSystem: "yes",
		"list secrets -n " + scopedSystem: "no", "list tokenbackends": "yes",
	})
}

// scopedOperator is the operator binary running as the chart's ServiceAccount.
type scopedOperator struct {
	token, logPath, metricsURL string
}

// startScopedOperator runs the operator binary with --watch-namespaces as the
// chart's ServiceAccount, with its RBAC and nothing more.
func startScopedOperator(t *testing.T, manager string) scopedOperator {
	t.Helper()
	dir := t.TempDir()
	op := scopedOperator{logPath: filepath.Join(dir, "operator.log")}
	op.token = strings.TrimSpace(mustKubectl(t, "", "-n", scopedSystem, "create", "token", scopedSA, "--duration=1h"))
	kubeconfig := filepath.Join(dir, "operator.kubeconfig")
	if err := framework.WriteKubeconfig(kubeconfig, cp.Config, op.token, ""); err != nil {
		t.Fatal(err)
	}
	metrics, probes := framework.FreeAddr(), framework.FreeAddr()
	op.metricsURL = "https://" + metrics + "/metrics"
	p, err := framework.StartProcess(op.logPath, []string{"POD_NAMESPACE=" + scopedSystem}, manager,
		"--kubeconfig="+kubeconfig, "--watch-namespaces="+strings.Join(scopedWatched, ","),
		"--leader-elect", "--leader-election-namespace="+scopedSystem,
		"--metrics-bind-address="+metrics, "--health-probe-bind-address="+probes)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return op
}

// readyWithSecret checks that the ApiToken etl of ns is Ready and its Secret exists.
func readyWithSecret(t *testing.T, ns string) error {
	at := &tokensv1alpha1.ApiToken{}
	if err := cp.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "etl"}, at); err != nil {
		return err
	}
	if !framework.ConditionTrue(at.Status.Conditions, tokensv1alpha1.ConditionReady) {
		return fmt.Errorf("not Ready: %+v", at.Status.Conditions)
	}
	return cp.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "etl"}, &corev1.Secret{})
}

// wantCanI asks the API server what the ServiceAccount may do (kubectl auth can-i).
func wantCanI(t *testing.T, namespace, sa string, want map[string]string) {
	t.Helper()
	for question, answer := range want {
		args := append([]string{"auth", "can-i", "--as=system:serviceaccount:" + namespace + ":" + sa}, strings.Fields(question)...)
		out, _ := kubectl(t.Context(), "", args...) // can-i exits 1 for "no"
		if got := strings.TrimSpace(out); got != answer {
			t.Errorf("can-i %s: %q, want %q", question, got, answer)
		}
	}
}

// checkScopedMetrics scrapes the operator: the state metrics count the watched
// namespaces only, every metric the alerts and the dashboard read is served,
// and no auth token is in the output.
func checkScopedMetrics(t *testing.T, url, bearer string, issued []string) {
	t.Helper()
	var body string
	framework.Eventually(t, "state metrics served", framework.WaitTimeout, func() error {
		code, b, err := scrape(url, bearer)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("HTTP %d", code)
		}
		body = b
		if !strings.Contains(body, `apitoken_apitokens{condition="Ready",namespace="scoped-b",status="True"} 1`) {
			return fmt.Errorf("no Ready count of scoped-b yet")
		}
		return nil
	})
	for _, want := range []string{
		`apitoken_apitokens{condition="Ready",namespace="scoped-a",status="True"} 1`,
		`apitoken_tokenbackend_ready{name="scoped"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, `namespace="scoped-c"`) {
		t.Errorf("metrics report the namespace outside the set:\n%s", framework.GrepLines(body, "scoped-c"))
	}
	served := servedMetricNames(body)
	for _, name := range metricsReadByRulesAndDashboard(t) {
		if !served[name] && !stateMetricsOnlyWhenSet[name] {
			t.Errorf("the alerts or the dashboard read %s, which the operator does not serve", name)
		}
	}
	leaks, err := framework.FindLeaks(issued, map[string]string{"metrics": body})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leaks {
		t.Errorf("an auth token leaked: %s", l)
	}
}

// scrape GETs the operator's metrics over HTTPS (its certificate is
// self-signed) with a bearer token, when given.
func scrape(url, bearer string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	c := &http.Client{Timeout: framework.WaitTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// stateMetricsOnlyWhenSet are served only for ApiTokens that need them (not
// Ready, Stalled, with a rotation period, with retiring tokens); this test's
// tokens have none, so TestStateMetrics in controllers covers them.
var stateMetricsOnlyWhenSet = map[string]bool{
	"apitoken_apitoken_not_ready_since_timestamp_seconds": true,
	"apitoken_apitoken_stalled_since_timestamp_seconds":   true,
	"apitoken_next_rotation_timestamp_seconds":            true,
	"apitoken_retiring_tokens":                            true,
	"apitoken_retiring_token_deadline_timestamp_seconds":  true,
}

// servedMetricNames are the sample names in a text exposition.
func servedMetricNames(body string) map[string]bool {
	names := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}
