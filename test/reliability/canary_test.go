package reliability

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// canaryBackend sits in front of tokenservice, remembers every auth token it
// hands out, and then answers chosen calls with errors whose bodies contain those
// tokens in plain, base64 and URL-encoded form.
type canaryBackend struct {
	next    http.Handler
	mu      sync.Mutex
	tokens  []string
	echoing bool
}

func (c *canaryBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	echo := c.echoing
	tokens := append([]string(nil), c.tokens...)
	c.mu.Unlock()
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
	rec := httptest.NewRecorder()
	c.next.ServeHTTP(rec, r)
	var out struct {
		AuthToken string `json:"authToken"`
	}
	if json.Unmarshal(rec.Body.Bytes(), &out) == nil && out.AuthToken != "" {
		c.mu.Lock()
		c.tokens = append(c.tokens, out.AuthToken)
		c.mu.Unlock()
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
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
	ns := "canary"
	if err := k8s.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		at := &tokensv1alpha1.ApiToken{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("canary-%d", i), Namespace: ns},
			Spec: tokensv1alpha1.ApiTokenSpec{BackendRef: tokensv1alpha1.BackendReference{Name: w.backend},
				PrimaryContact: "ops@example.com", Scopes: []string{"reports:read"}},
		}
		if err := k8s.Create(t.Context(), at); err != nil {
			t.Fatal(err)
		}
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
	canary.mu.Lock()
	canary.echoing = true
	canaries := append([]string(nil), canary.tokens...)
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
	if err := poll(30*time.Second, func() error {
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

	places := map[string]string{"operator logs": logs.String()}
	var list tokensv1alpha1.ApiTokenList
	_ = k8s.List(t.Context(), &list, client.InNamespace(ns))
	statusJSON, _ := json.Marshal(list)
	places["ApiToken status"] = string(statusJSON)
	var events eventsv1.EventList
	_ = k8s.List(t.Context(), &events, client.InNamespace(ns))
	eventsJSON, _ := json.Marshal(events)
	places["events"] = string(eventsJSON)
	places["metrics"] = gatherMetrics(t)
	if !strings.Contains(places["ApiToken status"], `scopes \"deals:read\" is not accepted`) {
		t.Errorf("the canary 422 never reached a condition; the test did not exercise the path:\n%s", places["ApiToken status"])
	}

	found := 0
	for _, token := range canaries {
		for _, form := range []string{token, base64.StdEncoding.EncodeToString([]byte(token)), url.QueryEscape(token)} {
			for place, text := range places {
				if strings.Contains(text, form) {
					found++
					t.Errorf("a canary appears in the %s", place)
				}
			}
		}
	}
	summary := fmt.Sprintf("secret-leak canary: %d canary tokens x 3 forms searched in %d places (%d bytes), %d matches",
		len(canaries), len(places), len(places["operator logs"])+len(places["events"])+len(places["ApiToken status"])+len(places["metrics"]), found)
	fmt.Println(summary)
	t.Log(summary)
}

func gatherMetrics(t *testing.T) string {
	families, err := metrics.Registry.(prometheus.Gatherer).Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		_ = enc.Encode(f)
	}
	return buf.String()
}
