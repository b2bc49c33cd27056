package controllers

import (
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
	"github.com/apitoken-dev/apitoken-operator/test/framework"
)

// adoptingBackend is a TokenBackend that allows adoption in namespaces labelled
// migration=true.
func adoptingBackend(t *testing.T, name string) *tokensv1alpha1.TokenBackend {
	t.Helper()
	tb := newBackend(name, nil)
	tb.Spec.Policy = &tokensv1alpha1.TokenBackendPolicy{AdoptionNamespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"migration": "true"}}}
	if err := controlPlane.CreateTokenBackend(t.Context(), tb); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(t.Context(), tb) })
	return tb
}

// handMade creates a token directly through the API, as the web UI would.
func handMade(t *testing.T, name string) (*backend.Token, backend.Credentials) {
	t.Helper()
	tok, creds, err := tsAdmin.Create(t.Context(), "hand-made-"+name, backend.CreateRequest{
		Name: name, Description: "integration test", PrimaryContact: "ops@example.com", DeveloperEmails: []string{"dev@example.com"},
		Scopes: []string{"actions:read", "reports:read"}, State: backend.StateEnabled,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok, creds
}

func adopting(ns, name, backendName, sid string) *tokensv1alpha1.ApiToken {
	at := newApiToken(ns, name)
	at.Spec.BackendRef.Name = backendName
	at.Spec.APIVersion = nil
	at.Spec.Adopt = &tokensv1alpha1.Adoption{AccountSID: sid}
	return at
}

func TestAdoptionTakesOverAHandMadeTokenWithoutAReset(t *testing.T) {
	g := NewWithT(t)
	tb := adoptingBackend(t, "adopting")
	tok, creds := handMade(t, "by-hand")
	ns := newNamespace(t, map[string]string{"migration": "true"})
	at := adopting(ns, "by-hand", tb.Name, tok.SID)
	at.Spec.DisplayName = "by-hand"
	g.Expect(k8s.Create(t.Context(), at)).To(Succeed())
	at = waitReady(t, at)

	g.Expect(at.Status.AccountSID).To(Equal(tok.SID))
	g.Expect(at.Status.History).To(HaveLen(1))
	g.Expect(at.Status.History[0].Type).To(Equal(tokensv1alpha1.CredentialsAdopted))
	got := framework.CredentialsOf(getSecret(t, ns, "by-hand"))
	g.Expect(got.AccountSID).To(Equal(creds.AccountSID))
	g.Expect(got.AuthToken.Reveal()).To(Equal(creds.AuthToken.Reveal()), "the Secret holds the token's current credentials")
	g.Expect(verifyStatus(t, creds, "reports:read")).To(Equal(200), "the consumer of the hand-made credentials is never refused")
	after, _, err := tsAdmin.Get(t.Context(), tok.SID, "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(after.ExternalID).To(Equal(string(at.UID)), "claimed")
	g.Expect(after.Generation).To(Equal(tok.Generation), "no reset")
	g.Expect(hasEvent(t, at, corev1.EventTypeNormal, "Updated")).To(BeFalse(), "a spec that matches changes nothing")
}

func TestAdoptionRefusedChangesNothing(t *testing.T) {
	g := NewWithT(t)
	tb := adoptingBackend(t, "adopting-refused")
	tok, _ := handMade(t, "not-here")
	cases := map[string]struct {
		labels map[string]string
		sid    string
		reason string
	}{
		"namespace not selected": {labels: nil, sid: tok.SID, reason: tokensv1alpha1.ReasonAdoptionNotAllowed},
		"token not found":        {labels: map[string]string{"migration": "true"}, sid: "TKnosuchtoken", reason: tokensv1alpha1.ReasonAdoptionConflict},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			ns := newNamespace(t, tc.labels)
			at := adopting(ns, "refused", tb.Name, tc.sid)
			g.Expect(k8s.Create(t.Context(), at)).To(Succeed())
			waitCondition(t, at, tokensv1alpha1.ConditionStalled, metav1.ConditionTrue, tc.reason)
			after, _, err := tsAdmin.Get(t.Context(), tok.SID, "")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(after.ExternalID).To(BeEmpty(), "not claimed")
			g.Expect(after.ETag).To(Equal(tok.ETag), "unchanged")
		})
	}
}

// Two ApiTokens adopting one token end with one owner and one AdoptionConflict.
func TestTwoAdoptersOfOneTokenEndWithOneOwner(t *testing.T) {
	g := NewWithT(t)
	tb := adoptingBackend(t, "adopting-twice")
	tok, _ := handMade(t, "contested")
	ns := newNamespace(t, map[string]string{"migration": "true"})
	first, second := adopting(ns, "first", tb.Name, tok.SID), adopting(ns, "second", tb.Name, tok.SID)
	g.Expect(k8s.Create(t.Context(), first)).To(Succeed())
	g.Expect(k8s.Create(t.Context(), second)).To(Succeed())
	var owner, loser *tokensv1alpha1.ApiToken
	g.Eventually(func(g Gomega) {
		a, b := get(t, first), get(t, second)
		readyA := meta.IsStatusConditionTrue(a.Status.Conditions, tokensv1alpha1.ConditionReady)
		readyB := meta.IsStatusConditionTrue(b.Status.Conditions, tokensv1alpha1.ConditionReady)
		g.Expect(readyA != readyB).To(BeTrue(), "exactly one Ready")
		owner, loser = a, b
		if readyB {
			owner, loser = b, a
		}
		c := meta.FindStatusCondition(loser.Status.Conditions, tokensv1alpha1.ConditionStalled)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal(tokensv1alpha1.ReasonAdoptionConflict))
	}, wait, tick).Should(Succeed())
	after, _, err := tsAdmin.Get(t.Context(), tok.SID, "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(after.ExternalID).To(Equal(string(owner.UID)))
	g.Expect(loser.Status.AccountSID).To(BeEmpty())
}

func TestPauseHoldsTheOperatorOffAndDeletionLetsGo(t *testing.T) {
	g := NewWithT(t)
	ns, at := readyToken(t, "paused", nil)
	sid := at.Status.AccountSID

	annotate(t, at, tokensv1alpha1.PausedAnnotation, "true")
	g.Eventually(func(g Gomega) {
		got := get(t, at)
		g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, tokensv1alpha1.ConditionPaused)).To(BeTrue())
		g.Expect(meta.IsStatusConditionFalse(got.Status.Conditions, tokensv1alpha1.ConditionReconciling)).To(BeTrue())
		g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, tokensv1alpha1.ConditionReady)).To(BeTrue(), "Ready keeps its value")
	}, wait, tick).Should(Succeed())
	g.Eventually(func() bool { return hasEvent(t, at, corev1.EventTypeNormal, tokensv1alpha1.ReasonPaused) }, wait, tick).Should(BeTrue())

	calls := backendCalls("get") + backendCalls("update") + backendCalls("reset")
	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = []string{"deals:read"} })
	annotate(t, at, tokensv1alpha1.ResetAnnotation, "while-paused")
	framework.ExpectNoWrites(t, k8s, get(t, at), "no writes while paused")
	g.Expect(backendCalls("get")+backendCalls("update")+backendCalls("reset")).To(Equal(calls), "no backend calls while paused")
	tok, _, _ := tsAdmin.Get(t.Context(), sid, "")
	g.Expect(tok.Scopes).To(Equal([]string{"actions:read", "reports:read"}))

	// Resume: a full check applies what was asked meanwhile.
	update(t, at, func(at *tokensv1alpha1.ApiToken) { delete(at.Annotations, tokensv1alpha1.PausedAnnotation) })
	g.Eventually(func() string { return get(t, at).Status.LastHandledReset }, wait, tick).Should(Equal("while-paused"))
	waitReady(t, at)
	tok, _, _ = tsAdmin.Get(t.Context(), sid, "")
	g.Expect(tok.Scopes).To(Equal([]string{"deals:read"}))
	g.Expect(meta.IsStatusConditionTrue(get(t, at).Status.Conditions, tokensv1alpha1.ConditionPaused)).To(BeFalse())

	// Deleting a paused ApiToken lets go at once, as under Orphan.
	annotate(t, at, tokensv1alpha1.PausedAnnotation, "true")
	g.Eventually(func() bool {
		return meta.IsStatusConditionTrue(get(t, at).Status.Conditions, tokensv1alpha1.ConditionPaused)
	}, wait, tick).Should(BeTrue())
	g.Expect(k8s.Delete(t.Context(), at)).To(Succeed())
	waitGone(t, at)
	_, _, err := tsAdmin.Get(t.Context(), sid, "")
	g.Expect(err).NotTo(HaveOccurred(), "the backend token is left as it is")
	s := getSecret(t, ns, "paused")
	g.Expect(metav1.GetControllerOf(s)).To(BeNil(), "the Secret is kept without its owner")
}
