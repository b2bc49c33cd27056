package install

// This file: the chart rendered as `helm template` does (Helm as a library), and
// the helpers that compare rendered objects with config/.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// releaseName is the release of every render; the chart's fullname is then
// the same, as in `helm install apitoken-operator charts/apitoken-operator`.
const (
	releaseName = "apitoken-operator"
	fullname    = "apitoken-operator"
)

// kubeVersion is the version of the test control plane, given to the chart as
// `helm template --kube-version` would.
var kubeVersion = &chartutil.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}

func chartDir() string { return filepath.Join(repoRoot, "charts", "apitoken-operator") }

// renderOptions are what `helm template` takes besides the values.
type renderOptions struct {
	namespace string
	// apiVersions are extra capabilities (`--api-versions`), e.g.
	// monitoring.coreos.com/v1/ServiceMonitor.
	apiVersions []string
	// chartDir replaces the chart's directory (a modified copy).
	chartDir string
}

// renderChart renders the chart with values as `helm template` does (schema
// validation included) and returns the manifest text.
func renderChart(values map[string]any, o renderOptions) (string, error) {
	dir := o.chartDir
	if dir == "" {
		dir = chartDir()
	}
	chrt, err := loader.Load(dir)
	if err != nil {
		return "", fmt.Errorf("load chart: %w", err)
	}
	install := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	install.ClientOnly, install.DryRun, install.Replace = true, true, true
	install.ReleaseName = releaseName
	install.Namespace = o.namespace
	if install.Namespace == "" {
		install.Namespace = "apitoken-system"
	}
	install.KubeVersion = kubeVersion
	install.APIVersions = o.apiVersions
	if values == nil {
		values = map[string]any{}
	}
	rel, err := install.Run(chrt, values)
	if err != nil {
		return "", fmt.Errorf("render chart: %w", err)
	}
	// Each document must be YAML without duplicate keys (kubectl and Helm
	// would each resolve them their own way).
	for _, doc := range strings.Split(rel.Manifest, "\n---") {
		var obj map[string]any
		if err := yaml.UnmarshalStrict([]byte(doc), &obj); err != nil {
			return "", fmt.Errorf("rendered document: %w\n%s", err, doc)
		}
	}
	return rel.Manifest, nil
}

// mustRender renders the chart or fails the test.
func mustRender(t *testing.T, values map[string]any, o renderOptions) string {
	t.Helper()
	out, err := renderChart(values, o)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// valuesFile reads a values file of testdata/.
func valuesFile(t *testing.T, name string) map[string]any {
	t.Helper()
	v, err := chartutil.ReadValuesFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// parseValues parses values written as YAML in a test table.
func parseValues(t *testing.T, s string) map[string]any {
	t.Helper()
	v, err := chartutil.ReadValues([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// decodeObjects splits a multi-document manifest into objects.
func decodeObjects(manifest string) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("decode manifest: %w", err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

func mustDecode(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := decodeObjects(manifest)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// ofKind returns the objects of a kind, sorted by namespace/name.
func ofKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].GetNamespace()+"/"+out[i].GetName() < out[j].GetNamespace()+"/"+out[j].GetName()
	})
	return out
}

// kindCounts counts the objects by kind.
func kindCounts(objs []*unstructured.Unstructured) map[string]int {
	counts := map[string]int{}
	for _, o := range objs {
		counts[o.GetKind()]++
	}
	return counts
}

// readObjects reads the objects of YAML files.
func readObjects(t *testing.T, paths ...string) []*unstructured.Unstructured {
	t.Helper()
	var buf bytes.Buffer
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		buf.WriteString("\n---\n")
		buf.Write(b)
	}
	return mustDecode(t, buf.String())
}

// configCRDs are the CRDs of config/crd/bases.
func configCRDs(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(repoRoot, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no CRDs in config/crd/bases: %v", err)
	}
	return ofKind(readObjects(t, paths...), "CustomResourceDefinition")
}

// configRules are the rules of config/rbac/role.yaml, the manager's ClusterRole.
func configRules(t *testing.T) []any {
	t.Helper()
	role := readObjects(t, filepath.Join(repoRoot, "config", "rbac", "role.yaml"))
	if len(role) != 1 {
		t.Fatalf("config/rbac/role.yaml holds %d objects", len(role))
	}
	return role[0].Object["rules"].([]any)
}

// withoutInstallMetadata strips what an installer adds to an object's metadata
// (labels, the keep annotation, namespace), so that a CRD of the chart or of
// dist/install.yaml compares equal to config/crd/bases.
func withoutInstallMetadata(u *unstructured.Unstructured) map[string]any {
	c := u.DeepCopy()
	c.SetLabels(nil)
	annotations := c.GetAnnotations()
	delete(annotations, "helm.sh/resource-policy")
	c.SetAnnotations(annotations)
	return c.Object
}

// toYAML prints an object for a failure message.
func toYAML(v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
