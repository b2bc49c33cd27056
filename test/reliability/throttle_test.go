package reliability

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
	"github.com/apitoken-dev/apitoken-operator/test/framework/faults"
)

// One tenant's throttling backend never delays another backend's ApiTokens
// (docs/design.md, invariant 6): a backend answering every token call 429 with a
// two-minute Retry-After, and more of its ApiTokens than the operator has
// workers, must not hold the workers; the healthy backend's ApiTokens converge
// as fast as without it, and the throttled ones say why they wait.
func TestThrottledBackendDoesNotDelayOthers(t *testing.T) {
	var throttledHost atomic.Value
	throttledHost.Store("")
	throttle := func(req *http.Request) faults.Kind {
		if req.URL.Host == throttledHost.Load().(string) && strings.HasPrefix(req.URL.Path, "/v1/tokens") {
			return faults.TooMany
		}
		return faults.None
	}
	w := newWorld(t, "healthy", worldOptions{policy: throttle, retryAfter: 120 * time.Second})
	slow := framework.NewTokenService(t, adminKey, nil)
	u, _ := url.Parse(slow.URL)
	throttledHost.Store(u.Host)
	tb := framework.TokenBackendFor("throttled", slow.URL, 5*time.Second)
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), tb) })
	if err := controlPlane.CreateTokenBackend(t.Context(), tb); err != nil {
		t.Fatal(err)
	}

	ns := "throttle"
	framework.CreateNamespace(t, k8s, ns, nil)
	const throttled = 12 // more than the operator's 10 workers
	for i := range throttled {
		mustCreate(t, newToken(ns, fmt.Sprintf("slow-%d", i), "throttled"))
	}
	w.eventually("throttled ApiTokens report BackendThrottled", framework.WaitTimeout, func() error {
		for i := range throttled {
			at := getToken(t, ns, fmt.Sprintf("slow-%d", i))
			c := meta.FindStatusCondition(at.Status.Conditions, tokensv1alpha1.ConditionReconciling)
			if c == nil || c.Reason != tokensv1alpha1.ReasonBackendThrottled {
				return fmt.Errorf("slow-%d: %+v", i, at.Status.Conditions)
			}
		}
		return nil
	})

	start := time.Now()
	for i := range 5 {
		mustCreate(t, newToken(ns, fmt.Sprintf("fast-%d", i), w.backend))
	}
	w.eventually("healthy ApiTokens Ready", framework.WaitTimeout, func() error {
		for i := range 5 {
			at := getToken(t, ns, fmt.Sprintf("fast-%d", i))
			if !framework.ConditionTrue(at.Status.Conditions, tokensv1alpha1.ConditionReady) {
				return fmt.Errorf("fast-%d not ready: %+v", i, at.Status.Conditions)
			}
		}
		return nil
	})
	took := time.Since(start)
	t.Logf("5 ApiTokens of a healthy backend Ready in %v beside %d throttled ones (Retry-After 120s)", took.Round(time.Millisecond), throttled)
	if took > 10*time.Second {
		t.Errorf("the healthy backend's ApiTokens took %v: the throttled backend held the workers", took)
	}
	// The client holds every later call of that backend until Retry-After has
	// passed, so one 429 reaches the operator and the rest wait locally.
	if n := w.transport.Injected()[faults.TooMany]; n < 1 {
		t.Errorf("no 429 injected: the test did not throttle")
	}
	if v := w.transport.RetryAfterViolations(); len(v) > 0 {
		t.Errorf("calls before Retry-After: %v", v)
	}
}
