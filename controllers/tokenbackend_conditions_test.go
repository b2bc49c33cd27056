package controllers

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

func TestTokenBackendConditionsSpeakTheApiTokensVocabulary(t *testing.T) {
	type states struct{ Ready, Reconciling, Stalled metav1.ConditionStatus }
	const T, F = metav1.ConditionTrue, metav1.ConditionFalse
	for reason, want := range map[string]states{
		tokensv1alpha1.ReasonCatalogFetched:      {Ready: T, Reconciling: F, Stalled: F},
		tokensv1alpha1.ReasonCredentialsInvalid:  {Ready: F, Reconciling: F, Stalled: T},
		tokensv1alpha1.ReasonBackendUnauthorized: {Ready: F, Reconciling: F, Stalled: T},
		tokensv1alpha1.ReasonInsecureURL:         {Ready: F, Reconciling: F, Stalled: T},
		tokensv1alpha1.ReasonBackendUnavailable:  {Ready: F, Reconciling: T, Stalled: F},
		tokensv1alpha1.ReasonBackendThrottled:    {Ready: F, Reconciling: T, Stalled: F},
		tokensv1alpha1.ReasonBackendNotReady:     {Ready: F, Reconciling: T, Stalled: F},
	} {
		tb := &tokensv1alpha1.TokenBackend{ObjectMeta: metav1.ObjectMeta{Generation: 3}}
		// From the opposite state: every condition must be set, none left over.
		setBackendConditions(tb, tokensv1alpha1.ReasonBackendThrottled, "before")
		setBackendConditions(tb, tokensv1alpha1.ReasonCatalogFetched, "before")
		setBackendConditions(tb, reason, "what happened")
		var got states
		for typ, into := range map[string]*metav1.ConditionStatus{
			tokensv1alpha1.ConditionReady: &got.Ready, tokensv1alpha1.ConditionReconciling: &got.Reconciling, tokensv1alpha1.ConditionStalled: &got.Stalled,
		} {
			c := meta.FindStatusCondition(tb.Status.Conditions, typ)
			if c == nil || c.Reason != reason || c.ObservedGeneration != 3 {
				t.Fatalf("%s: condition %s = %+v, want reason %s for generation 3", reason, typ, c, reason)
			}
			*into = c.Status
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", reason, diff)
		}
		ready := meta.FindStatusCondition(tb.Status.Conditions, tokensv1alpha1.ConditionReady)
		if ready.Message != "what happened" {
			t.Errorf("%s: Ready message %q", reason, ready.Message)
		}
	}
}
