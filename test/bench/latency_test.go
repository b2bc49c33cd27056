package bench

// This file: latency probes (create->Ready and reset->Secret) and their figures.

import (
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// idleLatencies probes an idle operator, then creates the tokens that the
// restarted operator will be asked to reset.
func (b *benchRun) idleLatencies() {
	b.createLat, b.resetLat = latencies(b.t, b.admin, "bench", "idle", probes)
	reportLatencies(b.t, b.r, "idle", durations(b.createLat), durations(b.resetLat), nil, nil, 0)
	parallel(probes, 10, func(i int) { probeCreate(b.t, b.admin, "bench", fmt.Sprintf("load-r-%d", i)) })
}

// latenciesDuringResync probes while the restarted operator re-checks every
// token: each p99 must stay within twice its idle p99. The re-check lasts one
// resync interval, and the probes are spread over the first half of it (a pair
// every resync/2/probes) so that the percentile is of that time, the start-up
// included, and not of its first five seconds, which back-to-back probes
// would fill.
func (b *benchRun) latenciesDuringResync() {
	b.loadCreate, b.loadReset = interleavedLatencies(b.t, b.admin, "bench", "load-c", "load-r", probes, *resyncFlag/2/probes)
	reportLatencies(b.t, b.r, "during resync after restart", durations(b.loadCreate), durations(b.loadReset),
		durations(b.createLat), durations(b.resetLat), 2)
}

// reportLatencies adds p50 and p99 of create->Ready and reset->Secret; each must
// stay within limit times its idle p99 (nil idle: within 1 s).
func reportLatencies(t *testing.T, r *report, phase string, create, reset []time.Duration, idleCreate, idleReset []time.Duration, factor float64) {
	for _, m := range []struct {
		name    string
		samples []time.Duration
		idle    []time.Duration
	}{{"create->Ready", create, idleCreate}, {"reset->Secret", reset, idleReset}} {
		t.Logf("%s (%s), in order: %v", m.name, phase, roundAll(m.samples))
		limit, target := 1.0, "<= 1"
		if m.idle != nil {
			limit = factor * p(m.idle, 99)
			target = fmt.Sprintf("<= %.3f", limit)
		}
		for _, q := range []int{50, 99} {
			v := p(m.samples, q)
			r.add(fmt.Sprintf("%s p%d (%s)", m.name, q, phase), v, "s", target, le(v, limit))
		}
	}
}

func roundAll(d []time.Duration) []time.Duration {
	out := make([]time.Duration, len(d))
	for i, v := range d {
		out[i] = v.Round(time.Millisecond)
	}
	return out
}

// p is the q-th percentile of d in seconds (0 for no samples).
func p(d []time.Duration, q int) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := min(len(s)-1, (len(s)*q+99)/100-1)
	return s[max(0, i)].Seconds()
}

// A probe is one timed change: when it was made and how long the operator took.
type probe struct {
	start time.Time
	took  time.Duration
}

func durations(ps []probe) []time.Duration {
	out := make([]time.Duration, len(ps))
	for i, p := range ps {
		out[i] = p.took
	}
	return out
}

// probeCreate creates an ApiToken and times create->Ready. The end is seen
// through a watch opened before the change, so the figures are not rounded to a
// polling interval.
func probeCreate(t *testing.T, c client.WithWatch, ns, name string) probe {
	at := apiToken(ns, name)
	w := watchOne(t, c, &tokensv1alpha1.ApiTokenList{}, ns, at.Name)
	start := time.Now()
	mustDo(t, c.Create(t.Context(), at))
	waitEvent(t, w, "latency probe Ready", func(obj runtime.Object) bool {
		got := obj.(*tokensv1alpha1.ApiToken)
		return framework.ConditionTrue(got.Status.Conditions, tokensv1alpha1.ConditionReady) && got.Status.SecretName != ""
	})
	return probe{start, time.Since(start)}
}

// probeReset sets a Ready ApiToken's reset annotation and times it until the
// Secret holds a new auth token.
func probeReset(t *testing.T, c client.WithWatch, ns, name, nonce string) probe {
	ctx := t.Context()
	key := client.ObjectKey{Namespace: ns, Name: name}
	before := &corev1.Secret{}
	mustDo(t, c.Get(ctx, key, before))
	at := &tokensv1alpha1.ApiToken{}
	mustDo(t, c.Get(ctx, key, at))
	patch := client.MergeFrom(at.DeepCopy())
	at.Annotations = map[string]string{tokensv1alpha1.ResetAnnotation: nonce}
	w := watchOne(t, c, &corev1.SecretList{}, ns, name)
	start := time.Now()
	mustDo(t, c.Patch(ctx, at, patch))
	waitEvent(t, w, "latency probe reset", func(obj runtime.Object) bool {
		return string(obj.(*corev1.Secret).Data["authToken"]) != string(before.Data["authToken"])
	})
	return probe{start, time.Since(start)}
}

// latencies creates k tokens one at a time, then resets each.
func latencies(t *testing.T, c client.WithWatch, ns, prefix string, k int) (create, reset []probe) {
	for i := range k {
		create = append(create, probeCreate(t, c, ns, fmt.Sprintf("%s-%d", prefix, i)))
	}
	for i := range k {
		reset = append(reset, probeReset(t, c, ns, fmt.Sprintf("%s-%d", prefix, i), "bench"))
	}
	return create, reset
}

// interleavedLatencies alternates creating a new token (createPrefix-i) and
// resetting an existing one (resetPrefix-i), one probe at a time, so that both
// kinds sample the same phase of the operator without competing with each other.
// Pair i starts no earlier than i*every after the first.
func interleavedLatencies(t *testing.T, c client.WithWatch, ns, createPrefix, resetPrefix string, k int, every time.Duration) (create, reset []probe) {
	first := time.Now()
	for i := range k {
		time.Sleep(time.Until(first.Add(time.Duration(i) * every)))
		create = append(create, probeCreate(t, c, ns, fmt.Sprintf("%s-%d", createPrefix, i)))
		reset = append(reset, probeReset(t, c, ns, fmt.Sprintf("%s-%d", resetPrefix, i), "bench"))
	}
	return create, reset
}

// watchOne watches the object of one name.
func watchOne(t *testing.T, c client.WithWatch, list client.ObjectList, ns, name string) watch.Interface {
	w, err := c.Watch(t.Context(), list, client.InNamespace(ns), client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", name)})
	mustDo(t, err)
	return w
}

// waitEvent reads the watch until an object satisfies done, then stops it.
func waitEvent(t *testing.T, w watch.Interface, what string, done func(runtime.Object) bool) {
	t.Helper()
	defer w.Stop()
	timeout := time.After(framework.LongWait)
	for {
		select {
		case e, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("%s: the watch ended", what)
			}
			if (e.Type == watch.Added || e.Type == watch.Modified) && done(e.Object) {
				return
			}
		case <-timeout:
			t.Fatalf("timed out: %s", what)
		}
	}
}
