package controllers

// This file: the state metrics the alerts of config/prometheus read, computed
// from the manager's cache at scrape time (kube-state-metrics style). Labels are
// bounded: namespace, name, condition, status and reason (constants of the API
// package); nothing secret, not even the accountSid, is ever a label or value.

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

var (
	apiTokensDesc = prometheus.NewDesc("apitoken_apitokens",
		"ApiTokens by namespace, condition (Ready, Reconciling, Stalled) and status (True, False, Unknown when absent).",
		[]string{"namespace", "condition", "status"}, nil)
	notReadySinceDesc = prometheus.NewDesc("apitoken_apitoken_not_ready_since_timestamp_seconds",
		"For each ApiToken that is not Ready: when it last stopped being Ready (its creation when it never was).",
		[]string{"namespace", "name", "reason"}, nil)
	stalledSinceDesc = prometheus.NewDesc("apitoken_apitoken_stalled_since_timestamp_seconds",
		"For each Stalled ApiToken: when it became Stalled.",
		[]string{"namespace", "name", "reason"}, nil)
	nextRotationDesc = prometheus.NewDesc("apitoken_next_rotation_timestamp_seconds",
		"status.nextRotationTime of each ApiToken with a rotation period.",
		[]string{"namespace", "name"}, nil)
	retiringTokensDesc = prometheus.NewDesc("apitoken_retiring_tokens",
		"Old backend tokens still valid during a rotation overlap, for each ApiToken that has any.",
		[]string{"namespace", "name"}, nil)
	retiringDeadlineDesc = prometheus.NewDesc("apitoken_retiring_token_deadline_timestamp_seconds",
		"The earliest status.retiringTokens[].deleteAfter of each ApiToken that has retiring tokens.",
		[]string{"namespace", "name"}, nil)
	backendReadyDesc = prometheus.NewDesc("apitoken_tokenbackend_ready",
		"1 when the TokenBackend is Ready (its catalog was fetched with its credentials), else 0.",
		[]string{"name"}, nil)
)

// stateConditions are the condition types counted by apitoken_apitokens.
var stateConditions = []string{tokensv1alpha1.ConditionReady, tokensv1alpha1.ConditionReconciling, tokensv1alpha1.ConditionStalled}

// stateScrapeTimeout bounds the cache reads of one scrape.
const stateScrapeTimeout = 5 * time.Second

// stateCollector reads ApiTokens and TokenBackends from a manager's cache at
// scrape time. Only the leader reports (a standby replica's cache is as full,
// and two replicas reporting would double every count).
type stateCollector struct {
	mu      sync.RWMutex
	reader  client.Reader
	elected <-chan struct{}
}

var state = &stateCollector{}

func init() { metrics.Registry.MustRegister(state) }

// observeState makes the state metrics read mgr's cache once mgr leads. The
// last manager set up in a process wins (tests restart managers in one process).
func observeState(mgr ctrl.Manager) {
	state.mu.Lock()
	defer state.mu.Unlock()
	state.reader, state.elected = mgr.GetCache(), mgr.Elected()
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{apiTokensDesc, notReadySinceDesc, stalledSinceDesc, nextRotationDesc, retiringTokensDesc, retiringDeadlineDesc, backendReadyDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A failed cache read leaves the
// metrics of that kind out of this scrape.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.RLock()
	reader, elected := c.reader, c.elected
	c.mu.RUnlock()
	if reader == nil {
		return
	}
	select {
	case <-elected:
	default:
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), stateScrapeTimeout)
	defer cancel()
	if tokens, err := cachedApiTokens(ctx, reader); err == nil {
		collectApiTokens(ch, tokens)
	}
	backends := &tokensv1alpha1.TokenBackendList{}
	if err := reader.List(ctx, backends, client.UnsafeDisableDeepCopy); err == nil {
		for i := range backends.Items {
			ready := 0.0
			if meta.IsStatusConditionTrue(backends.Items[i].Status.Conditions, tokensv1alpha1.ConditionReady) {
				ready = 1
			}
			ch <- prometheus.MustNewConstMetric(backendReadyDesc, prometheus.GaugeValue, ready, backends.Items[i].Name)
		}
	}
}

// informerGetter is the part of a cache that hands out its informers.
type informerGetter interface {
	GetInformer(ctx context.Context, obj client.Object, opts ...cache.InformerGetOption) (cache.Informer, error)
}

// cachedApiTokens are the ApiTokens of the cache, not copied: the informer's
// store holds the cached objects, where a List through controller-runtime,
// even without deep copies, copies each one into the list's items (about
// 8 MB of garbage per scrape at 10,000 ApiTokens, for a scrape that only
// reads them). A reader without such a store (a cache of several namespaces,
// a client in tests) is listed. The objects must not be changed.
func cachedApiTokens(ctx context.Context, reader client.Reader) ([]*tokensv1alpha1.ApiToken, error) {
	if informers, ok := reader.(informerGetter); ok {
		informer, err := informers.GetInformer(ctx, &tokensv1alpha1.ApiToken{})
		if err != nil {
			return nil, fmt.Errorf("get the ApiToken informer: %w", err)
		}
		if withStore, ok := informer.(interface{ GetStore() toolscache.Store }); ok {
			items := withStore.GetStore().List()
			tokens := make([]*tokensv1alpha1.ApiToken, 0, len(items))
			for _, item := range items {
				if at, ok := item.(*tokensv1alpha1.ApiToken); ok {
					tokens = append(tokens, at)
				}
			}
			return tokens, nil
		}
	}
	list := &tokensv1alpha1.ApiTokenList{}
	if err := reader.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("list ApiTokens: %w", err)
	}
	tokens := make([]*tokensv1alpha1.ApiToken, len(list.Items))
	for i := range list.Items {
		tokens[i] = &list.Items[i]
	}
	return tokens, nil
}

// collectApiTokens sends the per-namespace counts and the per-token timestamps
// of the ApiTokens that need them.
func collectApiTokens(ch chan<- prometheus.Metric, tokens []*tokensv1alpha1.ApiToken) {
	type key struct{ namespace, condition, status string }
	counts := map[key]int{}
	namespaces := map[string]bool{}
	for _, at := range tokens {
		namespaces[at.Namespace] = true
		for _, t := range stateConditions {
			counts[key{at.Namespace, t, conditionStatus(at.Status.Conditions, t)}]++
		}
		collectApiToken(ch, at)
	}
	// Every combination is reported, zeros included, so that sums and ratios
	// over a namespace never see a series vanish.
	for ns := range namespaces {
		for _, t := range stateConditions {
			for _, s := range []metav1.ConditionStatus{metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown} {
				ch <- prometheus.MustNewConstMetric(apiTokensDesc, prometheus.GaugeValue, float64(counts[key{ns, t, string(s)}]), ns, t, string(s))
			}
		}
	}
}

// collectApiToken sends the timestamps of one ApiToken: only for what is wrong
// or scheduled, so a healthy token without rotation costs no series.
func collectApiToken(ch chan<- prometheus.Metric, at *tokensv1alpha1.ApiToken) {
	ready := meta.FindStatusCondition(at.Status.Conditions, tokensv1alpha1.ConditionReady)
	switch {
	case ready == nil:
		ch <- prometheus.MustNewConstMetric(notReadySinceDesc, prometheus.GaugeValue, seconds(at.CreationTimestamp), at.Namespace, at.Name, "")
	case ready.Status != metav1.ConditionTrue:
		ch <- prometheus.MustNewConstMetric(notReadySinceDesc, prometheus.GaugeValue, seconds(ready.LastTransitionTime), at.Namespace, at.Name, ready.Reason)
	}
	if stalled := meta.FindStatusCondition(at.Status.Conditions, tokensv1alpha1.ConditionStalled); stalled != nil && stalled.Status == metav1.ConditionTrue {
		ch <- prometheus.MustNewConstMetric(stalledSinceDesc, prometheus.GaugeValue, seconds(stalled.LastTransitionTime), at.Namespace, at.Name, stalled.Reason)
	}
	if at.Status.NextRotationTime != nil {
		ch <- prometheus.MustNewConstMetric(nextRotationDesc, prometheus.GaugeValue, seconds(*at.Status.NextRotationTime), at.Namespace, at.Name)
	}
	if n := len(at.Status.RetiringTokens); n > 0 {
		earliest := at.Status.RetiringTokens[0].DeleteAfter
		for _, rt := range at.Status.RetiringTokens[1:] {
			if rt.DeleteAfter.Before(&earliest) {
				earliest = rt.DeleteAfter
			}
		}
		ch <- prometheus.MustNewConstMetric(retiringTokensDesc, prometheus.GaugeValue, float64(n), at.Namespace, at.Name)
		ch <- prometheus.MustNewConstMetric(retiringDeadlineDesc, prometheus.GaugeValue, seconds(earliest), at.Namespace, at.Name)
	}
}

// conditionStatus is the status of the condition of that type, Unknown when absent.
func conditionStatus(conditions []metav1.Condition, t string) string {
	if c := meta.FindStatusCondition(conditions, t); c != nil {
		return string(c.Status)
	}
	return string(metav1.ConditionUnknown)
}

func seconds(t metav1.Time) float64 { return float64(t.Unix()) }
