package controllers

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// A backend's bulk re-check must not hold up an ApiToken that a user just created.
func TestBulkRecheckQueuesBehindUserChanges(t *testing.T) {
	q := priorityqueue.New[reconcile.Request]("test")
	defer q.ShutDown()
	recheck := func(context.Context, *tokensv1alpha1.TokenBackend) []reconcile.Request {
		var reqs []reconcile.Request
		for _, name := range []string{"old-1", "old-2", "old-3"} {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: name}})
		}
		return reqs
	}
	h := enqueueBehindOthers(recheck)
	h.Generic(t.Context(), event.TypedGenericEvent[*tokensv1alpha1.TokenBackend]{Object: &tokensv1alpha1.TokenBackend{}}, q)
	userChange := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "new"}}
	q.Add(userChange)

	first, _, _ := q.GetWithPriority()
	if first != userChange {
		t.Errorf("first reconciled: %v, want the user's ApiToken %v", first, userChange)
	}
	for range 3 {
		req, priority, _ := q.GetWithPriority()
		if priority >= 0 {
			t.Errorf("re-check of %v has priority %d, want it below the default 0", req, priority)
		}
	}
}
