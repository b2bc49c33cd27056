package controllers

import (
	"errors"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// staleCatalog makes the suite's tokenservice offer in its catalog a scope, a
// contact and an API version that it then rejects, as a catalog gone stale would:
// TestBackendRejectionStallsWithoutRetryStorm reaches the backend's own refusal
// with them, past the operator's catalog check.
var staleCatalog = framework.StaleCatalog([]string{"nosuch:read"}, []string{"stranger@example.com"}, []int{99})

// installAdmissionPolicy installs config/admission for the rest of the test.
func installAdmissionPolicy(t *testing.T) {
	t.Helper()
	uninstall, err := framework.InstallAdmissionPolicy(t.Context(), k8s, "..")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := uninstall(); err != nil {
			t.Errorf("uninstall the admission policy: %v", err)
		}
	})
}

// policyBackend creates a TokenBackend on the suite's tokenservice with the
// policy, and waits until it has published its catalog.
func policyBackend(t *testing.T, name string, policy *tokensv1alpha1.TokenBackendPolicy) *tokensv1alpha1.TokenBackend {
	t.Helper()
	tb := newBackend(name, nil)
	tb.Spec.Policy = policy
	if err := k8s.Create(t.Context(), tb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(t.Context(), tb) })
	NewWithT(t).Eventually(func(g Gomega) {
		g.Expect(k8s.Get(t.Context(), client.ObjectKeyFromObject(tb), tb)).To(Succeed())
		g.Expect(tb.Status.Catalog).NotTo(BeNil())
	}, wait, tick).Should(Succeed())
	return tb
}

func onBackend(at *tokensv1alpha1.ApiToken, name string, scopes ...string) *tokensv1alpha1.ApiToken {
	at.Spec.BackendRef.Name = name
	at.Spec.Scopes = scopes
	return at
}

func TestTokenBackendPublishesCatalogWithoutSteadyWrites(t *testing.T) {
	g := NewWithT(t)
	tb := policyBackend(t, "catalog", nil)
	c := tb.Status.Catalog
	g.Expect(c.APIVersions).To(Equal([]int32{12, 13, 14, 15, 16, 99}))
	g.Expect(c.Contacts).To(Equal([]string{"admin@example.com", "ops@example.com", "stranger@example.com"}))
	g.Expect(c.Scopes).To(HaveLen(33)) // 16 categories, read and write, and the stale one
	g.Expect(slices.IsSorted(c.Scopes)).To(BeTrue())

	// Once the catalog is older than the resync interval, any event fetches it
	// again; the same catalog writes nothing.
	time.Sleep(testResync + time.Second)
	patch := client.MergeFrom(tb.DeepCopy())
	tb.Annotations = map[string]string{"test": "refetch"}
	g.Expect(k8s.Patch(t.Context(), tb, patch)).To(Succeed())
	framework.ExpectNoWrites(t, k8s, tb, "the refetched, unchanged catalog was written")
}

// The admission policy of config/admission, bound with every TokenBackend as a
// param, applies to each ApiToken only the rules of the TokenBackend it names,
// with the catalog that the operator published. What each rule refuses, and
// with which message, is framework.PolicyCases (run against the admission
// policy by test/reliability, against the operator's rules by
// TestPolicyCasesAtReconcile).
func TestAdmissionRefusesWhatTheBackendDoesNotAllow(t *testing.T) {
	installAdmissionPolicy(t)
	policyBackend(t, "tenant-a", &tokensv1alpha1.TokenBackendPolicy{
		AllowedScopes:           []string{"reports:*", "*:read"},
		AllowedDeletionPolicies: []tokensv1alpha1.DeletionPolicy{tokensv1alpha1.DeletionPolicyDelete, tokensv1alpha1.DeletionPolicyDisable},
	})
	ns := newNamespace(t, nil)
	// A scope that the policy allows and the published catalog lacks: refused
	// once admission has read the catalog of tokenservice that the operator wrote.
	refusal, err := framework.WaitUntilRefused(t.Context(), k8s, onBackend(newApiToken(ns, "probe"), "tenant-a", "zebras:read"))
	if err != nil {
		t.Fatalf("the admission policy never refused: %v", err)
	}
	expectRefusedBy(t, refusal, metav1.StatusReasonInvalid, "scopes [zebras:read] are not in the catalog of TokenBackend tenant-a")

	admitted := map[string]*tokensv1alpha1.ApiToken{
		"within the policy and the catalog": onBackend(newApiToken(ns, "allowed"), "tenant-a", "reports:write", "deals:read"),
		// The same spec, on a backend without a policy: tenant-a's rules stay its own.
		"on another backend":               onBackend(newApiToken(ns, "elsewhere"), tokensv1alpha1.DefaultBackendName, "accounts:write"),
		"on a backend that does not exist": onBackend(newApiToken(ns, "nowhere"), "no-such-backend", "accounts:write"),
	}
	for name, at := range admitted {
		t.Run("admitted: "+name, func(t *testing.T) {
			if err := k8s.Create(t.Context(), at, client.DryRunAll); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}

	allowed := admitted["within the policy and the catalog"].DeepCopy()
	allowed.ResourceVersion = ""
	if err := k8s.Create(t.Context(), allowed); err != nil {
		t.Fatal(err)
	}
	waitReady(t, allowed)
}

// A token that was allowed when it was made, and that a tightened policy no
// longer allows: left as it is, Stalled with one Warning event, never narrowed;
// its metadata can still change, and deleting it releases its backend token.
func TestTightenedPolicyLeavesLiveTokenAsItIs(t *testing.T) {
	g := NewWithT(t)
	installAdmissionPolicy(t)
	tb := policyBackend(t, "tenant-b", nil)
	ns := newNamespace(t, nil)
	at := onBackend(newApiToken(ns, "widened"), "tenant-b", "reports:read", "accounts:write")
	g.Expect(k8s.Create(t.Context(), at)).To(Succeed())
	at = waitReady(t, at)
	sid := at.Status.AccountSID
	tokenBefore, _, err := tsAdmin.Get(t.Context(), sid, "")
	g.Expect(err).NotTo(HaveOccurred())
	secretBefore := getSecret(t, ns, "widened")

	patch := client.MergeFrom(tb.DeepCopy())
	tb.Spec.Policy = &tokensv1alpha1.TokenBackendPolicy{AllowedScopes: []string{"reports:*"}}
	g.Expect(k8s.Patch(t.Context(), tb, patch)).To(Succeed())

	want := "scopes [accounts:write] are not allowed by TokenBackend tenant-b"
	at = waitCondition(t, at, tokensv1alpha1.ConditionStalled, metav1.ConditionTrue, tokensv1alpha1.ReasonPolicyViolation)
	g.Expect(meta.FindStatusCondition(at.Status.Conditions, tokensv1alpha1.ConditionStalled).Message).To(Equal(want))
	g.Expect(meta.FindStatusCondition(at.Status.Conditions, tokensv1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionFalse))
	g.Eventually(func() bool { return hasEvent(t, at, corev1.EventTypeWarning, tokensv1alpha1.ReasonPolicyViolation) }, wait, tick).Should(BeTrue())
	framework.ExpectNoWrites(t, k8s, at, "a stalled token keeps writing")
	warnings := 0
	for _, e := range eventsFor(t, at) {
		if e.Reason == tokensv1alpha1.ReasonPolicyViolation {
			warnings++
		}
	}
	g.Expect(warnings).To(Equal(1), "one Warning event")

	tokenAfter, _, err := tsAdmin.Get(t.Context(), sid, "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tokenAfter.ETag).To(Equal(tokenBefore.ETag), "the backend token was changed")
	g.Expect(tokenAfter.Scopes).To(ConsistOf("reports:read", "accounts:write"))
	g.Expect(getSecret(t, ns, "widened").ResourceVersion).To(Equal(secretBefore.ResourceVersion), "the Secret was changed")

	// Admission leaves updates that keep the spec alone to the operator, and
	// refuses a spec change that keeps the violation, with the same message.
	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Labels = map[string]string{"team": "analytics"} })
	edited := get(t, at)
	edited.Spec.Description = "still too wide"
	err = k8s.Update(t.Context(), edited)
	g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "spec change keeping the violation: %v", err)
	g.Expect(err.Error()).To(ContainSubstring(want))

	g.Expect(k8s.Delete(t.Context(), at)).To(Succeed())
	waitGone(t, at)
	_, _, err = tsAdmin.Get(t.Context(), sid, "")
	g.Expect(errors.Is(err, backend.ErrNotFound)).To(BeTrue(), "backend token after delete: %v", err)
}

// Without the admission policy (not installed, or the ApiToken admitted before
// the catalog or policy said no), the operator refuses on its own, before any
// backend call, and proceeds once the spec or the policy changes.
func TestPolicyViolationStallsBeforeAnyBackendCall(t *testing.T) {
	g := NewWithT(t)
	tb := policyBackend(t, "tenant-c", &tokensv1alpha1.TokenBackendPolicy{
		AllowedScopes:           []string{"reports:read"},
		AllowedDeletionPolicies: []tokensv1alpha1.DeletionPolicy{tokensv1alpha1.DeletionPolicyDelete},
	})
	ns := newNamespace(t, nil)
	at := onBackend(newApiToken(ns, "forbidden"), "tenant-c", "reports:read", "zebras:read", "actions:read")
	at.Spec.DeletionPolicy = tokensv1alpha1.DeletionPolicyOrphan
	g.Expect(k8s.Create(t.Context(), at)).To(Succeed())

	stalledWith := func(message string) {
		t.Helper()
		got := waitCondition(t, at, tokensv1alpha1.ConditionStalled, metav1.ConditionTrue, tokensv1alpha1.ReasonPolicyViolation)
		g.Expect(meta.FindStatusCondition(got.Status.Conditions, tokensv1alpha1.ConditionStalled).Message).To(Equal(message))
		g.Expect(got.Status.AccountSID).To(BeEmpty())
		g.Expect(backendTokens(t, at)).To(BeEmpty(), "a token was created")
	}
	stalledWith("scopes [zebras:read] are not in the catalog of TokenBackend tenant-c; " +
		"scopes [zebras:read, actions:read] are not allowed by TokenBackend tenant-c; " +
		"deletionPolicy Orphan is not allowed by TokenBackend tenant-c")

	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = []string{"reports:read", "actions:read"} })
	stalledWith("scopes [actions:read] are not allowed by TokenBackend tenant-c; deletionPolicy Orphan is not allowed by TokenBackend tenant-c")

	// A looser policy reaches the waiting ApiToken through the TokenBackend watch.
	patch := client.MergeFrom(tb.DeepCopy())
	tb.Spec.Policy.AllowedScopes = []string{"*:read"}
	tb.Spec.Policy.AllowedDeletionPolicies = nil
	g.Expect(k8s.Patch(t.Context(), tb, patch)).To(Succeed())
	waitReady(t, at)
	tokens := backendTokens(t, at)
	g.Expect(tokens).To(HaveLen(1))
	g.Expect(tokens[0].Scopes).To(ConsistOf("reports:read", "actions:read"))
}
