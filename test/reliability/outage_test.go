package reliability

import (
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
	"github.com/apitoken-dev/apitoken-operator/test/framework/faults"
)

// counter counts the requests that reach tokenservice, by kind of call.
type counter struct {
	next http.Handler
	mu   sync.Mutex
	n    map[string]int
}

var sidPath = regexp.MustCompile(`/v1/tokens/[^/]+`)

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.n[r.Method+" "+sidPath.ReplaceAllString(r.URL.Path, "/v1/tokens/{sid}")]++
	c.mu.Unlock()
	c.next.ServeHTTP(w, r)
}

func (c *counter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

func newToken(ns, name, backendName string) *tokensv1alpha1.ApiToken {
	return &tokensv1alpha1.ApiToken{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: tokensv1alpha1.ApiTokenSpec{BackendRef: tokensv1alpha1.BackendReference{Name: backendName},
			PrimaryContact: "ops@example.com", Scopes: []string{"reports:read"}},
	}
}

// TestBackendOutage takes the backend down while a create, a reset and a delete
// are asked for: the finalizer holds, conditions say what is happening, no token is
// hot-looped, and after recovery each change is carried out with exactly one
// backend call.
func TestBackendOutage(t *testing.T) {
	const outage = 30 * time.Second
	calls := &counter{n: map[string]int{}}
	w := newWorld(t, "outage", worldOptions{resync: 5 * time.Second, wrap: func(h http.Handler) http.Handler {
		calls.next = h
		return calls
	}})
	ns := "outage"
	framework.CreateNamespace(t, k8s, ns, nil)
	for _, name := range []string{"to-reset", "to-delete", "idle"} {
		if err := k8s.Create(t.Context(), newToken(ns, name, w.backend)); err != nil {
			t.Fatal(err)
		}
		if err := settle(&trialState{ns: ns, name: name}); err != nil {
			t.Fatal(err)
		}
	}
	deleteSID := getToken(t, ns, "to-delete").Status.AccountSID
	resetSID := getToken(t, ns, "to-reset").Status.AccountSID

	w.handler.setDown(true)
	down := time.Now()
	before := calls.snapshot()
	if err := k8s.Create(t.Context(), newToken(ns, "new", w.backend)); err != nil {
		t.Fatal(err)
	}
	if err := mutate(&trialState{ns: ns, name: "to-reset"}, func(at *tokensv1alpha1.ApiToken) {
		at.Annotations = map[string]string{tokensv1alpha1.ResetAnnotation: "during-outage"}
	}); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(t.Context(), getToken(t, ns, "to-delete")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(outage - time.Since(down))

	// During the outage: nothing lost, and the conditions say why.
	if at := getToken(t, ns, "to-delete"); len(at.Finalizers) == 0 {
		t.Error("the finalizer did not hold the ApiToken during the outage")
	}
	for _, name := range []string{"new", "to-reset"} {
		at := getToken(t, ns, name)
		c := meta.FindStatusCondition(at.Status.Conditions, tokensv1alpha1.ConditionReconciling)
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != tokensv1alpha1.ReasonBackendUnavailable {
			t.Errorf("%s during the outage: Reconciling %+v, want True/BackendUnavailable", name, c)
		}
	}
	perToken := map[string]int{}
	for path, n := range w.handler.downRequests() {
		if path != "GET /v1/catalog" { // the TokenBackend's probe: per backend, not per token
			perToken[path] += n
		}
	}
	worst := 0
	for _, n := range perToken {
		worst = max(worst, n)
	}
	perMinute := float64(worst) / outage.Minutes()
	t.Logf("outage %v: refused requests by call %v; worst token %d (%.0f/min)", outage, perToken, worst, perMinute)
	if perMinute > 30 {
		t.Errorf("a token was hot-looped: %.0f requests/min during the outage (bound 30)", perMinute)
	}
	if after := calls.snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("requests reached the backend while it was down: %v -> %v", before, after)
	}

	w.handler.setDown(false)
	recovered := time.Now()
	for _, s := range []*trialState{{ns: ns, name: "new"}, {ns: ns, name: "to-reset", nonce: "during-outage"}, {ns: ns, name: "to-delete", deleted: true}} {
		if err := settle(s); err != nil {
			t.Fatalf("%s after recovery: %v", s.name, err)
		}
	}
	t.Logf("everything completed %v after recovery", time.Since(recovered).Round(100*time.Millisecond))
	after := calls.snapshot()
	for call, want := range map[string]int{"POST /v1/tokens": 1, "POST /v1/tokens/{sid}/reset": 1, "DELETE /v1/tokens/{sid}": 1} {
		if got := after[call] - before[call]; got != want {
			t.Errorf("%s: %d calls after recovery, want exactly %d", call, got, want)
		}
	}
	if creds, err := w.service.Admin.Credentials(t.Context(), resetSID); err != nil || creds.Generation != 2 {
		t.Errorf("reset during the outage: generation %d (%v), want 2", creds.Generation, err)
	}
	if _, _, err := w.service.Admin.Get(t.Context(), deleteSID, ""); err == nil {
		t.Error("the token deleted during the outage is still in the backend")
	}
	if tokens, _ := w.service.Admin.FindByExternalID(t.Context(), string(getToken(t, ns, "new").UID)); len(tokens) != 1 {
		t.Errorf("%d backend tokens for the ApiToken created during the outage", len(tokens))
	}
}

// TestRetryAfterIsHonoured answers 20% of backend calls with 429 and Retry-After:
// every token converges and no call goes out before its Retry-After expired.
func TestRetryAfterIsHonoured(t *testing.T) {
	w := newWorld(t, "ratelimited", worldOptions{
		policy: faults.Random(42, map[faults.Kind]float64{faults.TooMany: 0.2}), retryAfter: time.Second,
	})
	ns := "ratelimited"
	framework.CreateNamespace(t, k8s, ns, nil)
	const n = 10
	start := w.transport.Requests()
	for i := range n {
		if err := k8s.Create(t.Context(), newToken(ns, fmt.Sprintf("t%d", i), w.backend)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if err := settle(&trialState{ns: ns, name: fmt.Sprintf("t%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		s := &trialState{ns: ns, name: fmt.Sprintf("t%d", i), nonce: "r1"}
		if err := mutate(s, func(at *tokensv1alpha1.ApiToken) {
			at.Spec.Scopes = []string{"deals:read"}
			at.Annotations = map[string]string{tokensv1alpha1.ResetAnnotation: "r1"}
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if err := settle(&trialState{ns: ns, name: fmt.Sprintf("t%d", i), nonce: "r1"}); err != nil {
			t.Fatal(err)
		}
	}
	injected := w.transport.Injected()[faults.TooMany]
	requests := w.transport.Requests() - start
	t.Logf("%d requests for %d tokens (create, update, reset), %d answered 429", requests, n, injected)
	if injected == 0 {
		t.Fatal("no 429 was injected; the test proved nothing")
	}
	if v := w.transport.RetryAfterViolations(); len(v) > 0 {
		t.Errorf("%d calls before Retry-After expired:\n%s", len(v), strings.Join(v, "\n"))
	}
}

func getToken(t *testing.T, ns, name string) *tokensv1alpha1.ApiToken {
	t.Helper()
	at := &tokensv1alpha1.ApiToken{}
	if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, at); err != nil {
		t.Fatal(err)
	}
	return at
}
