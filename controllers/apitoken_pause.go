package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// isPaused reports whether the paused annotation holds the operator off.
func isPaused(at *tokensv1alpha1.ApiToken) bool {
	return at.Annotations[tokensv1alpha1.PausedAnnotation] == "true"
}

// reconcilePaused is a pass over a paused ApiToken: no backend call and no write
// but the Paused condition (Reconciling False, Ready as it was) and one event. A
// paused ApiToken that is deleted lets go as under Orphan, without calling the
// backend, so that pausing never makes a namespace deletion hang.
func (r *ApiTokenReconciler) reconcilePaused(ctx context.Context, p *pass) (ctrl.Result, error) {
	at := p.at
	// The next pass after the pause ends checks the backend in full.
	p.reads.readAtNextPass()
	if !at.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.releasePaused(ctx, p)
	}
	if meta.IsStatusConditionTrue(at.Status.Conditions, tokensv1alpha1.ConditionPaused) {
		return ctrl.Result{}, nil // already said: a spec change while paused writes nothing
	}
	r.event(at, corev1.EventTypeNormal, tokensv1alpha1.ReasonPaused, "Paused: nothing is changed in the backend or the Secret until the %s annotation is removed", tokensv1alpha1.PausedAnnotation)
	setPaused(at, tokensv1alpha1.ConditionPaused, metav1.ConditionTrue, "The "+tokensv1alpha1.PausedAnnotation+" annotation holds the operator off this ApiToken")
	// status.observedGeneration stays: a spec changed while paused is not applied.
	setPaused(at, tokensv1alpha1.ConditionReconciling, metav1.ConditionFalse, "Paused")
	return ctrl.Result{}, nil
}

// releasePaused carries out the deletion of a paused ApiToken. Pause never
// widens deletion: where its TokenBackend allows Orphan, the backend token and
// the Secret (without its owner) are left as they are, as under Orphan, and only
// the retiring tokens are deleted (they were to be deleted anyway); otherwise the
// ApiToken's own deletion policy applies, as far as the TokenBackend allows it.
// A TokenBackend that is gone releases the ApiToken as under Orphan: nothing
// could be deleted, and pausing never makes a namespace deletion hang.
func (r *ApiTokenReconciler) releasePaused(ctx context.Context, p *pass) error {
	at := p.at
	if !controllerutil.ContainsFinalizer(at, tokensv1alpha1.Finalizer) {
		return nil
	}
	requested := tokensv1alpha1.DeletionPolicyOrphan
	err := r.readTokenBackend(ctx, p)
	switch {
	case p.tb == nil && isStall(err): // gone: released as under Orphan
	case err != nil:
		return err
	case !deletionAllowed(p.tb.Spec.Policy, tokensv1alpha1.DeletionPolicyOrphan):
		requested = effectiveDeletionPolicy(at.Spec.DeletionPolicy, p.tb.Spec.Policy)
	}
	if requested == tokensv1alpha1.DeletionPolicyOrphan && len(at.Status.RetiringTokens) == 0 {
		if err := r.orphanSecrets(ctx, at); err != nil {
			return err
		}
	} else if err := r.carryOutDeletion(ctx, p, requested); err != nil {
		return err
	}
	r.event(at, corev1.EventTypeNormal, "DeletedWhilePaused", "Deleted while paused: deletion policy %s applied to backend token %s", requested, at.Status.AccountSID)
	return r.releaseFinalizer(ctx, p)
}

// resume clears the Paused condition of an ApiToken whose pause ended; the pass
// goes on as usual, with a full backend check.
func resume(at *tokensv1alpha1.ApiToken) {
	if meta.IsStatusConditionTrue(at.Status.Conditions, tokensv1alpha1.ConditionPaused) {
		meta.SetStatusCondition(&at.Status.Conditions, metav1.Condition{
			Type: tokensv1alpha1.ConditionPaused, Status: metav1.ConditionFalse, Reason: tokensv1alpha1.ReasonResumed,
			Message: "The operator manages this ApiToken", ObservedGeneration: at.Generation,
		})
	}
}

// setPaused sets a condition of the paused state, reason Paused.
func setPaused(at *tokensv1alpha1.ApiToken, conditionType string, status metav1.ConditionStatus, message string) {
	meta.SetStatusCondition(&at.Status.Conditions, metav1.Condition{
		Type: conditionType, Status: status, Reason: tokensv1alpha1.ReasonPaused, Message: message, ObservedGeneration: at.Generation,
	})
}
