package controllers

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// The trust boundary against envtest and tokenservice (docs/design.md, "Trust
// boundary"; invariant 9): what a tenant writes into its ApiToken's status,
// annotations and restart targets never reaches another tenant's token or
// workload, and incident response works while the ApiToken is blocked.

// twoTenants makes a Ready ApiToken in each of two namespaces.
func twoTenants(t *testing.T) (a, b *tokensv1alpha1.ApiToken) {
	t.Helper()
	g := NewWithT(t)
	a = newApiToken(newNamespace(t, nil), "tenant-a")
	b = newApiToken(newNamespace(t, nil), "tenant-b")
	g.Expect(k8s.Create(t.Context(), a)).To(Succeed())
	g.Expect(k8s.Create(t.Context(), b)).To(Succeed())
	return waitReady(t, a), waitReady(t, b)
}

// forgeStatus writes the ApiToken's status as a tenant with access to the status
// subresource can.
func forgeStatus(t *testing.T, at *tokensv1alpha1.ApiToken, mutate func(*tokensv1alpha1.ApiTokenStatus)) {
	t.Helper()
	NewWithT(t).Eventually(func() error {
		current := get(t, at)
		patch := client.MergeFrom(current.DeepCopy())
		mutate(&current.Status)
		return k8s.Status().Patch(t.Context(), current, patch)
	}, wait, tick).Should(Succeed())
}

// A status naming another tenant's SID, then a reset: the other token is neither
// read, reset nor handed out; the tenant's own token is reset and the status
// rebuilt from the lookup by externalId.
func TestForgedAccountSidNeverReachesAnotherTenant(t *testing.T) {
	g := NewWithT(t)
	a, b := twoTenants(t)
	ownSID, victim := a.Status.AccountSID, b.Status.AccountSID
	victimCreds := secretCreds(t, b.Namespace, b.Name)
	victimGeneration := generationOf(t, victim)

	forgeStatus(t, a, func(st *tokensv1alpha1.ApiTokenStatus) { st.AccountSID = victim; st.BackendETag = "" })
	annotate(t, a, tokensv1alpha1.ResetAnnotation, "steal")

	g.Eventually(func() bool { return hasEvent(t, a, corev1.EventTypeWarning, tokensv1alpha1.ReasonForeignToken) }, wait, tick).Should(BeTrue())
	g.Eventually(func(g Gomega) {
		at := get(t, a)
		g.Expect(at.Status.AccountSID).To(Equal(ownSID), "status rebuilt from the lookup by externalId")
		g.Expect(at.Status.LastHandledReset).To(Equal("steal"))
	}, wait, tick).Should(Succeed())
	g.Expect(generationOf(t, victim)).To(Equal(victimGeneration), "the other tenant's token was reset")
	g.Expect(generationOf(t, ownSID)).To(BeEquivalentTo(2), "the reset went to the tenant's own token")
	g.Expect(verifyStatus(t, victimCreds, "reports:read")).To(Equal(200), "the other tenant's consumers were cut off")
	g.Consistently(func(g Gomega) {
		got := secretCreds(t, a.Namespace, a.Name)
		g.Expect(got.AccountSID).To(Equal(ownSID))
		g.Expect(got.AuthToken.Reveal()).NotTo(Equal(victimCreds.AuthToken.Reveal()), "the other tenant's auth token was written into this Secret")
		g.Expect(verifyStatus(t, got, "reports:read")).To(Equal(200))
	}, framework.QuietPeriod, 200*time.Millisecond).Should(Succeed())
}

// A forged SID with the Secret gone: the credentials are fetched only from the
// tenant's own token.
func TestForgedAccountSidNeverHandsOutForeignCredentials(t *testing.T) {
	g := NewWithT(t)
	a, b := twoTenants(t)
	victimCreds := secretCreds(t, b.Namespace, b.Name)
	forgeStatus(t, a, func(st *tokensv1alpha1.ApiTokenStatus) { st.AccountSID = b.Status.AccountSID })
	g.Expect(k8s.Delete(t.Context(), getSecret(t, a.Namespace, a.Name))).To(Succeed())

	g.Eventually(func(g Gomega) {
		s := &corev1.Secret{}
		g.Expect(k8s.Get(t.Context(), client.ObjectKey{Namespace: a.Namespace, Name: a.Name}, s)).To(Succeed())
		g.Expect(string(s.Data["accountSid"])).To(Equal(a.Status.AccountSID))
	}, wait, tick).Should(Succeed())
	g.Expect(secretCreds(t, a.Namespace, a.Name).AuthToken.Reveal()).NotTo(Equal(victimCreds.AuthToken.Reveal()))
	g.Expect(hasEvent(t, a, corev1.EventTypeWarning, tokensv1alpha1.ReasonForeignToken)).To(BeTrue())
}

// Another tenant's SID listed as retiring (already due): never deleted, dropped
// from the list with a ForeignToken warning.
func TestForgedRetiringTokenIsNeverDeleted(t *testing.T) {
	g := NewWithT(t)
	a, b := twoTenants(t)
	victimCreds := secretCreds(t, b.Namespace, b.Name)
	forgeStatus(t, a, func(st *tokensv1alpha1.ApiTokenStatus) {
		st.RetiringTokens = []tokensv1alpha1.RetiringToken{{AccountSID: b.Status.AccountSID, DeleteAfter: metav1.NewTime(time.Now().Add(-time.Minute))}}
	})
	annotate(t, a, "touch", "1")
	update(t, a, func(at *tokensv1alpha1.ApiToken) { at.Spec.Description = "touched" })

	g.Eventually(func() bool { return hasEvent(t, a, corev1.EventTypeWarning, tokensv1alpha1.ReasonForeignToken) }, wait, tick).Should(BeTrue())
	g.Eventually(func() []tokensv1alpha1.RetiringToken { return get(t, a).Status.RetiringTokens }, wait, tick).Should(BeEmpty())
	g.Expect(verifyStatus(t, victimCreds, "reports:read")).To(Equal(200), "the other tenant's token was deleted")

	// Deleting the forging ApiToken under Orphan deletes its retiring tokens:
	// still never the other tenant's.
	forgeStatus(t, a, func(st *tokensv1alpha1.ApiTokenStatus) {
		st.RetiringTokens = []tokensv1alpha1.RetiringToken{{AccountSID: b.Status.AccountSID, DeleteAfter: metav1.NewTime(time.Now().Add(time.Hour))}}
	})
	update(t, a, func(at *tokensv1alpha1.ApiToken) { at.Spec.DeletionPolicy = tokensv1alpha1.DeletionPolicyOrphan })
	g.Expect(k8s.Delete(t.Context(), a)).To(Succeed())
	waitGone(t, a)
	g.Expect(verifyStatus(t, victimCreds, "reports:read")).To(Equal(200), "the other tenant's token was deleted with the forging ApiToken")
}

// A tightened policy stalls the ApiToken; a reset, disabled: true and narrower
// scopes still reach its token (incident response is never blocked).
func TestIncidentResponseWhileStalledByPolicy(t *testing.T) {
	g := NewWithT(t)
	tb := policyBackend(t, "incident", nil)
	ns := newNamespace(t, nil)
	at := onBackend(newApiToken(ns, "leaked"), "incident", "reports:read", "accounts:write", "actions:read")
	g.Expect(k8s.Create(t.Context(), at)).To(Succeed())
	at = waitReady(t, at)
	sid := at.Status.AccountSID
	leaked := secretCreds(t, ns, "leaked")

	patch := client.MergeFrom(tb.DeepCopy())
	tb.Spec.Policy = &tokensv1alpha1.TokenBackendPolicy{AllowedScopes: []string{"reports:*"}}
	g.Expect(k8s.Patch(t.Context(), tb, patch)).To(Succeed())
	waitCondition(t, at, tokensv1alpha1.ConditionStalled, metav1.ConditionTrue, tokensv1alpha1.ReasonPolicyViolation)

	annotate(t, at, tokensv1alpha1.ResetAnnotation, "incident-42")
	g.Eventually(func() int { return verifyStatus(t, leaked, "reports:read") }, wait, tick).Should(Equal(401), "the leaked token still works")
	g.Eventually(func() int { return verifyStatus(t, secretCreds(t, ns, "leaked"), "reports:read") }, wait, tick).Should(Equal(200))
	g.Eventually(func() string { return get(t, at).Status.LastHandledReset }, wait, tick).Should(Equal("incident-42"))

	// Narrower scopes (still not allowed: accounts:write stays) are applied; a
	// new scope would not be.
	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = []string{"reports:read", "accounts:write"} })
	g.Eventually(func() []string { tok, _, _ := tsAdmin.Get(t.Context(), sid, ""); return tok.Scopes }, wait, tick).
		Should(ConsistOf("reports:read", "accounts:write"))
	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Disabled = true })
	g.Eventually(func() backend.State { tok, _, _ := tsAdmin.Get(t.Context(), sid, ""); return tok.State }, wait, tick).Should(Equal(backend.StateDisabled))
	g.Expect(verifyStatus(t, secretCreds(t, ns, "leaked"), "reports:read")).To(Equal(401))
	at = waitCondition(t, at, tokensv1alpha1.ConditionStalled, metav1.ConditionTrue, tokensv1alpha1.ReasonPolicyViolation)
	g.Expect(at.Status.State).To(Equal(tokensv1alpha1.TokenState(backend.StateDisabled)))
}

// A namespace that lost access to its TokenBackend can still reset its token.
func TestResetAfterTheNamespaceLostAccess(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t, map[string]string{"tier": "gold"})
	tb := createBackend(t, "gold-only", &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "gold"}})
	at := createReady(t, onBackend(newApiToken(ns, "lost"), tb.Name, "reports:read", "actions:read"))
	leaked := secretCreds(t, ns, "lost")

	nsObj := &corev1.Namespace{}
	g.Expect(k8s.Get(t.Context(), client.ObjectKey{Name: ns}, nsObj)).To(Succeed())
	nsPatch := client.MergeFrom(nsObj.DeepCopy())
	nsObj.Labels["tier"] = "bronze"
	g.Expect(k8s.Patch(t.Context(), nsObj, nsPatch)).To(Succeed())
	waitCondition(t, at, tokensv1alpha1.ConditionStalled, metav1.ConditionTrue, tokensv1alpha1.ReasonNamespaceNotAllowed)

	annotate(t, at, tokensv1alpha1.ResetAnnotation, "leak")
	g.Eventually(func() int { return verifyStatus(t, leaked, "reports:read") }, wait, tick).Should(Equal(401))
	g.Eventually(func() int { return verifyStatus(t, secretCreds(t, ns, "lost"), "reports:read") }, wait, tick).Should(Equal(200))
}

// Deleting a paused ApiToken whose TokenBackend allows only Delete deletes its
// backend tokens, retiring ones included.
func TestPausedDeletionHonoursAllowedDeletionPolicies(t *testing.T) {
	g := NewWithT(t)
	policyBackend(t, "delete-only", &tokensv1alpha1.TokenBackendPolicy{AllowedDeletionPolicies: []tokensv1alpha1.DeletionPolicy{tokensv1alpha1.DeletionPolicyDelete}})
	ns := newNamespace(t, nil)
	at := onBackend(newApiToken(ns, "paused"), "delete-only", "reports:read")
	at.Spec.Rotation.Overlap = &metav1.Duration{Duration: time.Hour}
	at = createReady(t, at)
	annotate(t, at, tokensv1alpha1.RotateAnnotation, "r1")
	g.Eventually(func() []tokensv1alpha1.RetiringToken { return get(t, at).Status.RetiringTokens }, wait, tick).Should(HaveLen(1))
	g.Expect(backendTokens(t, at)).To(HaveLen(2))

	annotate(t, at, tokensv1alpha1.PausedAnnotation, "true")
	waitCondition(t, at, tokensv1alpha1.ConditionPaused, metav1.ConditionTrue, "")
	deleteReleasesBackendTokens(t, at, "a paused ApiToken's deletion orphaned tokens that the TokenBackend says must be deleted")
}

// Deleting a paused ApiToken where Orphan is allowed keeps the current token and
// the Secret, and deletes the retiring tokens.
func TestPausedDeletionAsOrphanDeletesRetiringTokens(t *testing.T) {
	g := NewWithT(t)
	ns, at := readyToken(t, "paused-orphan", func(at *tokensv1alpha1.ApiToken) {
		at.Spec.Rotation.Overlap = &metav1.Duration{Duration: time.Hour}
	})
	annotate(t, at, tokensv1alpha1.RotateAnnotation, "r1")
	g.Eventually(func() []tokensv1alpha1.RetiringToken { return get(t, at).Status.RetiringTokens }, wait, tick).Should(HaveLen(1))
	at = get(t, at)
	current, retiring := at.Status.AccountSID, at.Status.RetiringTokens[0].AccountSID

	annotate(t, at, tokensv1alpha1.PausedAnnotation, "true")
	waitCondition(t, at, tokensv1alpha1.ConditionPaused, metav1.ConditionTrue, "")
	g.Expect(k8s.Delete(t.Context(), at)).To(Succeed())
	waitGone(t, at)
	_, _, err := tsAdmin.Get(t.Context(), current, "")
	g.Expect(err).NotTo(HaveOccurred(), "the current token is left as under Orphan")
	_, _, err = tsAdmin.Get(t.Context(), retiring, "")
	g.Expect(errors.Is(err, backend.ErrNotFound)).To(BeTrue(), "the retiring token was leaked: %v", err)
	g.Expect(getSecret(t, ns, "paused-orphan").OwnerReferences).To(BeEmpty())
}

// A storm of rotate nonces with the longest overlap leaves at most 8 retiring
// tokens, every backend token of the ApiToken tracked in its status, and the
// deferred rotation reported.
func TestRotateStormIsBoundedAndTracked(t *testing.T) {
	g := NewWithT(t)
	ns, at := readyToken(t, "storm", func(at *tokensv1alpha1.ApiToken) {
		at.Spec.Rotation.Overlap = &metav1.Duration{Duration: 168 * time.Hour}
	})
	for i := range 14 {
		annotate(t, at, tokensv1alpha1.RotateAnnotation, fmt.Sprintf("storm-%d", i))
		time.Sleep(50 * time.Millisecond) // a user's pace: some nonces arrive mid-pass
	}
	at = waitCondition(t, at, tokensv1alpha1.ConditionReconciling, metav1.ConditionTrue, tokensv1alpha1.ReasonRotationDeferred)
	g.Expect(at.Status.RetiringTokens).To(HaveLen(maxRetiringTokens))
	g.Consistently(func(g Gomega) {
		at := get(t, at)
		tracked := map[string]bool{at.Status.AccountSID: true}
		for _, r := range at.Status.RetiringTokens {
			tracked[r.AccountSID] = true
		}
		for _, tok := range backendTokens(t, at) {
			g.Expect(tracked).To(HaveKey(tok.SID), "backend token %s of the ApiToken is in no status field", tok.SID)
		}
		g.Expect(len(at.Status.RetiringTokens)).To(BeNumerically("<=", maxRetiringTokens))
	}, framework.QuietPeriod, 200*time.Millisecond).Should(Succeed())
	g.Expect(verifyStatus(t, secretCreds(t, ns, "storm"), "reports:read")).To(Equal(200))
}

// Only a restart target whose pod template consumes the Secret is rolled.
func TestRestartTargetThatDoesNotConsumeTheSecretIsNotRolled(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t, nil)
	consumer := framework.ConsumerDeployment(ns, "reporting", "levers")
	bystander := framework.ConsumerDeployment(ns, "payments", "")
	g.Expect(k8s.Create(t.Context(), consumer)).To(Succeed())
	g.Expect(k8s.Create(t.Context(), bystander)).To(Succeed())
	at := newApiToken(ns, "levers")
	at.Spec.Secret.RestartTargets = []tokensv1alpha1.RestartTarget{{Kind: tokensv1alpha1.RestartTargetDeployment, Name: "reporting"}, {Kind: tokensv1alpha1.RestartTargetDeployment, Name: "payments"}}
	g.Expect(k8s.Create(t.Context(), at)).To(Succeed())
	at = waitReady(t, at)

	annotate(t, at, tokensv1alpha1.ResetAnnotation, "r1")
	g.Eventually(func() string {
		d := &appsv1.Deployment{}
		g.Expect(k8s.Get(t.Context(), client.ObjectKeyFromObject(consumer), d)).To(Succeed())
		return d.Spec.Template.Annotations[tokensv1alpha1.CredentialsAnnotation]
	}, wait, tick).ShouldNot(BeEmpty())
	g.Eventually(func() bool {
		return hasEvent(t, at, corev1.EventTypeWarning, tokensv1alpha1.ReasonRestartTargetNotConsumer)
	}, wait, tick).Should(BeTrue())
	d := &appsv1.Deployment{}
	g.Expect(k8s.Get(t.Context(), client.ObjectKeyFromObject(bystander), d)).To(Succeed())
	g.Expect(d.Spec.Template.Annotations).NotTo(HaveKey(tokensv1alpha1.CredentialsAnnotation), "a workload that does not use the Secret was rolled")
}

// Secrets that merely carry the operator's label cost the operator nothing: 40
// of 700 KiB add under 2 MiB to its heap (Secrets are watched as metadata), and
// the cache keeps not even their annotations.
func TestLabelledForeignSecretsCostNoMemory(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t, nil)
	before := heapInUse()
	for i := range 40 {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("big-%d", i), Namespace: ns, Labels: map[string]string{tokensv1alpha1.ManagedByLabel: tokensv1alpha1.ManagedByValue}},
			Data:       map[string][]byte{"blob": make([]byte, 700<<10)},
		}
		g.Expect(k8s.Create(t.Context(), s)).To(Succeed())
	}
	g.Eventually(func(g Gomega) {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
		g.Expect(operatorCache.List(t.Context(), list, client.InNamespace(ns))).To(Succeed())
		g.Expect(list.Items).To(HaveLen(40))
		for _, s := range list.Items {
			g.Expect(s.Annotations).To(BeNil(), "the cache holds the annotations of a Secret no ApiToken controls")
		}
	}, wait, tick).Should(Succeed())
	grown := int64(heapInUse()) - int64(before)
	t.Logf("heap grew by %d KiB for 40 labelled Secrets of 700 KiB", grown>>10)
	g.Expect(grown).To(BeNumerically("<", 2<<20), "40 labelled Secrets of 700 KiB cost the operator %d KiB of heap", grown>>10)
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
