package controllers

import (
	"context"
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets,verbs=get;patch

// rollRestartTargets sets the credentials annotation of each restart target's pod
// template to ref, which rolls its pods. It reads each target directly (the
// operator caches no workloads: they are read only when credentials change) and
// patches only a template that differs, so a repeated pass never rolls twice. A
// missing target is a Warning event, not a failure.
func (r *ApiTokenReconciler) rollRestartTargets(ctx context.Context, at *tokensv1alpha1.ApiToken, ref string) error {
	for _, target := range at.Spec.Secret.RestartTargets {
		obj, annotations := workload(target.Kind)
		err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: at.Namespace, Name: target.Name}, obj)
		if apierrors.IsNotFound(err) {
			r.event(at, corev1.EventTypeWarning, "RestartTargetNotFound", "Restart target %s %s was not found", target.Kind, target.Name)
			continue
		}
		if err != nil {
			return fmt.Errorf("read restart target %s %s: %w", target.Kind, target.Name, err)
		}
		if annotations()[tokensv1alpha1.CredentialsAnnotation] == ref {
			continue
		}
		if err := r.Patch(ctx, obj, client.RawPatch(types.MergePatchType, credentialsPatch(ref))); err != nil {
			if apierrors.IsNotFound(err) {
				continue // deleted since the read: nothing to roll
			}
			return fmt.Errorf("roll restart target %s %s: %w", target.Kind, target.Name, err)
		}
		r.event(at, corev1.EventTypeNormal, "RestartTriggered", "Rolled %s %s for credentials %s", target.Kind, target.Name, ref)
	}
	return nil
}

// workload returns an empty object of the kind and a reader of its pod
// template's annotations.
func workload(kind tokensv1alpha1.RestartTargetKind) (client.Object, func() map[string]string) {
	switch kind {
	case tokensv1alpha1.RestartTargetStatefulSet:
		o := &appsv1.StatefulSet{}
		return o, func() map[string]string { return o.Spec.Template.Annotations }
	case tokensv1alpha1.RestartTargetDaemonSet:
		o := &appsv1.DaemonSet{}
		return o, func() map[string]string { return o.Spec.Template.Annotations }
	}
	o := &appsv1.Deployment{}
	return o, func() map[string]string { return o.Spec.Template.Annotations }
}

// credentialsPatch is the merge patch that sets the pod template's credentials
// annotation and nothing else.
func credentialsPatch(ref string) []byte {
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{tokensv1alpha1.CredentialsAnnotation: ref},
	}}}})
	return patch
}
