package controllers

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
	"github.com/apitoken-dev/apitoken-operator/test/framework/faults"
)

func TestBackendRejectionStallsWithoutRetryStorm(t *testing.T) {
	cases := map[string]struct {
		mutate func(*tokensv1alpha1.ApiToken)
		want   string
	}{
		"unknown scope":        {func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = []string{"reports:read", "nosuch:read"} }, "nosuch:read"},
		"unknown contact":      {func(at *tokensv1alpha1.ApiToken) { at.Spec.PrimaryContact = "stranger@example.com" }, "stranger@example.com"},
		"version above latest": {func(at *tokensv1alpha1.ApiToken) { at.Spec.APIVersion = ptr.To[int32](99) }, "apiVersion"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			ns := newNamespace(t, nil)
			at := newApiToken(ns, "rejected")
			tc.mutate(at)
			g.Expect(k8s.Create(t.Context(), at)).To(Succeed())
			at = waitCondition(t, at, tokensv1alpha1.ConditionStalled, metav1.ConditionTrue, tokensv1alpha1.ReasonBackendRejected)
			c := meta.FindStatusCondition(at.Status.Conditions, tokensv1alpha1.ConditionStalled)
			g.Expect(c.Message).To(ContainSubstring(tc.want))
			g.Expect(backendTokens(t, at)).To(BeEmpty())
			g.Eventually(func() bool { return hasEvent(t, at, corev1.EventTypeWarning, tokensv1alpha1.ReasonBackendRejected) }, wait, tick).Should(BeTrue())

			// No retry storm: the status stops changing.
			rv := get(t, at).ResourceVersion
			g.Consistently(func() string { return get(t, at).ResourceVersion }, 2*time.Second, 200*time.Millisecond).Should(Equal(rv))

			// Fixing the spec recovers.
			update(t, at, func(at *tokensv1alpha1.ApiToken) {
				at.Spec.Scopes = []string{"reports:read"}
				at.Spec.PrimaryContact = "ops@example.com"
				at.Spec.APIVersion = nil
			})
			waitReady(t, at)
			g.Expect(backendTokens(t, at)).To(HaveLen(1))
		})
	}
}

func TestUnknownBackendAndNamespaceNotAllowed(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t, nil)
	at := newApiToken(ns, "nobackend")
	at.Spec.BackendRef.Name = "does-not-exist"
	g.Expect(k8s.Create(t.Context(), at)).To(Succeed())
	waitCondition(t, at, tokensv1alpha1.ConditionStalled, metav1.ConditionTrue, tokensv1alpha1.ReasonBackendNotFound)

	restricted := newBackend("restricted", &metav1.LabelSelector{MatchLabels: map[string]string{"tokens": "allowed"}})
	g.Expect(k8s.Create(t.Context(), restricted)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(t.Context(), restricted) })

	denied := newApiToken(ns, "denied")
	denied.Spec.BackendRef.Name = "restricted"
	g.Expect(k8s.Create(t.Context(), denied)).To(Succeed())
	denied = waitCondition(t, denied, tokensv1alpha1.ConditionStalled, metav1.ConditionTrue, tokensv1alpha1.ReasonNamespaceNotAllowed)
	g.Expect(backendTokens(t, denied)).To(BeEmpty())

	allowedNS := newNamespace(t, map[string]string{"tokens": "allowed"})
	allowed := newApiToken(allowedNS, "allowed")
	allowed.Spec.BackendRef.Name = "restricted"
	g.Expect(k8s.Create(t.Context(), allowed)).To(Succeed())
	waitReady(t, allowed)

	// Creating the missing backend re-reconciles the ApiToken that waited for it.
	late := newBackend("does-not-exist", nil)
	g.Expect(k8s.Create(t.Context(), late)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(t.Context(), late) })
	waitReady(t, at)

	// Deleting ApiTokens that never reached a backend completes.
	g.Expect(k8s.Delete(t.Context(), denied)).To(Succeed())
	waitGone(t, denied)
}

func TestLostCreateResponseAdoptsTheToken(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t, nil)
	at := newApiToken(ns, "lost")
	at.Spec.DisplayName = "lost-create-responses"
	// Lose the response of the first create and of its replay.
	lost := faultPlan.Add(2, faults.LostResponse, faults.CreateOf(at.Spec.DisplayName))
	g.Expect(k8s.Create(t.Context(), at)).To(Succeed())
	at = waitReady(t, at)
	g.Expect(lost.Fired()).To(Equal(2), "both create responses were lost")
	tokens := backendTokens(t, at)
	g.Expect(tokens).To(HaveLen(1), "exactly one backend token after lost responses")
	g.Expect(tokens[0].SID).To(Equal(at.Status.AccountSID))
	g.Expect(verifyStatus(t, secretCredentials(t, getSecret(t, ns, "lost"), "accountSid", "authToken"), "reports:read")).To(Equal(200))
}

func TestAdmissionRejectsInvalidSpecs(t *testing.T) {
	long := strings.Repeat("x", 101)
	cases := map[string]struct {
		mutate func(*tokensv1alpha1.ApiToken)
		want   string
	}{
		"displayName too long": {func(at *tokensv1alpha1.ApiToken) { at.Spec.DisplayName = long }, "displayName"},
		"description too long": {func(at *tokensv1alpha1.ApiToken) { at.Spec.Description = strings.Repeat("d", 1025) }, "description"},
		"malformed contact":    {func(at *tokensv1alpha1.ApiToken) { at.Spec.PrimaryContact = "not-an-email" }, "primaryContact"},
		"missing contact":      {func(at *tokensv1alpha1.ApiToken) { at.Spec.PrimaryContact = "" }, "primaryContact"},
		"malformed dev e-mail": {func(at *tokensv1alpha1.ApiToken) { at.Spec.DeveloperEmails = []string{"dev@"} }, "developerEmails"},
		"scope pattern":        {func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = []string{"Reports:Read"} }, "scopes"},
		"scope without colon":  {func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = []string{"reports"} }, "scopes"},
		"duplicate scopes":     {func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = []string{"a:b", "a:b"} }, "scopes"},
		"too many scopes":      {func(at *tokensv1alpha1.ApiToken) { at.Spec.Scopes = manyScopes(257) }, "scopes"},
		"too many e-mails":     {func(at *tokensv1alpha1.ApiToken) { at.Spec.DeveloperEmails = manyEmails(51) }, "developerEmails"},
		"unknown policy":       {func(at *tokensv1alpha1.ApiToken) { at.Spec.DeletionPolicy = "Keep" }, "deletionPolicy"},
		"unknown secret type":  {func(at *tokensv1alpha1.ApiToken) { at.Spec.Secret.Type = "kubernetes.io/tls" }, "type"},
		"same secret keys":     {func(at *tokensv1alpha1.ApiToken) { at.Spec.Secret.AuthTokenKey = "accountSid" }, "must differ"},
		"bad secret key":       {func(at *tokensv1alpha1.ApiToken) { at.Spec.Secret.AuthTokenKey = "a/b" }, "authTokenKey"},
		"bad secret name":      {func(at *tokensv1alpha1.ApiToken) { at.Spec.Secret.Name = "Not_A_Name" }, "secret.name"},
		"apiVersion zero":      {func(at *tokensv1alpha1.ApiToken) { at.Spec.APIVersion = ptr.To[int32](0) }, "apiVersion"},
		"empty displayName":    {func(at *tokensv1alpha1.ApiToken) { at.Spec.DisplayName = "" }, ""},
	}
	ns := newNamespace(t, nil)
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			at := newApiToken(ns, "invalid")
			tc.mutate(at)
			err := k8s.Create(t.Context(), at)
			if tc.want == "" { // omitted optional fields are valid
				if err != nil {
					t.Fatalf("valid spec rejected: %v", err)
				}
				_ = k8s.Delete(t.Context(), at)
				return
			}
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want an Invalid error naming %q", err, tc.want)
			}
		})
	}
	list := &tokensv1alpha1.ApiTokenList{}
	if err := k8s.List(t.Context(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, at := range list.Items {
		if slices.Contains([]string{"invalid"}, at.Name) && at.DeletionTimestamp.IsZero() {
			t.Errorf("an invalid ApiToken was stored: %s", at.Name)
		}
	}
}

func manyScopes(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("cat%d:read", i)
	}
	return out
}

func manyEmails(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("dev%d@example.com", i)
	}
	return out
}
