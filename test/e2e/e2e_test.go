// Package e2e runs the operator as users do: the control plane with
// kube-controller-manager, the tokenservice binary, and the operator binary as its
// ServiceAccount bound only to config/rbac, driven by kubectl and config/.
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

var (
	repoRoot string
	binaries framework.Binaries
	assets   string
)

// shared is the Cluster of the tests that leave it as they found it for the
// others: each works in namespaces of its own, changes only TokenBackends of
// its own, and never stops, kills or restarts the operator. It starts with the
// first of them and stops when the package's tests are done.
var shared struct {
	once    sync.Once
	cluster *framework.Cluster
	dir     string
	err     error
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		panic(err)
	}
	repoRoot = root
	if assets, err = framework.EnsureAssets(root); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	binDir, err := os.MkdirTemp("", "apitoken-e2e-bin")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(binDir)
	if binaries, err = framework.BuildBinaries(root, binDir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if shared.cluster != nil {
			shared.cluster.Stop()
		}
		if shared.dir != "" {
			_ = os.RemoveAll(shared.dir)
		}
	}()
	return m.Run()
}

type env struct {
	t   *testing.T
	ctx context.Context
	c   *framework.Cluster
	// seen collects every auth token the test saw, for the leak check.
	seen []string
}

func clusterOptions(dir string) framework.Options {
	return framework.Options{
		Dir: dir, RepoRoot: repoRoot, Assets: assets,
		TokenService: binaries.TokenService, Manager: binaries.Manager,
	}
}

// startCluster starts a Cluster of the test's own, for a test that stops,
// kills or restarts the operator, counts what it did, or needs options (which
// may change its Options); sharedCluster serves the others.
func startCluster(t *testing.T, options ...func(*framework.Options)) *env {
	t.Helper()
	o := clusterOptions(t.TempDir())
	for _, option := range options {
		option(&o)
	}
	c, err := framework.Start(t.Context(), o)
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(c.Stop)
	return newEnv(t, c)
}

// sharedCluster is the package's shared Cluster (see shared), started by the
// first test that asks for it.
func sharedCluster(t *testing.T) *env {
	t.Helper()
	shared.once.Do(func() {
		if shared.dir, shared.err = os.MkdirTemp("", "apitoken-e2e-shared"); shared.err == nil {
			shared.cluster, shared.err = framework.Start(context.Background(), clusterOptions(shared.dir))
		}
	})
	if shared.err != nil {
		t.Fatalf("start the shared cluster: %v", shared.err)
	}
	return newEnv(t, shared.cluster)
}

func newEnv(t *testing.T, c *framework.Cluster) *env {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("operator log:\n%s", framework.Tail(c.OperatorLog(), 60))
		}
	})
	return &env{t: t, ctx: t.Context(), c: c}
}

func (e *env) kubectl(args ...string) string {
	e.t.Helper()
	out, err := e.c.Kubectl(e.ctx, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// waitFor waits with kubectl wait, as a user would, up to framework.LongWait,
// until the objects (in namespace ns, or cluster-scoped when ns is empty) meet
// the condition: "condition=Ready", "jsonpath={.status.state}=Disabled".
func (e *env) waitFor(ns, condition string, objects ...string) {
	e.t.Helper()
	args := []string{"wait", "--for=" + condition, framework.KubectlTimeout(framework.LongWait)}
	if ns != "" {
		args = append(args, "-n", ns)
	}
	e.kubectl(append(args, objects...)...)
}

// applySample applies a file of config/samples, pointing the backend at this
// test's tokenservice.
func (e *env) applySample(namespace, file string) {
	e.t.Helper()
	e.applyManifest(namespace, e.sample(file))
}

// sample reads a file of config/samples, pointing the backend at this test's
// tokenservice.
func (e *env) sample(file string) string {
	e.t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "config", "samples", file))
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.ReplaceAll(string(data), "http://127.0.0.1:18080", e.c.TokenServiceURL)
}

// defaultBackend applies the sample TokenBackend "default" (the backend of
// ApiTokens that name none) and waits until it is Ready.
func (e *env) defaultBackend() {
	e.t.Helper()
	e.applySample("", "tokens_v1alpha1_tokenbackend.yaml")
	e.waitFor("", "condition=Ready", "tokenbackend/default")
}

// ownBackend applies the sample TokenBackend "default" under the name, for a
// test on the shared Cluster that changes its backend's policy, and waits
// until it is Ready.
func (e *env) ownBackend(name string) {
	e.t.Helper()
	e.applyManifest("", strings.Replace(e.sample("tokens_v1alpha1_tokenbackend.yaml"), "name: default", "name: "+name, 1))
	e.waitFor("", "condition=Ready", "tokenbackend/"+name)
}

// applyManifest applies a manifest with kubectl, as a user would.
func (e *env) applyManifest(namespace, manifest string) {
	e.t.Helper()
	args := []string{"apply", "-f", "-"}
	if namespace != "" {
		args = append(args, "-n", namespace)
	}
	if _, err := e.c.KubectlWithInput(e.ctx, manifest, args...); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) eventually(what string, timeout time.Duration, check func() error) {
	e.t.Helper()
	framework.Eventually(e.t, what, timeout, check)
}

// secretCredentials reads the Secret with kubectl, as a user would (none when
// it does not exist).
func (e *env) secretCredentials(ns, name string) backend.Credentials {
	e.t.Helper()
	out, err := e.c.Kubectl(e.ctx, "-n", ns, "get", "secret", name, "-o", "json")
	if err != nil {
		return backend.Credentials{}
	}
	secret := &corev1.Secret{}
	if err := json.Unmarshal([]byte(out), secret); err != nil {
		e.t.Fatalf("Secret %s/%s: %v", ns, name, err)
	}
	creds := framework.CredentialsOf(secret)
	if creds.AuthToken != "" {
		e.seen = append(e.seen, creds.AuthToken.Reveal())
	}
	return creds
}

// verify calls /v1/verify with the credentials and returns the status code.
func (e *env) verify(creds backend.Credentials, scope string) int {
	return framework.VerifyStatus(e.ctx, e.c.TokenServiceURL, creds, scope)
}

func (e *env) admin() *backend.Client {
	c, err := backend.New(backend.Options{URL: e.c.TokenServiceURL, AdminKey: e.c.AdminKey})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// watchAtRest waits until nothing has written the ApiTokens and Secrets of ns
// for a framework.QuietPeriod, and returns watches of their writes from then
// on (expectNoWrites ends them).
func (e *env) watchAtRest(ns string) []*framework.WriteWatch {
	e.t.Helper()
	k8s, err := client.NewWithWatch(e.c.AdminConfig, client.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	var watches []*framework.WriteWatch
	e.eventually("the ApiTokens and Secrets of "+ns+" at rest", framework.LongWait, func() error {
		watches = nil
		for _, gvk := range []schema.GroupVersionKind{tokensv1alpha1.GroupVersion.WithKind("ApiToken"), corev1.SchemeGroupVersion.WithKind("Secret")} {
			w, err := framework.WatchWritesFromNow(e.ctx, k8s, gvk, ns)
			if err != nil {
				return err
			}
			watches = append(watches, w)
		}
		time.Sleep(framework.QuietPeriod)
		for _, w := range watches {
			if writes := w.Seen(); len(writes) > 0 {
				e.stopWatches(watches)
				return fmt.Errorf("still written: %v", writes)
			}
		}
		return nil
	})
	return watches
}

// expectNoWrites keeps the watches a framework.QuietPeriod more, ends them,
// and fails the test for every write they saw.
func (e *env) expectNoWrites(watches []*framework.WriteWatch, why string) {
	e.t.Helper()
	for _, w := range watches {
		writes, err := w.Stop(framework.QuietPeriod)
		if err != nil {
			e.t.Error(err)
		}
		for _, write := range writes {
			e.t.Errorf("%s: %s", why, write)
		}
	}
}

func (e *env) stopWatches(watches []*framework.WriteWatch) {
	for _, w := range watches {
		_, _ = w.Stop(0)
	}
}

func TestEndToEnd(t *testing.T) {
	e := startCluster(t) // it kills and stops the operator, and counts its reads and leaks cluster-wide
	e.defaultBackend()
	e.kubectl("create", "namespace", "analytics")
	e.applySample("analytics", "tokens_v1alpha1_apitoken.yaml")
	e.waitFor("analytics", "condition=Ready", "apitoken/reporting-etl")

	sid := e.kubectl("-n", "analytics", "get", "apitoken", "reporting-etl", "-o", "jsonpath={.status.accountSid}")
	creds := e.secretCredentials("analytics", "reporting-etl")
	if creds.AccountSID != sid || sid == "" {
		t.Fatalf("Secret SID %q, status SID %q", creds.AccountSID, sid)
	}
	t.Run("credentials pass verify for declared scopes only", func(t *testing.T) {
		for scope, want := range map[string]int{"reports:read": 200, "actions:read": 200, "reports:write": 403, "deals:read": 403} {
			if got := e.verify(creds, scope); got != want {
				t.Errorf("verify %s: %d, want %d", scope, got, want)
			}
		}
	})
	t.Run("the sample's initial reset nonce caused no reset", func(t *testing.T) {
		c, err := e.admin().Credentials(e.ctx, sid)
		if err != nil || c.Generation != 1 {
			t.Errorf("generation %d (%v), want 1", c.Generation, err)
		}
	})

	t.Run("reset", func(t *testing.T) {
		e.kubectl("-n", "analytics", "annotate", "apitoken", "reporting-etl", "tokens.apitoken.dev/reset=e2e-rotation-1", "--overwrite")
		var fresh backend.Credentials
		e.eventually("Secret rewritten after reset", framework.WaitTimeout, func() error {
			fresh = e.secretCredentials("analytics", "reporting-etl")
			if fresh.AuthToken == creds.AuthToken {
				return errors.New("auth token unchanged")
			}
			return nil
		})
		if got := e.verify(creds, "reports:read"); got != 401 {
			t.Errorf("old token after reset: %d, want 401", got)
		}
		if got := e.verify(fresh, "reports:read"); got != 200 {
			t.Errorf("new token after reset: %d, want 200", got)
		}
		if c, _ := e.admin().Credentials(e.ctx, sid); c.Generation != 2 {
			t.Errorf("backend generation %d, want 2: exactly one reset", c.Generation)
		}
		creds = fresh
	})

	t.Run("disable and re-enable", func(t *testing.T) {
		e.kubectl("-n", "analytics", "patch", "apitoken", "reporting-etl", "--type=merge", "-p", `{"spec":{"disabled":true}}`)
		e.eventually("disabled token rejected", framework.WaitTimeout, func() error {
			if got := e.verify(creds, "reports:read"); got != 401 {
				return fmt.Errorf("verify %d", got)
			}
			return nil
		})
		e.waitFor("analytics", "jsonpath={.status.state}=Disabled", "apitoken/reporting-etl")
		e.kubectl("-n", "analytics", "patch", "apitoken", "reporting-etl", "--type=merge", "-p", `{"spec":{"disabled":false}}`)
		e.eventually("re-enabled token accepted with the same credentials", framework.WaitTimeout, func() error {
			if got := e.verify(creds, "reports:read"); got != 200 {
				return fmt.Errorf("verify %d", got)
			}
			return nil
		})
	})

	t.Run("a killed operator restarts without writes", func(t *testing.T) {
		e.waitFor("analytics", "condition=Ready", "apitoken/reporting-etl")
		// Watched from before the kill until a QuietPeriod after the restarted
		// operator checked the token: any write of the restart is seen.
		watches := e.watchAtRest("analytics")
		e.c.KillOperator()
		if err := e.c.StartOperator(e.ctx); err != nil {
			e.stopWatches(watches)
			t.Fatal(err)
		}
		// The new process becomes leader once the killed one's lease expires, then
		// checks each token with one conditional read, answered 304.
		err := framework.Poll(framework.LongWait, func() error {
			metrics, err := e.c.Metrics(e.ctx)
			if err != nil {
				return err
			}
			if !strings.Contains(metrics, `apitoken_backend_requests_total{call="get",code="304"} 1`) {
				return errors.New("no conditional read answered 304 yet")
			}
			return nil
		})
		e.expectNoWrites(watches, "a restart wrote an object")
		if err != nil {
			t.Fatalf("restarted operator checked the token: %v", err)
		}
		if got := e.verify(creds, "actions:read"); got != 200 {
			t.Errorf("after restart: %d", got)
		}
	})

	t.Run("delete removes the backend token and the Secret", func(t *testing.T) {
		e.kubectl("-n", "analytics", "delete", "apitoken", "reporting-etl", framework.KubectlTimeout(framework.LongWait))
		if _, _, err := e.admin().Get(e.ctx, sid, ""); !errors.Is(err, backend.ErrNotFound) {
			t.Errorf("backend token after delete: %v, want not found", err)
		}
		if got := e.verify(creds, "reports:read"); got != 401 {
			t.Errorf("verify after delete: %d, want 401", got)
		}
		e.secretGone("analytics", "reporting-etl", framework.WaitTimeout)
	})

	t.Run("Secrets are garbage collected with their ApiToken", func(t *testing.T) {
		e.applySample("analytics", "tokens_v1alpha1_apitoken.yaml")
		e.waitFor("analytics", "condition=Ready", "apitoken/reporting-etl")
		e.secretCredentials("analytics", "reporting-etl")
		// Without the operator, force the ApiToken away: only the owner reference
		// and kube-controller-manager's garbage collector remove the Secret.
		e.c.StopOperator()
		e.kubectl("-n", "analytics", "patch", "apitoken", "reporting-etl", "--type=merge", "-p", `{"metadata":{"finalizers":null}}`)
		e.kubectl("-n", "analytics", "delete", "apitoken", "reporting-etl", "--wait=true")
		e.secretGone("analytics", "reporting-etl", framework.LongWait)
		if err := e.c.StartOperator(e.ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("the operator needs no more RBAC than config/rbac grants", func(t *testing.T) {
		if log := e.c.OperatorLog(); strings.Contains(log, "forbidden") {
			t.Errorf("the operator was refused by RBAC:\n%s", framework.GrepLines(log, "forbidden"))
		}
	})

	t.Run("auth tokens never leak", func(t *testing.T) {
		events := e.kubectl("get", "events", "-A", "-o", "yaml")
		apitokens := e.kubectl("get", "apitokens", "-A", "-o", "yaml")
		metrics, err := e.c.Metrics(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		places := map[string]string{"operator log": e.c.OperatorLog(), "events": events, "ApiTokens": apitokens, "metrics": metrics}
		if len(e.seen) < 2 {
			t.Fatalf("the test saw %d auth tokens; the leak check needs them", len(e.seen))
		}
		leaks, err := framework.FindLeaks(e.seen, places)
		if err != nil {
			t.Fatal(err)
		}
		for _, leak := range leaks {
			t.Errorf("an auth token leaked: %s", leak)
		}
	})
}

func TestDefaultManifestsPassServerSideDryRun(t *testing.T) {
	e := sharedCluster(t)
	out := e.kubectl("apply", "--dry-run=server", "-k", filepath.Join(repoRoot, "config", "default"))
	for _, want := range []string{"deployment.apps/apitoken-controller-manager", "clusterrole.rbac.authorization.k8s.io/apitoken-manager-role", "customresourcedefinition.apiextensions.k8s.io/apitokens.tokens.apitoken.dev",
		"clusterrole.rbac.authorization.k8s.io/apitoken-metrics-reader", "service/apitoken-controller-manager-metrics"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %s:\n%s", want, out)
		}
	}
	deployment := e.kubectl("apply", "--dry-run=server", "-k", filepath.Join(repoRoot, "config", "default"), "-o", "yaml")
	for _, want := range []string{"runAsNonRoot: true", "readOnlyRootFilesystem: true", "type: RuntimeDefault", "- ALL", "allowPrivilegeEscalation: false", "--leader-elect",
		"--metrics-bind-address=:8443", "fieldPath: metadata.namespace", "port: 8443"} {
		if !strings.Contains(deployment, want) {
			t.Errorf("the Deployment lacks %q", want)
		}
	}
	if strings.Contains(deployment, "--metrics-secure=false") {
		t.Error("config/default serves metrics without authentication")
	}
}

// secretGone waits until the Secret ns/name no longer exists.
func (e *env) secretGone(ns, name string, timeout time.Duration) {
	e.t.Helper()
	e.eventually("Secret "+ns+"/"+name+" gone", timeout, func() error {
		out, err := e.c.Kubectl(e.ctx, "-n", ns, "get", "secret", name, "--ignore-not-found", "-o", "name")
		if err != nil || out != "" {
			return fmt.Errorf("still there: %q: %w", out, err)
		}
		return nil
	})
}
