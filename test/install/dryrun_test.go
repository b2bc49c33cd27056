package install

// This file: every install path applied to the control plane with a
// server-side dry run (admission, schemas and strict field validation by the
// API server itself), and dist/install.yaml compared with config/.

import (
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

var monitoringCRDs sync.Once

// installMonitoringCRDs installs the stand-in ServiceMonitor and PrometheusRule
// CRDs, and cert-manager's Certificate and Issuer, once, and waits until they are
// served.
func installMonitoringCRDs(t *testing.T) {
	t.Helper()
	monitoringCRDs.Do(func() {
		mustKubectl(t, "", "apply", "--server-side", "-f", filepath.Join("testdata", "monitoring-crds.yaml"),
			"-f", filepath.Join("testdata", "certmanager-crds.yaml"))
		mustKubectl(t, "", "wait", "--for=condition=Established", framework.KubectlTimeout(framework.WaitTimeout),
			"crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com",
			"crd/certificates.cert-manager.io", "crd/issuers.cert-manager.io")
	})
}

// ensureNamespaces creates the namespaces that do not exist yet.
func ensureNamespaces(t *testing.T, names ...string) {
	t.Helper()
	for _, ns := range names {
		manifest := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n"
		mustKubectl(t, manifest, "apply", "--server-side", "-f", "-")
	}
}

// dryRun applies a manifest (stdin) or kustomization (-k dir) with a
// server-side dry run and returns kubectl's list of objects.
func dryRun(t *testing.T, manifest string, args ...string) string {
	t.Helper()
	base := []string{"apply", "--server-side", "--force-conflicts", "--dry-run=server", "--field-manager=install-test"}
	if manifest != "" {
		base = append(base, "-f", "-")
	}
	return mustKubectl(t, manifest, append(base, args...)...)
}

func TestServerSideDryRun(t *testing.T) {
	needCluster(t)
	installMonitoringCRDs(t)
	ensureNamespaces(t, "apitoken-system", "dry-default", "dry-full", "full-team-a", "full-team-b", "full-monitoring")
	cases := map[string]struct {
		manifest  func(t *testing.T) string
		kustomize string
		want      []string
	}{
		"chart, default values": {
			manifest: func(t *testing.T) string { return mustRender(t, nil, renderOptions{namespace: "dry-default"}) },
			want: []string{"customresourcedefinition.apiextensions.k8s.io/apitokens.tokens.apitoken.dev serverside-applied",
				"deployment.apps/apitoken-operator-controller-manager serverside-applied",
				"clusterrole.rbac.authorization.k8s.io/apitoken-operator-manager-role serverside-applied"},
		},
		"chart, every option": {
			manifest: func(t *testing.T) string {
				return mustRender(t, valuesFile(t, "values-full.yaml"), renderOptions{namespace: "dry-full"})
			},
			want: []string{"deployment.apps/tokens-controller-manager serverside-applied", "deployment.apps/tokens-tokenservice serverside-applied",
				"role.rbac.authorization.k8s.io/tokens-manager-role serverside-applied", "servicemonitor.monitoring.coreos.com/tokens-metrics serverside-applied",
				"prometheusrule.monitoring.coreos.com/tokens serverside-applied", "poddisruptionbudget.policy/tokens-controller-manager serverside-applied",
				"configmap/tokens-dashboard serverside-applied", "persistentvolumeclaim/tokens-tokenservice-data serverside-applied",
				"certificate.cert-manager.io/tokens-metrics serverside-applied", "issuer.cert-manager.io/tokens-selfsigned serverside-applied"},
		},
		"dist/install.yaml (make build-installer)": {
			manifest: func(t *testing.T) string { return buildInstaller(t, "registry.example.com/apitoken-operator:v0.1.0") },
			want: []string{"namespace/apitoken-system serverside-applied", "deployment.apps/apitoken-controller-manager serverside-applied",
				"clusterrole.rbac.authorization.k8s.io/apitoken-manager-role serverside-applied"},
		},
		"config/prometheus": {
			kustomize: "config/prometheus",
			want: []string{"servicemonitor.monitoring.coreos.com/apitoken-controller-manager-metrics serverside-applied",
				"prometheusrule.monitoring.coreos.com/apitoken-apitoken-operator serverside-applied", "configmap/apitoken-dashboard serverside-applied"},
		},
		"config/tokenservice": {
			kustomize: "config/tokenservice",
			want: []string{"deployment.apps/tokenservice serverside-applied", "service/tokenservice serverside-applied",
				"persistentvolumeclaim/tokenservice-data serverside-applied"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var out string
			if tc.kustomize != "" {
				out = dryRun(t, "", "-k", filepath.Join(repoRoot, tc.kustomize))
			} else {
				out = dryRun(t, tc.manifest(t))
			}
			for _, want := range tc.want {
				if !strings.Contains(out, want) {
					t.Errorf("dry run output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// buildInstaller runs make build-installer's script with kubectl's kustomize
// and returns dist/install.yaml's content.
func buildInstaller(t *testing.T, img string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "install.yaml")
	cmd := exec.Command(filepath.Join(repoRoot, "hack", "build-installer.sh"), out)
	cmd.Env = append(cmd.Environ(), "IMG="+img, "KUSTOMIZE_BUILD="+filepath.Join(assets, "kubectl")+" kustomize")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/build-installer.sh: %v\n%s", err, b)
	}
	return string(readFile(t, out))
}

func TestInstallerEqualsConfig(t *testing.T) {
	needCluster(t)
	objs := mustDecode(t, buildInstaller(t, "registry.example.com/apitoken-operator@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"))
	crds, want := ofKind(objs, "CustomResourceDefinition"), configCRDs(t)
	if len(crds) != len(want) {
		t.Fatalf("dist/install.yaml holds %d CRDs, config/crd/bases %d", len(crds), len(want))
	}
	for i := range want {
		if diff := cmp.Diff(withoutInstallMetadata(want[i]), withoutInstallMetadata(crds[i])); diff != "" {
			t.Errorf("CRD %s (-config +install.yaml):\n%s", want[i].GetName(), diff)
		}
	}
	role := findNamed(t, ofKind(objs, "ClusterRole"), "", "apitoken-manager-role")
	if diff := cmp.Diff(ruleSet(configRules(t)), ruleSet(role.Object["rules"].([]any))); diff != "" {
		t.Errorf("ClusterRole (-config +install.yaml):\n%s", diff)
	}
	d := findNamed(t, ofKind(objs, "Deployment"), "apitoken-system", "apitoken-controller-manager")
	wantContainer(t, d, "image", "registry.example.com/apitoken-operator@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	wantRestricted(t, d)
}
