package controllers

import (
	"context"
	"fmt"
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tokensv1alpha1 "github.com/apitoken-dev/apitoken-operator/api/v1alpha1"
)

// metadataPatcher is the manager's client, but for the patches of an ApiToken's
// metadata handle (metadataHandle: its finalizer, its status), which it sends
// itself and whose answers it reads with readMetadataAnswer: the handle gets the
// new resourceVersion, UID and finalizers, without the rest of the metadata
// (its managedFields above all) decoded for nothing. Everything else, the
// other patches included, is the manager's client's.
type metadataPatcher struct {
	client.Client
	apiTokens rest.Interface // tokens.apitoken.dev/v1alpha1, answers as metadata
}

// newMetadataPatcher returns k with its ApiToken metadata patches sent over
// httpClient (the manager's, so its connections are shared).
func newMetadataPatcher(k client.Client, cfg *rest.Config, httpClient *http.Client) (*metadataPatcher, error) {
	apiTokens, err := metadataRESTClient(cfg, tokensv1alpha1.GroupVersion, "/apis", httpClient)
	if err != nil {
		return nil, fmt.Errorf("ApiToken patch client: %w", err)
	}
	return &metadataPatcher{Client: k, apiTokens: apiTokens}, nil
}

func (p *metadataPatcher) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	handle, ok := apiTokenHandle(obj)
	if !ok {
		return p.Client.Patch(ctx, obj, patch, opts...)
	}
	return p.patch(ctx, handle, patch, (&client.PatchOptions{}).ApplyOptions(opts).AsPatchOptions())
}

func (p *metadataPatcher) Status() client.SubResourceWriter {
	return &statusPatcher{SubResourceWriter: p.Client.Status(), p: p}
}

// statusPatcher is the manager's status writer, but for the status patches of
// ApiToken metadata handles.
type statusPatcher struct {
	client.SubResourceWriter
	p *metadataPatcher
}

func (s *statusPatcher) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	handle, ok := apiTokenHandle(obj)
	if !ok {
		return s.SubResourceWriter.Patch(ctx, obj, patch, opts...)
	}
	o := (&client.SubResourcePatchOptions{}).ApplyOptions(opts)
	return s.p.patch(ctx, handle, patch, o.AsPatchOptions(), "status")
}

// apiTokenHandle is obj as an ApiToken's metadata handle, if it is one.
func apiTokenHandle(obj client.Object) (*metav1.PartialObjectMetadata, bool) {
	handle, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok || handle.GroupVersionKind() != tokensv1alpha1.GroupVersion.WithKind("ApiToken") {
		return nil, false
	}
	return handle, true
}

// patch sends one patch of the handle's ApiToken (or of its subresource).
func (p *metadataPatcher) patch(ctx context.Context, handle *metav1.PartialObjectMetadata, patch client.Patch, opts *metav1.PatchOptions, subresource ...string) error {
	body, err := patch.Data(handle)
	if err != nil {
		return fmt.Errorf("patch body: %w", err)
	}
	req := patchParams(p.apiTokens.Patch(patch.Type()).Namespace(handle.Namespace).Resource("apitokens").Name(handle.Name).
		SubResource(subresource...).Body(body), opts)
	answer, err := readMetadataAnswer(ctx, req)
	if err != nil {
		return err
	}
	answer.into(handle)
	return nil
}
