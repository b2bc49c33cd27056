package controllers

import (
	"errors"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/pkg/backend"
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
			ns := newNamespace(t, nil)
			at := newApiToken(ns, "deleted")
			at.Spec.DeletionPolicy = policy
			g.Expect(k8s.Create(t.Context(), at)).To(Succeed())
			at = waitReady(t, at)
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
	ns := newNamespace(t, nil)
	at := newApiToken(ns, "vanished")
	g.Expect(k8s.Create(t.Context(), at)).To(Succeed())
	at = waitReady(t, at)
	g.Expect(tsAdmin.Delete(t.Context(), at.Status.AccountSID)).To(Succeed())
	g.Expect(k8s.Delete(t.Context(), at)).To(Succeed())
	waitGone(t, at)
}
