package controllers

import (
	"net/url"
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// TestWriteParamsAsTheParameterCodec holds that the operator's writes send the
// query parameters client-go's VersionedParams would, for every field of the
// options they carry.
func TestWriteParamsAsTheParameterCodec(t *testing.T) {
	client, err := rest.RESTClientFor(&rest.Config{Host: "https://example.invalid", ContentConfig: rest.ContentConfig{
		GroupVersion: &metav1.SchemeGroupVersion, NegotiatedSerializer: serializer.NewCodecFactory(NewScheme())}})
	if err != nil {
		t.Fatal(err)
	}
	// The cases set every field the options have; a field a later
	// apimachinery adds fails here until writeParams sends it.
	for _, options := range []struct {
		value  any
		fields int
	}{{metav1.PatchOptions{}, 5}, {metav1.CreateOptions{}, 4}, {metav1.UpdateOptions{}, 4}} {
		if got := reflect.TypeOf(options.value).NumField(); got != options.fields {
			t.Errorf("%T has %d fields (TypeMeta included), writeParams knows %d", options.value, got, options.fields)
		}
	}
	query := func(req *rest.Request) url.Values { return req.URL().Query() }
	viaCodec := func(opts runtime.Object) url.Values {
		return query(client.Post().SpecificallyVersionedParams(opts, metav1.ParameterCodec, metav1.SchemeGroupVersion))
	}
	for _, tc := range []struct {
		name   string
		patch  metav1.PatchOptions
		create metav1.CreateOptions
		update metav1.UpdateOptions
	}{
		{name: "none"},
		{name: "field manager", patch: metav1.PatchOptions{FieldManager: FieldManager},
			create: metav1.CreateOptions{FieldManager: FieldManager}, update: metav1.UpdateOptions{FieldManager: FieldManager}},
		{name: "every field",
			patch:  metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}, Force: ptr.To(true), FieldManager: "m", FieldValidation: "Strict"},
			create: metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldManager: "m", FieldValidation: "Warn"},
			update: metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll, "Other"}, FieldManager: "m", FieldValidation: "Ignore"}},
		{name: "force false", patch: metav1.PatchOptions{Force: ptr.To(false)}},
		{name: "an empty dry run", patch: metav1.PatchOptions{DryRun: []string{""}},
			create: metav1.CreateOptions{DryRun: []string{"", metav1.DryRunAll}}, update: metav1.UpdateOptions{DryRun: []string{""}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range []struct {
				kind      string
				got, want url.Values
			}{
				{"patch", query(patchParams(client.Post(), &tc.patch)), viaCodec(&tc.patch)},
				{"create", query(createParams(client.Post(), &tc.create)), viaCodec(&tc.create)},
				{"update", query(updateParams(client.Post(), &tc.update)), viaCodec(&tc.update)},
			} {
				if c.got.Encode() != c.want.Encode() {
					t.Errorf("%s: query %q, the parameter codec's %q", c.kind, c.got.Encode(), c.want.Encode())
				}
			}
		})
	}
}
