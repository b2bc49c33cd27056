package gitops

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// docYAML returns the YAML snippets of docs/gitops.md, each parsed.
func docYAML(t *testing.T) []map[string]any {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "gitops.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for i, m := range yamlBlock.FindAllStringSubmatch(string(doc), -1) {
		var v map[string]any
		if err := yaml.UnmarshalStrict([]byte(m[1]), &v); err != nil {
			t.Fatalf("YAML snippet %d of docs/gitops.md: %v\n%s", i+1, err, m[1])
		}
		if len(v) == 0 {
			t.Fatalf("YAML snippet %d of docs/gitops.md is empty", i+1)
		}
		out = append(out, v)
	}
	if len(out) < 4 {
		t.Fatalf("docs/gitops.md has %d YAML snippets, want at least 4", len(out))
	}
	return out
}

// TestDocSnippets: every YAML snippet parses, the argocd-cm in the doc carries
// the scripts of config/argocd byte for byte, and the links the doc relies on exist.
func TestDocSnippets(t *testing.T) {
	var configMaps int
	for _, v := range docYAML(t) {
		if v["kind"] != "ConfigMap" {
			continue
		}
		configMaps++
		data, _ := v["data"].(map[string]any)
		if len(data) != len(healthScripts) {
			t.Errorf("argocd-cm in the doc has keys %v, want %v", keys(data), keys(healthScripts))
		}
		for key := range healthScripts {
			want, err := readScript(key)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := data[key].(string); got != want {
				t.Errorf("%s in docs/gitops.md differs from %s:\n%s", key, healthScripts[key], got)
			}
		}
	}
	if configMaps != 1 {
		t.Errorf("docs/gitops.md has %d argocd-cm snippets, want 1", configMaps)
	}

	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### GitOps: why the annotation value is a nonce", "docs/gitops.md"} {
		if !strings.Contains(string(readme), want) {
			t.Errorf("README.md lacks %q, which docs/gitops.md relies on", want)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// fluxExprs returns the healthCheckExprs of the doc's Kustomization, by kind.
func fluxExprs(t *testing.T) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, v := range docYAML(t) {
		spec, _ := v["spec"].(map[string]any)
		list, _ := spec["healthCheckExprs"].([]any)
		for _, item := range list {
			e, _ := item.(map[string]any)
			kind, _ := e["kind"].(string)
			out[kind] = map[string]string{}
			for _, field := range []string{"inProgress", "failed", "current"} {
				if s, ok := e[field].(string); ok {
					out[kind][field] = s
				}
			}
		}
	}
	if len(out) != 2 {
		t.Fatalf("docs/gitops.md has healthCheckExprs for %v, want ApiToken and TokenBackend", keys(out))
	}
	return out
}

// fluxStatus evaluates healthCheckExprs the way Flux's kustomize-controller
// does (fluxcd/pkg/runtime/cel, RFC 0009): a stale status.observedGeneration is
// InProgress; then inProgress, failed and current in that order, the first true
// one wins; none true is InProgress; an evaluation error is Unknown (the
// poller keeps waiting). The expressions are parsed, not compiled,
// with the object's top-level fields as variables.
func fluxStatus(exprs map[string]string, obj map[string]any) (status.Status, error) {
	u := &unstructured.Unstructured{Object: obj}
	if observed, ok, _ := unstructured.NestedInt64(obj, "status", "observedGeneration"); ok && observed != u.GetGeneration() {
		return status.InProgressStatus, nil
	}
	env, err := cel.NewEnv(cel.HomogeneousAggregateLiterals(), cel.EagerlyValidateDeclarations(true),
		cel.DefaultUTCTimeZone(true), cel.CrossTypeNumericComparisons(true), cel.OptionalTypes(),
		ext.Strings(), ext.Sets(), ext.Encoders())
	if err != nil {
		return "", err
	}
	for _, e := range []struct {
		field  string
		status status.Status
	}{{"inProgress", status.InProgressStatus}, {"failed", status.FailedStatus}, {"current", status.CurrentStatus}} {
		expr := exprs[e.field]
		if expr == "" {
			continue
		}
		ast, issues := env.Parse(expr)
		if issues != nil && issues.Err() != nil {
			return "", fmt.Errorf("parse %s: %w", e.field, issues.Err())
		}
		prog, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.InterruptCheckFrequency(100))
		if err != nil {
			return "", err
		}
		val, _, err := prog.ContextEval(context.Background(), obj)
		if err != nil {
			// A field the object lacks (status before the operator's first
			// write): Flux's generic status reader reports Unknown and polls again.
			if strings.Contains(err.Error(), "no such attribute") || strings.Contains(err.Error(), "no such key") {
				return status.UnknownStatus, nil
			}
			return "", fmt.Errorf("evaluate %s: %w", e.field, err)
		}
		b, ok := val.(types.Bool)
		if !ok {
			return "", fmt.Errorf("%s is %v, not a boolean", e.field, val)
		}
		if b {
			return e.status, nil
		}
	}
	return status.InProgressStatus, nil
}
