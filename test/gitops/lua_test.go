// Package gitops tests what docs/gitops.md promises: the Argo CD health checks in
// config/argocd run the way Argo CD runs them and map real ApiToken and
// TokenBackend objects (written by the operator against envtest and tokenservice)
// to the documented health; kstatus (Flux) reads the same objects as the doc
// says; and the doc's YAML parses and carries the scripts verbatim.
package gitops

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

var repoRoot = filepath.Join("..", "..")

// Health script files and the argocd-cm keys the doc installs them under.
var healthScripts = map[string]string{
	"resource.customizations.health.tokens.apitoken.dev_ApiToken":     filepath.Join("config", "argocd", "apitoken_health.lua"),
	"resource.customizations.health.tokens.apitoken.dev_TokenBackend": filepath.Join("config", "argocd", "tokenbackend_health.lua"),
}

// validHealth are the statuses Argo CD accepts from a script; any other
// value becomes Unknown there.
var validHealth = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

type health struct {
	Status  string
	Message string
}

func readScript(key string) (string, error) {
	b, err := os.ReadFile(filepath.Join(repoRoot, healthScripts[key]))
	return string(b), err
}

// runHealth runs a health script the way Argo CD does for a script from
// argocd-cm: a fresh state without the standard libraries except package, base
// and table, a one-second limit, the object as the global table obj, and the
// table the chunk returns read as {status, message}.
func runHealth(script string, obj runtime.Object) (health, error) {
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return health{}, err
	}
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return health{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, content))
	if err := l.DoString(script); err != nil {
		return health{}, err
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return health{}, fmt.Errorf("the script returned %s, not a table", l.Get(-1).Type())
	}
	h := health{}
	for field, dst := range map[string]*string{"status": &h.Status, "message": &h.Message} {
		switch v := ret.RawGetString(field).(type) {
		case lua.LString:
			*dst = string(v)
		case *lua.LNilType:
		default:
			return health{}, fmt.Errorf("%s is a %s, not a string", field, v.Type())
		}
	}
	if !validHealth[h.Status] {
		return health{}, fmt.Errorf("invalid health status %q", h.Status)
	}
	return h, nil
}

// toLua converts an unstructured value the way Argo CD does: maps to tables
// with string keys, lists to sequences, numbers (int64 from the converter,
// float64 from JSON) to Lua numbers.
func toLua(l *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case bool:
		return lua.LBool(x)
	case string:
		return lua.LString(x)
	case int, int32, int64, float64:
		return lua.LNumber(reflect.ValueOf(x).Convert(reflect.TypeFor[float64]()).Float())
	case []any:
		t := l.CreateTable(len(x), 0)
		for _, item := range x {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(x))
		for k, item := range x {
			t.RawSetH(lua.LString(k), toLua(l, item))
		}
		return t
	}
	return lua.LNil
}

// TestScriptEdges covers shapes the operator does not produce today but that a
// health script meets: the annotation before the operator noticed it, Ready=False
// alone, a condition without a message, a float generation (JSON numbers).
func TestScriptEdges(t *testing.T) {
	script, err := readScript(apiTokenKey)
	if err != nil {
		t.Fatal(err)
	}
	obj := func(annotations map[string]any, observed any, conditions ...map[string]any) *unstructured.Unstructured {
		conds := make([]any, 0, len(conditions))
		for _, c := range conditions {
			conds = append(conds, c)
		}
		meta := map[string]any{"name": "t", "generation": float64(3)}
		if annotations != nil {
			meta["annotations"] = annotations
		}
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "tokens.apitoken.dev/v1alpha1", "kind": "ApiToken", "metadata": meta,
			"status": map[string]any{"observedGeneration": observed, "conditions": conds},
		}}
	}
	cond := func(typ, st string) map[string]any { return map[string]any{"type": typ, "status": st} }
	pausedAnnotation := map[string]any{"tokens.apitoken.dev/paused": "true"}
	for _, c := range []struct {
		name    string
		obj     *unstructured.Unstructured
		status  string
		message string
	}{
		{"annotation, no Paused condition yet", obj(pausedAnnotation, int64(3), cond("Ready", "True")), "Healthy", ""},
		{"Paused=True without message", obj(pausedAnnotation, int64(2), cond("Paused", "True")), "Suspended", "Paused by the tokens.apitoken.dev/paused annotation"},
		{"Paused=False", obj(nil, int64(3), cond("Paused", "False"), cond("Ready", "True")), "Healthy", ""},
		{"Ready=False alone", obj(nil, int64(3), cond("Ready", "False")), "Progressing", "Waiting for the Ready condition"},
		{"no conditions", obj(nil, int64(3)), "Progressing", "Waiting for the Ready condition"},
		{"no observedGeneration", obj(nil, nil, cond("Ready", "True")), "Progressing", "observe generation 3"},
		{"float observedGeneration", obj(nil, float64(3), cond("Ready", "True")), "Healthy", ""},
		{"Stalled wins over Ready", obj(nil, int64(3), cond("Ready", "True"), cond("Stalled", "True")), "Degraded", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := runHealth(script, c.obj)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != c.status || !strings.Contains(got.Message, c.message) {
				t.Errorf("health = %s %q, want %s with %q", got.Status, got.Message, c.status, c.message)
			}
		})
	}
}
