package controllers

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// encodeAs encodes obj with the serializer of mediaType, as the API server does.
func encodeAs(t *testing.T, mediaType string, obj runtime.Object) []byte {
	t.Helper()
	scheme := runtime.NewScheme()
	metav1.AddMetaToScheme(scheme)
	_ = corev1.AddToScheme(scheme)
	codecs := serializer.NewCodecFactory(scheme)
	info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), mediaType)
	if !ok {
		t.Fatalf("no serializer for %s", mediaType)
	}
	gv := metav1.SchemeGroupVersion
	if _, isSecret := obj.(*corev1.Secret); isSecret {
		gv = corev1.SchemeGroupVersion
	}
	body, err := runtime.Encode(codecs.EncoderForVersion(info.Serializer, gv), obj)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// parseMetadataAnswer reads of an answer what the decoder would, whatever else
// the metadata holds, in protobuf and in JSON; anything that is not an object's
// metadata is refused.
func TestParseMetadataAnswer(t *testing.T) {
	answer := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Name: "billing", Namespace: "team-a", UID: "5b1c", ResourceVersion: "48213", Generation: 3,
		Labels: map[string]string{"a": "b"}, Annotations: map[string]string{"c": "d"},
		Finalizers: []string{"tokens.apitoken.dev/finalizer", "example.com/keep"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply,
			FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(`{"f:spec":{"f:scopes":{}}}`)}},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Namespace", Name: "team-a", UID: "9"}},
	}}
	answer.SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind("PartialObjectMetadata"))
	want := metadataAnswer{uid: "5b1c", resourceVersion: "48213", finalizers: []string{"tokens.apitoken.dev/finalizer", "example.com/keep"}}
	for _, mediaType := range []string{runtime.ContentTypeProtobuf, runtime.ContentTypeJSON} {
		got, err := parseMetadataAnswer(encodeAs(t, mediaType, answer))
		if err != nil || got.uid != want.uid || got.resourceVersion != want.resourceVersion || !slices.Equal(got.finalizers, want.finalizers) {
			t.Errorf("%s: got %+v, %v; want %+v", mediaType, got, err, want)
		}
	}

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", ResourceVersion: "1"}}
	protobufAnswer := encodeAs(t, runtime.ContentTypeProtobuf, answer)
	for name, body := range map[string][]byte{
		"a whole Secret (protobuf)": encodeAs(t, runtime.ContentTypeProtobuf, secret),
		"a whole Secret (JSON)":     encodeAs(t, runtime.ContentTypeJSON, secret),
		"truncated":                 protobufAnswer[:len(protobufAnswer)-3],
		"empty":                     nil,
		"not JSON":                  []byte("<html>"),
	} {
		if got, err := parseMetadataAnswer(body); err == nil {
			t.Errorf("%s: read as %+v", name, got)
		}
	}
}

// The patcher's patches of an ApiToken reach the API server as the manager's
// client would send them (field manager, preconditions, subresource), their
// errors are the API server's, and the handle gets the new resourceVersion and
// finalizers.
func TestMetadataPatcherPatchesApiTokens(t *testing.T) {
	ns := newNamespace(t, nil)
	at := newApiToken(ns, "patched")
	at.Spec.BackendRef.Name = "no-such-backend" // the operator stalls it: few writes of its own
	if err := k8s.Create(t.Context(), at); err != nil {
		t.Fatal(err)
	}
	httpClient, err := rest.HTTPClientFor(controlPlane.Config)
	if err != nil {
		t.Fatal(err)
	}
	patcher, err := newMetadataPatcher(k8s, controlPlane.Config, httpClient)
	if err != nil {
		t.Fatal(err)
	}
	k := client.WithFieldOwner(patcher, "patcher-test")

	stale := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":["example.com/keep"],"resourceVersion":"1"}}`))
	if err := k.Patch(t.Context(), metadataHandle(at), stale); !apierrors.IsConflict(err) {
		t.Fatalf("a patch at a stale resourceVersion: %v, want a Conflict", err)
	}

	handle := metadataHandle(at)
	keep := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"patched":"yes"}}}`))
	if err := k.Patch(t.Context(), handle, keep); err != nil {
		t.Fatal(err)
	}
	stored := get(t, at)
	if handle.UID != stored.UID || handle.ResourceVersion == "" || stored.Labels["patched"] != "yes" {
		t.Fatalf("handle %s@%s after the patch; stored %s@%s, labels %v", handle.UID, handle.ResourceVersion, stored.UID, stored.ResourceVersion, stored.Labels)
	}
	if !slices.ContainsFunc(stored.ManagedFields, func(e metav1.ManagedFieldsEntry) bool {
		return e.Manager == "patcher-test" && e.Subresource == "" && strings.Contains(e.FieldsV1.GetRawString(), `"f:patched"`)
	}) {
		t.Errorf("the patch is not recorded as patcher-test's: %v", stored.ManagedFields)
	}

	status := client.RawPatch(types.MergePatchType, []byte(`{"status":{"secretName":"patched-by-test"}}`))
	if err := k.Status().Patch(t.Context(), handle, status); err != nil {
		t.Fatal(err)
	}
	stored = get(t, at)
	if stored.Status.SecretName != "patched-by-test" || !slices.ContainsFunc(stored.ManagedFields, func(e metav1.ManagedFieldsEntry) bool {
		return e.Manager == "patcher-test" && e.Subresource == "status"
	}) {
		t.Errorf("status patch: secretName %q, managedFields %v", stored.Status.SecretName, stored.ManagedFields)
	}

	missing := metadataHandle(newApiToken(ns, "missing"))
	if err := k.Status().Patch(t.Context(), missing, status); !apierrors.IsNotFound(err) {
		t.Errorf("status patch of a missing ApiToken: %v, want NotFound", err)
	}
	// Anything else is the manager's client's.
	if err := k.Patch(t.Context(), stored, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"description":"typed"}}`))); err != nil || stored.Spec.Description != "typed" {
		t.Errorf("typed patch: %v, description %q", err, stored.Spec.Description)
	}
}
