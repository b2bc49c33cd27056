package bench

// This file: backend amplification when 20% of the backend's answers are 429.

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/test/framework"

	"github.com/apitoken-dev/apitoken-operator/test/framework/faults"
)

// throttledAmplification converges k ApiTokens of a second TokenBackend that
// reaches tokenservice through a proxy answering every fifth token request 429
// with Retry-After: 1 (20% of responses, deterministic so that the figure does
// not depend on luck). The floor is 1.25 calls per token: every answer counts.
func (b *benchRun) throttledAmplification(k int) {
	t, admin := b.t, b.admin
	proxy, transport, tokenRequests, throttling := throttlingProxy(t, b.c.TokenServiceURL)
	defer proxy.Close()

	tb := b.tb.DeepCopy()
	tb.ObjectMeta = metav1.ObjectMeta{Name: "throttled"}
	tb.Spec.URL = proxy.URL
	mustDo(t, framework.CreateTokenBackend(b.ctx, b.admin, tb, framework.LongWait))
	framework.CreateNamespace(t, admin, "throttled", nil)
	before, throttledBefore := tokenRequests.Load(), transport.Injected()[faults.TooMany]
	start := time.Now()
	convergeWatched(t, admin, "throttled", k, 10*framework.LongWait, func() {
		parallel(k, 20, func(i int) {
			at := apiToken("throttled", fmt.Sprintf("r%d", i))
			at.Spec.BackendRef.Name = tb.Name
			if err := admin.Create(b.ctx, at); err != nil {
				t.Error(err)
			}
		})
	})
	calls := float64(tokenRequests.Load() - before)
	throttled := transport.Injected()[faults.TooMany] - throttledBefore
	t.Logf("20%% 429: %d tokens Ready in %v; %.0f backend calls, %d answered 429", k, time.Since(start).Round(time.Millisecond), calls, throttled)
	b.r.add("backend calls per token (20% answered 429)", calls/float64(k), "calls", "<= 1.3", le(calls/float64(k), 1.3))
	violations := transport.RetryAfterViolations()
	for _, v := range violations {
		t.Log(v)
	}
	b.r.add("calls repeated before Retry-After", float64(len(violations)), "calls", "= 0", le(float64(len(violations)), 0))
	// Leave nothing that needs the proxy: the later phases measure an operator at
	// rest, not one retrying a backend that went away. The deletions are not
	// measured: they go through unthrottled.
	throttling.Store(false)
	mustDo(t, admin.DeleteAllOf(b.ctx, &tokensv1alpha1.ApiToken{}, client.InNamespace("throttled")))
	framework.Eventually(t, "the throttled ApiTokens are deleted", 10*framework.LongWait, func() error {
		list := &tokensv1alpha1.ApiTokenList{}
		if err := admin.List(b.ctx, list, client.InNamespace("throttled")); err != nil {
			return err
		}
		if len(list.Items) > 0 {
			return fmt.Errorf("%d left", len(list.Items))
		}
		return nil
	})
}

// throttlingProxy is a reverse proxy to upstream that answers every fifth
// request under /v1/tokens 429 with Retry-After: 1; it counts those requests.
// Storing false in throttling lets every request through.
func throttlingProxy(t *testing.T, upstream string) (*httptest.Server, *faults.Transport, *atomic.Int64, *atomic.Bool) {
	target, err := url.Parse(upstream)
	mustDo(t, err)
	tokenRequests, throttling := &atomic.Int64{}, &atomic.Bool{}
	throttling.Store(true)
	transport := &faults.Transport{Next: http.DefaultTransport, RetryAfter: time.Second, Policy: func(req *http.Request) faults.Kind {
		if !strings.HasPrefix(req.URL.Path, "/v1/tokens") || !throttling.Load() {
			return faults.None
		}
		if tokenRequests.Add(1)%5 == 0 {
			return faults.TooMany
		}
		return faults.None
	}}
	proxy := httptest.NewServer(&httputil.ReverseProxy{Transport: transport, Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }})
	return proxy, transport, tokenRequests, throttling
}
