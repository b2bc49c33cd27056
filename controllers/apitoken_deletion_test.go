package controllers

import (
	"context"
	"errors"
	"testing"

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

func TestDeletionPolicies(t *testing.T) {
	cases := map[tokensv1alpha1.DeletionPolicy]struct {
		backendState backend.State // "" = deleted
		secretKept   bool
	}{
		tokensv1alpha1.DeletionPolicyDelete:  {backendState: "", secretKept: false},
		tokensv1alpha1.DeletionPolicyDisable: {backendState: backend.StateDisabled, secretKept: false},
		tokensv1alpha1.DeletionPolicyOrphan:  {backendState: backend.StateEnabled, secretKept: true},
	}
	for policy, want := range cases {
		t.Run(string(policy), func(t *testing.T) {
			g := NewWithT(t)
			ns, at := readyToken(t, "deleted", func(at *tokensv1alpha1.ApiToken) {
				at.Spec.DeletionPolicy = policy
			})
			sid := at.Status.AccountSID

			g.Expect(k8s.Delete(t.Context(), at)).To(Succeed())
			waitGone(t, at)

			tok, _, err := tsAdmin.Get(t.Context(), sid, "")
			if want.backendState == "" {
				g.Expect(errors.Is(err, backend.ErrNotFound)).To(BeTrue(), "backend token should be gone: %v", err)
			} else {
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(tok.State).To(Equal(want.backendState))
			}
			s := &corev1.Secret{}
			err = k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "deleted"}, s)
			if want.secretKept {
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(metav1.GetControllerOf(s)).To(BeNil(), "an orphaned Secret has no owner")
			} else {
				g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "Secret should be deleted: %v", err)
			}
		})
	}
}

func TestDeleteAfterBackendTokenVanishedIsNotAnError(t *testing.T) {
	g := NewWithT(t)
	_, at := readyToken(t, "vanished", nil)
	g.Expect(tsAdmin.Delete(t.Context(), at.Status.AccountSID)).To(Succeed())
	g.Expect(k8s.Delete(t.Context(), at)).To(Succeed())
	waitGone(t, at)
}

// A namespace that lost access to its TokenBackend still releases the tokens it
// owns when its ApiToken is deleted: deletion never hangs on access.
func TestDeletionAfterTheNamespaceLostAccessReleasesTheToken(t *testing.T) {
	g := NewWithT(t)
	tb := newBackend("lost-access", &metav1.LabelSelector{MatchLabels: map[string]string{"tokens": "lost-access"}})
	g.Expect(controlPlane.CreateTokenBackend(t.Context(), tb)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), tb) })
	ns := newNamespace(t, map[string]string{"tokens": "lost-access"})
	at := createReady(t, onBackend(newApiToken(ns, "revoked"), tb.Name, "reports:read", "actions:read"))

	namespace := &corev1.Namespace{}
	g.Expect(k8s.Get(t.Context(), client.ObjectKey{Name: ns}, namespace)).To(Succeed())
	namespace.Labels = nil
	g.Expect(k8s.Update(t.Context(), namespace)).To(Succeed())
	// No change to the ApiToken: the namespace's new labels are enough.
	waitCondition(t, at, tokensv1alpha1.ConditionStalled, metav1.ConditionTrue, tokensv1alpha1.ReasonNamespaceNotAllowed)

	deleteReleasesBackendTokens(t, at, "the backend token was released")
}

// A deleted TokenBackend keeps its ApiTokens' deletion waiting with a message
// that names it; deletionPolicy Orphan is the way out.
func TestDeletionWithoutItsTokenBackendWaitsUntilOrphan(t *testing.T) {
	g := NewWithT(t)
	tb := newBackend("doomed", nil)
	g.Expect(controlPlane.CreateTokenBackend(t.Context(), tb)).To(Succeed())
	_, at := readyToken(t, "stranded", func(at *tokensv1alpha1.ApiToken) {
		at.Spec.BackendRef.Name = tb.Name
	})
	g.Expect(k8s.Delete(t.Context(), tb)).To(Succeed())
	waitGone(t, tb)
	// The operator must know it is gone too: a deletion that its cache sees
	// before the TokenBackend's goes through the backend, as it may.
	g.Eventually(func() bool {
		return apierrors.IsNotFound(operatorCache.Get(t.Context(), client.ObjectKeyFromObject(tb), &tokensv1alpha1.TokenBackend{}))
	}, wait, tick).Should(BeTrue())

	g.Expect(k8s.Delete(t.Context(), at)).To(Succeed())
	g.Eventually(func(g Gomega) {
		c := meta.FindStatusCondition(get(t, at).Status.Conditions, tokensv1alpha1.ConditionStalled)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal(tokensv1alpha1.ReasonBackendNotFound))
		g.Expect(c.Message).To(And(ContainSubstring(`"doomed"`), ContainSubstring("Orphan")))
	}, wait, tick).Should(Succeed())
	g.Consistently(func() error { return k8s.Get(t.Context(), client.ObjectKeyFromObject(at), &tokensv1alpha1.ApiToken{}) }, framework.QuietPeriod, tick).Should(Succeed())

	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.DeletionPolicy = tokensv1alpha1.DeletionPolicyOrphan })
	waitGone(t, at)
}

// Orphan right after a Secret rename keeps both Secrets, without their owner:
// the one the status names (the rename not carried out yet) too.
func TestOrphanAfterASecretRenameOrphansBothSecrets(t *testing.T) {
	g := NewWithT(t)
	ns, at := readyToken(t, "renamed", func(at *tokensv1alpha1.ApiToken) {
		at.Spec.DeletionPolicy = tokensv1alpha1.DeletionPolicyOrphan
	})
	g.Expect(at.Status.SecretName).To(Equal("renamed"))

	update(t, at, func(at *tokensv1alpha1.ApiToken) { at.Spec.Secret.Name = "renamed-later" })
	g.Expect(k8s.Delete(t.Context(), at)).To(Succeed())
	waitGone(t, at)
	kept := 0
	for _, name := range []string{"renamed", "renamed-later"} {
		s := &corev1.Secret{}
		err := k8s.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, s)
		if apierrors.IsNotFound(err) {
			continue
		}
		g.Expect(err).NotTo(HaveOccurred())
		kept++
		g.Expect(metav1.GetControllerOf(s)).To(BeNil(), "Secret %s still has its owner", name)
	}
	g.Expect(kept).To(BeNumerically(">=", 1))
}
