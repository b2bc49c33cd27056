// Package e2e runs the operator as users do: the control plane with
// kube-controller-manager, the tokenservice binary, and the operator binary as its
// ServiceAccount bound only to config/rbac, driven by kubectl and config/.
package e2e

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

var (
	repoRoot string
	binaries framework.Binaries
	assets   string
)

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
	return m.Run()
}

type env struct {
	t   *testing.T
	ctx context.Context
	c   *framework.Cluster
	// seen collects every auth token the test saw, for the leak check.
	seen []string
}

// startCluster starts a Cluster for the test; options may change its Options.
func startCluster(t *testing.T, options ...func(*framework.Options)) *env {
	t.Helper()
	o := framework.Options{
		Dir: t.TempDir(), RepoRoot: repoRoot, Assets: assets,
		TokenService: binaries.TokenService, Manager: binaries.Manager,
	}
	for _, option := range options {
		option(&o)
	}
	c, err := framework.Start(t.Context(), o)
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("operator log:\n%s", tail(c.OperatorLog(), 60))
		}
		c.Stop()
	})
	return &env{t: t, ctx: t.Context(), c: c}
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

func (e *env) kubectl(args ...string) string {
	e.t.Helper()
	out, err := e.c.Kubectl(e.ctx, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
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

// secretCredentials reads the Secret with kubectl, as a user would.
func (e *env) secretCredentials(ns, name string) backend.Credentials {
	e.t.Helper()
	decode := func(key string) string {
		out, err := e.c.Kubectl(e.ctx, "-n", ns, "get", "secret", name, "-o", "jsonpath={.data."+key+"}")
		if err != nil {
			return ""
		}
		b, _ := base64.StdEncoding.DecodeString(out)
		return string(b)
	}
	creds := backend.Credentials{AccountSID: decode("accountSid"), AuthToken: backend.AuthToken(decode("authToken"))}
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

func TestEndToEnd(t *testing.T) {
	e := startCluster(t)
	e.applySample("", "tokens_v1alpha1_tokenbackend.yaml")
	e.kubectl("wait", "--for=condition=Ready", "tokenbackend/default", "--timeout=60s")
	e.kubectl("create", "namespace", "analytics")
	e.applySample("analytics", "tokens_v1alpha1_apitoken.yaml")
	e.kubectl("-n", "analytics", "wait", "--for=condition=Ready", "apitoken/reporting-etl", "--timeout=60s")

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
		e.eventually("Secret rewritten after reset", 30*time.Second, func() error {
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
		e.eventually("disabled token rejected", 30*time.Second, func() error {
			if got := e.verify(creds, "reports:read"); got != 401 {
				return fmt.Errorf("verify %d", got)
			}
			return nil
		})
		e.kubectl("-n", "analytics", "wait", "--for=jsonpath={.status.state}=Disabled", "apitoken/reporting-etl", "--timeout=30s")
		e.kubectl("-n", "analytics", "patch", "apitoken", "reporting-etl", "--type=merge", "-p", `{"spec":{"disabled":false}}`)
		e.eventually("re-enabled token accepted with the same credentials", 30*time.Second, func() error {
			if got := e.verify(creds, "reports:read"); got != 200 {
				return fmt.Errorf("verify %d", got)
			}
			return nil
		})
	})

	t.Run("a killed operator restarts without writes", func(t *testing.T) {
		e.kubectl("-n", "analytics", "wait", "--for=condition=Ready", "apitoken/reporting-etl", "--timeout=30s")
		time.Sleep(2 * time.Second) // let the last status write land
		before := e.kubectl("-n", "analytics", "get", "apitoken,secret", "-o", "jsonpath={range .items[*]}{.metadata.name}={.metadata.resourceVersion} {end}")
		beforeYAML := e.kubectl("-n", "analytics", "get", "apitoken", "reporting-etl", "-o", "yaml")
		e.c.KillOperator()
		if err := e.c.StartOperator(e.ctx); err != nil {
			t.Fatal(err)
		}
		// The new process becomes leader once the killed one's lease expires, then
		// checks each token with one conditional read, answered 304.
		e.eventually("restarted operator checked the token", 60*time.Second, func() error {
			metrics, err := e.c.Metrics(e.ctx)
			if err != nil {
				return err
			}
			if !strings.Contains(metrics, `apitoken_backend_requests_total{call="get",code="304"} 1`) {
				return errors.New("no conditional read answered 304 yet")
			}
			return nil
		})
		time.Sleep(2 * time.Second)
		after := e.kubectl("-n", "analytics", "get", "apitoken,secret", "-o", "jsonpath={range .items[*]}{.metadata.name}={.metadata.resourceVersion} {end}")
		if before != after {
			t.Errorf("a restart wrote objects:\nbefore %s\nafter  %s\n%s\n%s", before, after, beforeYAML, e.kubectl("-n", "analytics", "get", "apitoken", "reporting-etl", "-o", "yaml"))
		}
		if got := e.verify(creds, "actions:read"); got != 200 {
			t.Errorf("after restart: %d", got)
		}
	})

	t.Run("delete removes the backend token and the Secret", func(t *testing.T) {
		e.kubectl("-n", "analytics", "delete", "apitoken", "reporting-etl", "--timeout=60s")
		if _, _, err := e.admin().Get(e.ctx, sid, ""); !errors.Is(err, backend.ErrNotFound) {
			t.Errorf("backend token after delete: %v, want not found", err)
		}
		if got := e.verify(creds, "reports:read"); got != 401 {
			t.Errorf("verify after delete: %d, want 401", got)
		}
		e.eventually("Secret gone", 30*time.Second, func() error {
			out, err := e.c.Kubectl(e.ctx, "-n", "analytics", "get", "secret", "reporting-etl", "--ignore-not-found", "-o", "name")
			if err != nil || out != "" {
				return fmt.Errorf("still there: %q: %w", out, err)
			}
			return nil
		})
	})

	t.Run("Secrets are garbage collected with their ApiToken", func(t *testing.T) {
		e.applySample("analytics", "tokens_v1alpha1_apitoken.yaml")
		e.kubectl("-n", "analytics", "wait", "--for=condition=Ready", "apitoken/reporting-etl", "--timeout=60s")
		e.secretCredentials("analytics", "reporting-etl")
		// Without the operator, force the ApiToken away: only the owner reference
		// and kube-controller-manager's garbage collector remove the Secret.
		e.c.StopOperator()
		e.kubectl("-n", "analytics", "patch", "apitoken", "reporting-etl", "--type=merge", "-p", `{"metadata":{"finalizers":null}}`)
		e.kubectl("-n", "analytics", "delete", "apitoken", "reporting-etl", "--wait=true")
		e.eventually("Secret garbage collected", 60*time.Second, func() error {
			out, err := e.c.Kubectl(e.ctx, "-n", "analytics", "get", "secret", "reporting-etl", "--ignore-not-found", "-o", "name")
			if err != nil || out != "" {
				return fmt.Errorf("still there: %q: %w", out, err)
			}
			return nil
		})
		if err := e.c.StartOperator(e.ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("the operator needs no more RBAC than config/rbac grants", func(t *testing.T) {
		if log := e.c.OperatorLog(); strings.Contains(log, "forbidden") {
			t.Errorf("the operator was refused by RBAC:\n%s", grep(log, "forbidden"))
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
	e := startCluster(t)
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

func grep(text, needle string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, needle) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
