package controllers

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	uzap "go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// TestPassLoggerWritesWhatTheDefaultWrites: a pass's lines carry the
// controller's and the ApiToken's pairs, the reconcileID added later, the
// logger's name and the caller that logged, though the pairs are only encoded
// when a line is written.
func TestPassLoggerWritesWhatTheDefaultWrites(t *testing.T) {
	var out bytes.Buffer
	base := zap.New(zap.WriteTo(&out), zap.RawZapOpts(uzap.AddCaller()))
	log := passLogger(base.WithName("apitoken"))(&reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "team-a", Name: "billing"}})
	log = log.WithValues("reconcileID", "r-1")
	log.V(1).Info("not enabled") // below the level: nothing written
	log.WithName("pass").Info("delivered", "secret", "billing")
	log.Error(errors.New("boom"), "failed")

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %d: %s", len(lines), out.String())
	}
	want := map[string]string{"controller": "apitoken", "controllerKind": "ApiToken", "ApiToken": "team-a/billing",
		"namespace": "team-a", "name": "billing", "reconcileID": "r-1"}
	for i, line := range lines {
		var fields map[string]any
		if err := json.Unmarshal([]byte(line), &fields); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, line)
		}
		for k, v := range want {
			if fields[k] != v {
				t.Errorf("line %d: %s = %v, want %q", i, k, fields[k], v)
			}
		}
		if caller, _ := fields["caller"].(string); !strings.HasPrefix(caller, "controllers/lazy_log_test.go:") {
			t.Errorf("line %d: caller %q, want this test", i, caller)
		}
	}
	if !strings.Contains(lines[0], `"logger":"apitoken.pass"`) || !strings.Contains(lines[0], `"secret":"billing"`) {
		t.Errorf("first line lacks its name or its own pair: %s", lines[0])
	}
	if !strings.Contains(lines[1], `"error":"boom"`) {
		t.Errorf("error line lacks the error: %s", lines[1])
	}
}

// TestLazyValuesKeepLoggersApart: two loggers made from one never see each
// other's pairs.
func TestLazyValuesKeepLoggersApart(t *testing.T) {
	var out bytes.Buffer
	parent := lazyValues(zap.New(zap.WriteTo(&out))).WithValues("a", "1")
	first, second := parent.WithValues("b", "2"), parent.WithValues("c", "3")
	first.Info("first")
	second.Info("second")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || strings.Contains(lines[0], `"c"`) || strings.Contains(lines[1], `"b"`) ||
		!strings.Contains(lines[0], `"a":"1"`) || !strings.Contains(lines[1], `"a":"1"`) {
		t.Fatalf("pairs leaked between loggers: %s", out.String())
	}
}

// TestLazyValuesAllocateNothingUntilWritten: adding a pass's pairs costs one
// small slice, not an encoded copy of the logger.
func TestLazyValuesAllocateNothingUntilWritten(t *testing.T) {
	base := zap.New(zap.WriteTo(&bytes.Buffer{}))
	lazy, eager := passLogger(base), func(l logr.Logger) logr.Logger { return l }
	req := &reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "team-a", Name: "billing"}}
	lazyAllocs := testing.AllocsPerRun(100, func() { lazy(req).WithValues("reconcileID", "r-1") })
	eagerAllocs := testing.AllocsPerRun(100, func() {
		eager(base).WithValues("ApiToken", req.String(), "namespace", req.Namespace, "name", req.Name).WithValues("reconcileID", "r-1")
	})
	if lazyAllocs >= eagerAllocs/2 {
		t.Fatalf("a pass's logger costs %.0f allocations, zap's own %.0f", lazyAllocs, eagerAllocs)
	}
}
