package controllers

import (
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// The operator's own writes (metadata_patcher.go, secret_writer.go) set their
// options' query parameters directly. client-go's VersionedParams converts the
// options struct through the scheme's parameter codec (reflection, a
// url.Values built and copied) on every request: make bench counted it at a
// seventh of an ApiToken patch's CPU in the operator. writeParams writes the
// same parameters, as TestWriteParamsAsTheParameterCodec holds for every field
// of the three option types.

// writeParams sets the query parameters of a create, update or patch: the
// fields that metav1's CreateOptions, UpdateOptions and PatchOptions share,
// and PatchOptions' force (nil for the others).
func writeParams(req *rest.Request, dryRun []string, force *bool, fieldManager, fieldValidation string) *rest.Request {
	for _, d := range dryRun {
		if d != "" { // the codec leaves empty values out
			req = req.Param("dryRun", d)
		}
	}
	if force != nil {
		req = req.Param("force", strconv.FormatBool(*force))
	}
	if fieldManager != "" {
		req = req.Param("fieldManager", fieldManager)
	}
	if fieldValidation != "" {
		req = req.Param("fieldValidation", fieldValidation)
	}
	return req
}

// patchParams sets a patch's options as query parameters.
func patchParams(req *rest.Request, o *metav1.PatchOptions) *rest.Request {
	return writeParams(req, o.DryRun, o.Force, o.FieldManager, o.FieldValidation)
}

// createParams sets a create's options as query parameters.
func createParams(req *rest.Request, o *metav1.CreateOptions) *rest.Request {
	return writeParams(req, o.DryRun, nil, o.FieldManager, o.FieldValidation)
}

// updateParams sets an update's options as query parameters.
func updateParams(req *rest.Request, o *metav1.UpdateOptions) *rest.Request {
	return writeParams(req, o.DryRun, nil, o.FieldManager, o.FieldValidation)
}
