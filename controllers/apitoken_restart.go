package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

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
// missing target is a Warning event, not a failure; so is a target whose pod
// template does not consume the ApiToken's Secret (RestartTargetNotConsumer): the
// restart targets are the tenant's word, and naming a workload there must not
// let it roll a workload that has nothing to do with the credentials.
func (r *ApiTokenReconciler) rollRestartTargets(ctx context.Context, at *tokensv1alpha1.ApiToken, ref string) error {
	for _, target := range at.Spec.Secret.RestartTargets {
		obj, template := workload(target.Kind)
		err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: at.Namespace, Name: target.Name}, obj)
		if apierrors.IsNotFound(err) {
			r.event(at, corev1.EventTypeWarning, "RestartTargetNotFound", "Restart target %s %s was not found", target.Kind, target.Name)
			continue
		}
		if err != nil {
			return fmt.Errorf("read restart target %s %s: %w", target.Kind, target.Name, err)
		}
		if !consumesSecret(&template().Spec, secretName(at)) {
			r.event(at, corev1.EventTypeWarning, tokensv1alpha1.ReasonRestartTargetNotConsumer,
				"Restart target %s %s was not rolled: its pod template does not use Secret %s", target.Kind, target.Name, secretName(at))
			continue
		}
		if template().Annotations[tokensv1alpha1.CredentialsAnnotation] == ref {
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

// workload returns an empty object of the kind and a reader of its pod template.
func workload(kind tokensv1alpha1.RestartTargetKind) (client.Object, func() *corev1.PodTemplateSpec) {
	switch kind {
	case tokensv1alpha1.RestartTargetStatefulSet:
		o := &appsv1.StatefulSet{}
		return o, func() *corev1.PodTemplateSpec { return &o.Spec.Template }
	case tokensv1alpha1.RestartTargetDaemonSet:
		o := &appsv1.DaemonSet{}
		return o, func() *corev1.PodTemplateSpec { return &o.Spec.Template }
	}
	o := &appsv1.Deployment{}
	return o, func() *corev1.PodTemplateSpec { return &o.Spec.Template }
}

// consumesSecret reports whether a pod spec uses the Secret named name: a secret
// volume, a projected volume's secret source, env[].valueFrom.secretKeyRef or
// envFrom[].secretRef, in any container, init container or ephemeral container.
func consumesSecret(spec *corev1.PodSpec, name string) bool {
	for _, v := range spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == name {
			return true
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.Secret != nil && src.Secret.Name == name {
					return true
				}
			}
		}
	}
	usesSecret := func(env []corev1.EnvVar, envFrom []corev1.EnvFromSource) bool {
		for _, e := range env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == name {
				return true
			}
		}
		for _, e := range envFrom {
			if e.SecretRef != nil && e.SecretRef.Name == name {
				return true
			}
		}
		return false
	}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		if usesSecret(c.Env, c.EnvFrom) {
			return true
		}
	}
	for _, c := range spec.EphemeralContainers {
		if usesSecret(c.Env, c.EnvFrom) {
			return true
		}
	}
	return false
}

// credentialsPatch is the merge patch that sets the pod template's credentials
// annotation and nothing else.
func credentialsPatch(ref string) []byte {
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{tokensv1alpha1.CredentialsAnnotation: ref},
	}}}})
	return patch
}
