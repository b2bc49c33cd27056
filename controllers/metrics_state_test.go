package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

type stateMetricsCase struct {
	objects []client.Object
	leader  bool
	want    map[string]float64
}

// stateT0 is the creation time of the test objects.
var stateT0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func stateToken(ns, name string, status tokensv1alpha1.ApiTokenStatus) *tokensv1alpha1.ApiToken {
	return &tokensv1alpha1.ApiToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(stateT0)},
		Status:     status,
	}
}

func stateCond(t, s, reason string, at time.Time) metav1.Condition {
	return metav1.Condition{Type: t, Status: metav1.ConditionStatus(s), Reason: reason, LastTransitionTime: metav1.NewTime(at)}
}

// stateCounts are the apitoken_apitokens series of one namespace: Ready and Stalled
// as True/False/Unknown; Reconciling is Unknown in these objects.
func stateCounts(ns string, readyN, stalledN [3]float64) map[string]float64 {
	m := map[string]float64{}
	for i, s := range []string{"True", "False", "Unknown"} {
		m[`apitoken_apitokens{condition="Ready",namespace="`+ns+`",status="`+s+`"}`] = readyN[i]
		m[`apitoken_apitokens{condition="Stalled",namespace="`+ns+`",status="`+s+`"}`] = stalledN[i]
		m[`apitoken_apitokens{condition="Reconciling",namespace="`+ns+`",status="`+s+`"}`] = 0
	}
	m[`apitoken_apitokens{condition="Reconciling",namespace="`+ns+`",status="Unknown"}`] = readyN[0] + readyN[1] + readyN[2]
	return m
}

func withSeries(m, extra map[string]float64) map[string]float64 {
	maps.Copy(m, extra)
	return m
}

func stateUnix(d time.Duration) float64 { return float64(stateT0.Add(d).Unix()) }

var (
	stateReady      = stateCond("Ready", "True", "Ready", stateT0)
	stateNotStalled = stateCond("Stalled", "False", "Ready", stateT0)
)

// stateMetricsCases are ApiTokens and TokenBackends in a cache, and the
// metrics they make.
var stateMetricsCases = map[string]stateMetricsCase{
	"a healthy token without rotation costs only the counts": {
		objects: []client.Object{stateToken("a", "one", tokensv1alpha1.ApiTokenStatus{Conditions: []metav1.Condition{stateReady, stateNotStalled}})},
		leader:  true,
		want:    stateCounts("a", [3]float64{1, 0, 0}, [3]float64{0, 1, 0}),
	},
	"a new token is not Ready since its creation": {
		objects: []client.Object{stateToken("a", "new", tokensv1alpha1.ApiTokenStatus{})},
		leader:  true,
		want: withSeries(stateCounts("a", [3]float64{0, 0, 1}, [3]float64{0, 0, 1}), map[string]float64{
			`apitoken_apitoken_not_ready_since_timestamp_seconds{name="new",namespace="a",reason=""}`: stateUnix(0),
		}),
	},
	"a stalled token reports both timestamps withSeries its reason": {
		objects: []client.Object{stateToken("b", "bad", tokensv1alpha1.ApiTokenStatus{Conditions: []metav1.Condition{
			stateCond("Ready", "False", "BackendRejected", stateT0.Add(time.Minute)), stateCond("Stalled", "True", "BackendRejected", stateT0.Add(2*time.Minute)),
		}})},
		leader: true,
		want: withSeries(stateCounts("b", [3]float64{0, 1, 0}, [3]float64{1, 0, 0}), map[string]float64{
			`apitoken_apitoken_not_ready_since_timestamp_seconds{name="bad",namespace="b",reason="BackendRejected"}`: stateUnix(time.Minute),
			`apitoken_apitoken_stalled_since_timestamp_seconds{name="bad",namespace="b",reason="BackendRejected"}`:   stateUnix(2 * time.Minute),
		}),
	},
	"rotation and the earliest retiring deadline": {
		objects: []client.Object{stateToken("a", "rot", tokensv1alpha1.ApiTokenStatus{
			Conditions:       []metav1.Condition{stateReady, stateNotStalled},
			NextRotationTime: &metav1.Time{Time: stateT0.Add(time.Hour)},
			RetiringTokens: []tokensv1alpha1.RetiringToken{
				{AccountSID: "TKold2", DeleteAfter: metav1.NewTime(stateT0.Add(20 * time.Minute))},
				{AccountSID: "TKold1", DeleteAfter: metav1.NewTime(stateT0.Add(10 * time.Minute))},
			},
		})},
		leader: true,
		want: withSeries(stateCounts("a", [3]float64{1, 0, 0}, [3]float64{0, 1, 0}), map[string]float64{
			`apitoken_next_rotation_timestamp_seconds{name="rot",namespace="a"}`:           stateUnix(time.Hour),
			`apitoken_retiring_tokens{name="rot",namespace="a"}`:                           2,
			`apitoken_retiring_token_deadline_timestamp_seconds{name="rot",namespace="a"}`: stateUnix(10 * time.Minute),
		}),
	},
	"TokenBackends report stateReady as 1 or 0": {
		objects: []client.Object{
			&tokensv1alpha1.TokenBackend{ObjectMeta: metav1.ObjectMeta{Name: "up"}, Status: tokensv1alpha1.TokenBackendStatus{Conditions: []metav1.Condition{stateReady}}},
			&tokensv1alpha1.TokenBackend{ObjectMeta: metav1.ObjectMeta{Name: "down"}, Status: tokensv1alpha1.TokenBackendStatus{Conditions: []metav1.Condition{stateCond("Ready", "False", "BackendUnavailable", stateT0)}}},
			&tokensv1alpha1.TokenBackend{ObjectMeta: metav1.ObjectMeta{Name: "new"}},
		},
		leader: true,
		want: map[string]float64{
			`apitoken_tokenbackend_ready{name="down"}`: 0,
			`apitoken_tokenbackend_ready{name="new"}`:  0,
			`apitoken_tokenbackend_ready{name="up"}`:   1,
		},
	},
	"a standby replica reports nothing": {
		objects: []client.Object{stateToken("a", "new", tokensv1alpha1.ApiTokenStatus{})},
		leader:  false,
		want:    map[string]float64{},
	},
}

func TestStateMetrics(t *testing.T) {
	for name, tc := range stateMetricsCases {
		t.Run(name, func(t *testing.T) {
			elected := make(chan struct{})
			if tc.leader {
				close(elected)
			}
			listed := fake.NewClientBuilder().WithScheme(NewScheme()).WithObjects(tc.objects...).Build()
			c := &stateCollector{reader: listed, elected: elected}
			if diff := cmp.Diff(tc.want, scrape(t, c)); diff != "" {
				t.Errorf("metrics, ApiTokens listed (-want +got):\n%s", diff)
			}
			// A manager's cache: the ApiTokens come from its informer's store,
			// and a List would fail.
			store := toolscache.NewStore(toolscache.MetaNamespaceKeyFunc)
			for _, obj := range tc.objects {
				if err := store.Add(obj); err != nil {
					t.Fatal(err)
				}
			}
			c = &stateCollector{reader: storeReader{Reader: listed, store: store}, elected: elected}
			if diff := cmp.Diff(tc.want, scrape(t, c)); diff != "" {
				t.Errorf("metrics, ApiTokens from the informer's store (-want +got):\n%s", diff)
			}
		})
	}
}

// storeReader is a cache whose ApiToken informer has store; it reads its
// TokenBackends through Reader and fails to list ApiTokens, which must come
// from the store.
type storeReader struct {
	client.Reader
	store toolscache.Store
}

func (r storeReader) GetInformer(_ context.Context, obj client.Object, _ ...cache.InformerGetOption) (cache.Informer, error) {
	if _, ok := obj.(*tokensv1alpha1.ApiToken); !ok {
		return nil, fmt.Errorf("no informer for %T", obj)
	}
	return storeInformer{store: r.store}, nil
}

func (r storeReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if _, ok := list.(*tokensv1alpha1.ApiTokenList); ok {
		return errors.New("ApiTokens listed: they are in the informer's store")
	}
	return r.Reader.List(ctx, list, opts...)
}

// storeInformer is an informer of which the collector uses only the store.
type storeInformer struct {
	cache.Informer
	store toolscache.Store
}

func (i storeInformer) GetStore() toolscache.Store { return i.store }

// scrape gathers c through a pedantic registry (which checks the metrics
// against their descriptions) as name{labels} -> value.
func scrape(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var pairs []string
			for _, l := range m.GetLabel() {
				pairs = append(pairs, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			got[f.GetName()+"{"+strings.Join(pairs, ",")+"}"] = m.GetGauge().GetValue()
		}
	}
	return got
}

// The manager's own cache, as the operator serves its metrics: its ApiToken
// informer has a store, which the scrape reads, and a Ready ApiToken counts in
// its namespace.
func TestStateMetricsFromTheManagersCache(t *testing.T) {
	informer, err := operatorCache.GetInformer(t.Context(), &tokensv1alpha1.ApiToken{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := informer.(interface{ GetStore() toolscache.Store }); !ok {
		t.Fatalf("the manager's ApiToken informer (%T) has no store: the state metrics would list and copy every ApiToken", informer)
	}
	ns, _ := readyToken(t, "counted", nil)
	ready := `apitoken_apitokens{condition="Ready",namespace="` + ns + `",status="True"}`
	if err := framework.Poll(wait, func() error {
		if got := scrape(t, state)[ready]; got != 1 {
			return fmt.Errorf("%s = %v, want 1", ready, got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
