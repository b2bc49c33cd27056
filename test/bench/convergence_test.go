package bench

// This file: the baseline, the operator's convergence, and its Kubernetes and
// backend calls (amplification).

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// baseline times the minimal work for N tokens by a plain client, with the
// operator stopped: backend create, ApiToken create, finalizer patch, Secret
// create, status patch, at the operator's concurrency and client settings.
func (b *benchRun) baseline() {
	b.c.StopOperator()
	createNamespace(b.t, b.admin, "baseline")
	start := time.Now()
	runBaseline(b.t, b.n, b.admin, b.operator, b.be)
	b.baselineTook = time.Since(start)
	cleanupBaseline(b.t, b.n, b.setup)
}

// convergence starts the operator and times it until N new ApiTokens are Ready.
func (b *benchRun) convergence() {
	t, n := b.t, b.n
	mustDo(t, b.c.StartOperator(b.ctx))
	createNamespace(t, b.admin, "bench")
	b.waitLeader()
	time.Sleep(3 * time.Second) // let the TokenBackend register; then measure from a quiet start
	b.rssBefore = rss(t, b.c.OperatorPID())
	b.convStart = b.marks()
	start := time.Now()
	cpuProfile := b.profile(fmt.Sprintf("profile?seconds=%d", max(1, int(b.baselineTook.Seconds()))), "convergence.cpu.pprof")
	readyAt := convergeWatched(t, b.admin, "bench", n, 15*time.Minute, func() { createTokens(t, b.admin, "bench", "t", n) })
	converged := time.Since(start)
	t.Logf("convergence: first Ready after %v, half after %v, all after %v", readyAt[0].Sub(start).Round(time.Millisecond),
		readyAt[n/2].Sub(start).Round(time.Millisecond), readyAt[n-1].Sub(start).Round(time.Millisecond))
	b.convEnd = b.marks()
	<-cpuProfile
	ratio := converged.Seconds() / b.baselineTook.Seconds()
	b.r.add("convergence time", converged.Seconds(), "s", "", nil)
	b.r.add("baseline time", b.baselineTook.Seconds(), "s", "", nil)
	b.r.add("convergence / baseline", ratio, "ratio", "<= 1.25", le(ratio, 1.25))
}

// amplification compares the operator's calls during convergence with the
// minimal ones: 3 Kubernetes writes and 1 backend call per token.
func (b *benchRun) amplification() {
	t, n := b.t, b.n
	k8sCalls := auditCounts(t, b.c.AuditLogPath, b.convStart.audit, b.convEnd.audit)
	total, writes, conflicts, events := convergenceCalls(k8sCalls)
	t.Logf("Kubernetes requests during convergence: %v", k8sCalls)
	minimal := float64(3 * n)
	conflictPct := 100 * float64(conflicts) / float64(max(1, writes))
	b.r.add("API amplification", float64(total)/minimal, "ratio", "<= 1.10", le(float64(total)/minimal, 1.10))
	b.r.add("events created per token (separate)", float64(events)/float64(n), "events", "", nil)
	b.r.add("API 409 conflicts / writes", conflictPct, "%", "< 0.5", le(conflictPct, 0.5))
	backendCalls := tokenServiceCounts(t, b.c.TokenServiceLogPath(), b.convStart.ts, b.convEnd.ts)
	t.Logf("backend calls during convergence: %v", backendCalls)
	perToken := float64(sumCounts(backendCalls)) / float64(n)
	b.r.add("backend calls per token (convergence)", perToken, "calls", "<= 1.02", le(perToken, 1.02))
}

// convergenceCalls sums auditCounts: all requests but leases and events, the
// writes among them, the 409s, and the events (a feature, reported on their own).
func convergenceCalls(k8sCalls map[string]int) (total, writes, conflicts, events int) {
	for key, count := range k8sCalls {
		if strings.Contains(key, "leases") {
			continue
		}
		if strings.Contains(key, " events ") {
			events += count
			continue
		}
		total += count
		if strings.HasPrefix(key, "create") || strings.HasPrefix(key, "update") || strings.HasPrefix(key, "patch") || strings.HasPrefix(key, "delete") {
			writes += count
		}
		if strings.HasSuffix(key, " 409") {
			conflicts += count
		}
	}
	return total, writes, conflicts, events
}

func runBaseline(t *testing.T, n int, admin, operator client.Client, be *backend.Client) {
	ctx := t.Context()
	parallel(n, *workers, func(i int) {
		at := apiToken("baseline", fmt.Sprintf("b%d", i))
		if err := admin.Create(ctx, at); err != nil {
			t.Error(err)
			return
		}
		tok, creds, err := be.Create(ctx, "baseline/"+string(at.UID), backend.CreateRequest{Name: at.Name, PrimaryContact: "ops@example.com",
			Scopes: []string{"reports:read"}, State: "Enabled", ExternalID: string(at.UID)})
		if err != nil {
			t.Error(err)
			return
		}
		patch := client.MergeFrom(at.DeepCopy())
		at.Finalizers = []string{"bench.apitoken.dev/baseline"}
		if err := operator.Patch(ctx, at, patch); err != nil {
			t.Error(err)
			return
		}
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: at.Name, Namespace: at.Namespace,
			Labels: map[string]string{tokensv1alpha1.ManagedByLabel: "bench-baseline"}},
			Data: map[string][]byte{"accountSid": []byte(tok.SID), "authToken": []byte(creds.AuthToken.Reveal())}}
		if err := operator.Create(ctx, s); err != nil {
			t.Error(err)
			return
		}
		statusPatch := client.MergeFrom(at.DeepCopy())
		at.Status.AccountSID = tok.SID
		meta.SetStatusCondition(&at.Status.Conditions, metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Ready", Message: "baseline"})
		if err := operator.Status().Patch(ctx, at, statusPatch); err != nil {
			t.Error(err)
		}
	})
}

func cleanupBaseline(t *testing.T, n int, admin client.Client) {
	ctx := t.Context()
	parallel(n, 20, func(i int) {
		at := &tokensv1alpha1.ApiToken{}
		if admin.Get(ctx, client.ObjectKey{Namespace: "baseline", Name: fmt.Sprintf("b%d", i)}, at) != nil {
			return
		}
		patch := client.MergeFrom(at.DeepCopy())
		at.Finalizers = nil
		_ = admin.Patch(ctx, at, patch)
		_ = admin.Delete(ctx, at)
		_ = admin.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "baseline", Name: at.Name}})
	})
}

func createTokens(t *testing.T, admin client.Client, ns, prefix string, n int) {
	parallel(n, 20, func(i int) {
		if err := admin.Create(t.Context(), apiToken(ns, fmt.Sprintf("%s%d", prefix, i))); err != nil {
			t.Error(err)
		}
	})
}

// convergeWatched runs create and waits until n ApiTokens in ns are Ready with
// their Secrets, seen through a watch opened before it; it returns when each
// became Ready. A watch that the API server ends (a busy consumer on a busy
// machine) is resumed after a list, which times what it finds at the list.
func convergeWatched(t *testing.T, c client.WithWatch, ns string, n int, timeout time.Duration, create func()) []time.Time {
	readyAt := map[string]time.Time{}
	observe := func(at *tokensv1alpha1.ApiToken) {
		if _, seen := readyAt[at.Name]; !seen && framework.ConditionTrue(at.Status.Conditions, tokensv1alpha1.ConditionReady) && at.Status.SecretName != "" {
			readyAt[at.Name] = time.Now()
		}
	}
	watchFrom := func(resourceVersion string) watch.Interface {
		w, err := c.Watch(t.Context(), &tokensv1alpha1.ApiTokenList{}, &client.ListOptions{Namespace: ns, Raw: &metav1.ListOptions{ResourceVersion: resourceVersion}})
		mustDo(t, err)
		return w
	}
	w := watchFrom("")
	defer func() { w.Stop() }()
	created := make(chan struct{})
	go func() {
		defer close(created)
		create() // while the watch is read: an unread watch is ended by the API server
	}()
	defer func() { <-created }()
	deadline := time.After(timeout)
	for len(readyAt) < n {
		select {
		case e, ok := <-w.ResultChan():
			if !ok {
				list := &tokensv1alpha1.ApiTokenList{}
				mustDo(t, c.List(t.Context(), list, client.InNamespace(ns)))
				for i := range list.Items {
					observe(&list.Items[i])
				}
				w = watchFrom(list.ResourceVersion)
				continue
			}
			if at, isToken := e.Object.(*tokensv1alpha1.ApiToken); isToken && e.Type != watch.Deleted {
				observe(at)
			}
		case <-deadline:
			t.Fatalf("timed out: %d of %d ApiTokens Ready", len(readyAt), n)
		}
	}
	times := slices.Collect(maps.Values(readyAt))
	slices.SortFunc(times, time.Time.Compare)
	return times
}
