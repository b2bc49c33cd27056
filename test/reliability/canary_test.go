package reliability

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// canaryBackend sits in front of tokenservice, remembers every auth token it
// hands out, and then answers chosen calls with errors whose bodies contain those
// tokens in plain, base64 and URL-encoded form.
type canaryBackend struct {
	next    http.Handler
	issued  *framework.IssuedTokens
	mu      sync.Mutex
	echoing bool
}

func (c *canaryBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	echo := c.echoing
	c.mu.Unlock()
	var tokens []string
	if echo {
		tokens = c.issued.All()
	}
	// Reads of a token pass, so that the operator gets as far as its writes.
	passes := r.URL.Path == "/v1/catalog" || (r.Method == http.MethodGet && !strings.HasSuffix(r.URL.Path, "/credentials"))
	if echo && !passes && len(tokens) > 0 {
		var forms []string
		for _, t := range tokens {
			forms = append(forms, t, base64.StdEncoding.EncodeToString([]byte(t)), url.QueryEscape(t))
		}
		all := strings.Join(forms, " ")
		status := http.StatusServiceUnavailable
		if r.Method == http.MethodPatch {
			status = http.StatusUnprocessableEntity
		}
		body, _ := json.Marshal(map[string]any{
			"type": "https://example.com/" + tokens[0], "title": "rejected " + all, "status": status, "detail": all,
			"errors": []map[string]string{{"field": "scopes[0]", "detail": "token " + all}, {"field": "scopes " + tokens[0], "detail": "token " + all}},
		})
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
		return
	}
	c.next.ServeHTTP(w, r)
}

// TestSecretsNeverLeak creates tokens, resets one, then makes the backend echo
// every auth token in its error bodies while the operator updates, resyncs and
// restarts; the canaries must appear in no log line, event, status, metric or
// error.
func TestSecretsNeverLeak(t *testing.T) {
	canary := &canaryBackend{}
	w := newWorld(t, "canary", worldOptions{resync: 5 * time.Second, wrap: func(h http.Handler) http.Handler {
		canary.next = h
		return canary
	}})
	canary.issued = w.service.Issued
	ns := "canary"
	framework.CreateNamespace(t, k8s, ns, nil)
	for i := range 3 {
		mustCreate(t, newToken(ns, fmt.Sprintf("canary-%d", i), w.backend))
	}
	s := &trialState{ns: ns, name: "canary-0"}
	if err := settle(s); err != nil {
		t.Fatal(err)
	}
	s.nonce = "rotate"
	if err := mutate(s, func(at *tokensv1alpha1.ApiToken) {
		at.Annotations = map[string]string{tokensv1alpha1.ResetAnnotation: "rotate"}
	}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"canary-0", "canary-1", "canary-2"} {
		if err := settle(&trialState{ns: ns, name: name, nonce: map[bool]string{true: "rotate"}[name == "canary-0"]}); err != nil {
			t.Fatal(err)
		}
	}

	// From now on every backend error body carries the canaries.
	canaries := w.service.Issued.All()
	canary.mu.Lock()
	canary.echoing = true
	canary.mu.Unlock()
	if len(canaries) < 4 {
		t.Fatalf("only %d auth tokens issued", len(canaries))
	}
	for _, name := range []string{"canary-1", "canary-2"} {
		if err := mutate(&trialState{ns: ns, name: name}, func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = []string{"deals:read"} }); err != nil {
			t.Fatal(err)
		}
	}
	// Restart, so that the credentials are known only from the Secrets, and wait
	// through a resync whose reads fail with canary bodies too.
	w.stopOperator()
	w.startOperator()
	if err := framework.Poll(framework.WaitTimeout, func() error {
		at := &tokensv1alpha1.ApiToken{}
		_ = k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "canary-1"}, at)
		for _, c := range at.Status.Conditions {
			if c.Type == tokensv1alpha1.ConditionStalled && c.Status == metav1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("not stalled yet: %+v", at.Status.Conditions)
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * w.resync)

	places, err := framework.ClusterHaystacks(t.Context(), k8s, ns)
	if err != nil {
		t.Fatal(err)
	}
	places["operator logs"] = logs.String()
	if places["metrics"], err = framework.InProcessMetrics(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(places["ApiTokens"], `scopes \"deals:read\" is not accepted`) {
		t.Errorf("the canary 422 never reached a condition; the test did not exercise the path:\n%s", places["ApiTokens"])
	}
	leaks, err := framework.FindLeaks(canaries, places)
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range leaks {
		t.Errorf("a canary leaked: %s", leak)
	}
	size := 0
	for _, text := range places {
		size += len(text)
	}
	summary := fmt.Sprintf("secret-leak canary: %d canary tokens x %d forms searched in %d places (%d bytes), %d matches",
		len(canaries), len(framework.SecretForms("")), len(places), size, len(leaks))
	fmt.Println(summary)
	t.Log(summary)
}
